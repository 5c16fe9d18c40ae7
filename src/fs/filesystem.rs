//! The filesystem state shared by every request thread, and entry resolution.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use fuser::FileAttr;
use nix::errno::Errno;

use super::attr::to_attr;
use super::handles::Handles;
use super::ino::{InoMap, ROOT_INO};
use super::nodes::Nodes;
use crate::union::layer::{SafeFd, proc_path};
use crate::union::xattr_memo::XattrMemo;
use crate::union::{Entry, Stack};

/// st_ino → the paths of a lower layer's hard-linked files.
pub(crate) type LinkMap = HashMap<u64, Vec<PathBuf>>;

/// Result of an operation: a value or an errno for the kernel.
pub(crate) type R<T> = Result<T, Errno>;

/// io::Error → errno (EIO when it carries none).
pub(crate) fn errno(e: io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kernel cache time for entries (negative ones too) and attributes, of every layer. The lower
/// layers never change and the upper changes only through this mount: the kernel updates or
/// drops what its own requests change (the dentries of a create, unlink or rename, a setattr's
/// reply, the attributes a write or a new name in a directory invalidates), and what the daemon
/// changes on its own it tells the kernel (suid/sgid killed by a write: `inval_inode`). An
/// upper entry's one second made dpkg ask again for each name it came back to a second later
/// (a third of its LOOKUPs).
pub(crate) const TTL: Duration = Duration::from_secs(3600);

/// The strata union filesystem.
pub struct StrataFs {
    pub(crate) stack: Stack,
    pub(crate) work: Option<OwnedFd>,
    pub(crate) inos: InoMap,
    /// The node tree, shared with the stack, which keeps directory fds on its links.
    pub(crate) nodes: Arc<Mutex<Nodes>>,
    pub(crate) handles: Handles,
    /// Namespace lock: mutations exclusive, lookups shared.
    pub(crate) ns: RwLock<()>,
    pub(crate) read_only: bool,
    /// Whether opens get a passthrough backing: asked for at INIT unless the daemon is not root
    /// in the initial user namespace (the kernel wants CAP_SYS_ADMIN there), and off for good
    /// once the kernel refuses one, so that no open pays for a second refusal.
    pub(crate) passthrough: AtomicBool,
    /// The session's notifier, set once the session exists (`mount.rs`): a WRITE that clears
    /// suid/sgid tells the kernel to drop the file's cached attributes (see `ops.rs`' write).
    pub(crate) notifier: Arc<std::sync::OnceLock<fuser::Notifier>>,
    /// Whether INIT accepted FUSE_HANDLE_KILLPRIV_V2 (the daemon clears suid/sgid on writes).
    pub(crate) killpriv: AtomicBool,
    pub(crate) counter: AtomicU64,
    /// Set once anything is written to the upper (shared with the session's owner, which
    /// syncs the upper's filesystem at the end only then).
    pub(crate) wrote: Arc<AtomicBool>,
    /// Entered by every request that changes the upper; a commit freezes it (freeze.rs).
    pub(crate) freeze: Arc<super::freeze::Gate>,
    /// Per lower layer: st_ino → paths of its hard-linked files (built on first need).
    pub(crate) links: Mutex<HashMap<usize, Arc<LinkMap>>>,
    /// Per-inode locks of copy-ups made outside the namespace lock.
    pub(crate) copy_locks: super::copyup::CopyLocks,
    /// Files known to have no `security.capability`, by layer, inode and ctime (as the
    /// origins): the kernel asks before every write(2), mostly about files this daemon has
    /// just made or copied up.
    pub(crate) no_caps: XattrMemo<()>,
    /// Who owns a file this daemon makes in the work dir (its ids, the work dir's group when
    /// that is setgid); found at the first copy-up, once the daemon is in its namespace.
    pub(crate) work_owner: std::sync::OnceLock<Option<(u32, u32)>>,
}

impl std::fmt::Debug for StrataFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrataFs").field("stack", &self.stack).finish()
    }
}

impl StrataFs {
    /// Opens the layers: `lowers` top first; `upper` and `work` for a writable mount.
    pub fn new(
        lowers: &[PathBuf],
        upper: Option<&Path>,
        work: Option<&Path>,
        passthrough: bool,
    ) -> io::Result<StrataFs> {
        let stack = Stack::new(lowers, upper)?;
        if let (Some(_), Some(w)) = (upper, work) {
            clean_work(w);
        }
        let work = match (upper, work) {
            (Some(_), Some(w)) => Some(nix::fcntl::open(
                w,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )?),
            (Some(_), None) => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "an upper dir needs a work dir"));
            }
            _ => None,
        };
        if let (Some(w), Some(u)) = (&work, stack.upper()) {
            let wst = nix::sys::stat::fstat(w)?;
            if wst.st_dev != u.dev() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "work dir and upper dir must be on the same filesystem",
                ));
            }
        }
        let nodes = Arc::new(Mutex::new(Nodes::new()));
        stack.set_fd_store(nodes.clone());
        let privileged = nix::unistd::geteuid().is_root();
        let inos = InoMap::new(stack.layers().iter().map(|l| l.dev()), privileged);
        Ok(StrataFs {
            read_only: upper.is_none(),
            stack,
            work,
            inos,
            nodes,
            handles: Handles::default(),
            ns: RwLock::new(()),
            passthrough: AtomicBool::new(passthrough),
            notifier: Arc::default(),
            killpriv: AtomicBool::new(false),
            counter: AtomicU64::new(0),
            wrote: Arc::new(AtomicBool::new(false)),
            freeze: Arc::default(),
            links: Mutex::new(HashMap::new()),
            copy_locks: Default::default(),
            no_caps: XattrMemo::default(),
            work_owner: std::sync::OnceLock::new(),
        })
    }

    /// A flag that turns true once this filesystem writes to its upper layer.
    /// The gate a freeze of this mount takes (shared with the session's owner).
    pub fn freeze_gate(&self) -> Arc<super::freeze::Gate> {
        self.freeze.clone()
    }

    pub fn wrote_flag(&self) -> Arc<AtomicBool> {
        self.wrote.clone()
    }

    /// The union stack.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// Whether `e` is in the writable upper layer.
    pub(crate) fn in_upper(&self, e: &Entry) -> bool {
        self.stack.has_upper() && e.layer == 0
    }

    /// Forgets what is cached about `path` and everything below it (removed or renamed
    /// directory trees).
    pub(crate) fn changed(&self, path: &Path) {
        lock(&self.nodes).uncache_tree(path);
        self.stack.invalidate_tree(path);
    }

    /// Forgets what is cached about the single entry `path` (a file removed, copied up, or
    /// a whiteout over it removed): its entry and its parent's listing. Entries below it don't
    /// depend on it (a copied-up directory's children are looked up through its new entry).
    pub(crate) fn changed_one(&self, path: &Path) {
        lock(&self.nodes).uncache(path);
        if let Some(parent) = path.parent() {
            self.stack.invalidate_listing(parent);
        }
    }

    /// Forgets what is cached about the removed empty directory `path` (see
    /// [`Stack::invalidate_dir`]).
    pub(crate) fn changed_empty_dir(&self, path: &Path) {
        lock(&self.nodes).uncache(path);
        self.stack.invalidate_dir(path);
    }

    /// Forgets the cached listing of `dir` (a name was added to it).
    pub(crate) fn added(&self, dir: &Path) {
        self.stack.invalidate_listing(dir);
    }

    /// Resolves a merged path: from its nearest cached ancestor (usually its parent) down,
    /// one name at a time and without recursion, so a tree of any depth resolves. Entries are
    /// cached on the node tree's links (`nodes.rs`), so only names the kernel holds are cached.
    pub(crate) fn lookup_path(&self, path: &Path) -> R<Entry> {
        let cached = lock(&self.nodes).cached(path);
        if let Some(e) = cached {
            return self.refresh(e);
        }
        let mut names = Vec::new();
        let mut at = path;
        let mut cur = loop {
            match (at.parent(), at.file_name()) {
                (Some(parent), Some(name)) => {
                    names.push(name);
                    at = parent;
                    let cached = lock(&self.nodes).cached(at);
                    if let Some(e) = cached {
                        break self.refresh(e)?;
                    }
                }
                _ => {
                    let root = self.stack.root().map_err(errno)?;
                    lock(&self.nodes).cache(&root);
                    break root;
                }
            }
        };
        for name in names.into_iter().rev() {
            if !cur.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            cur = self.stack.lookup_child(&cur, name).map_err(errno)?.ok_or(Errno::ENOENT)?;
            lock(&self.nodes).cache(&cur);
        }
        Ok(cur)
    }

    /// Looks up `name` in the directory `parent`. A name over NAME_MAX can exist in no layer:
    /// ENAMETOOLONG, as every Linux filesystem answers (not ENOENT).
    pub(crate) fn child(&self, parent: &Entry, name: &OsStr) -> R<Option<Entry>> {
        if name.len() > crate::layer::whiteout::NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        self.stack.lookup_child(parent, name).map_err(errno)
    }

    /// Re-reads the stat of an upper entry (its size and times change).
    fn refresh(&self, mut e: Entry) -> R<Entry> {
        if !self.in_upper(&e) {
            return Ok(e);
        }
        let st = self.stack.stat_in(0, &e.path).map_err(errno)?;
        match st {
            Some(st) if (st.st_mode & libc::S_IFMT) == (e.stat.st_mode & libc::S_IFMT) => {
                e.stat = st;
                Ok(e)
            }
            _ => {
                lock(&self.nodes).uncache(&e.path);
                self.lookup_path(&e.path)
            }
        }
    }

    /// The entry of node `ino`, under the shared namespace lock.
    pub(crate) fn entry_shared(&self, ino: u64) -> R<Entry> {
        let _ns = self.ns.read().unwrap_or_else(|e| e.into_inner());
        self.entry(ino)
    }

    /// The entry of node `ino`.
    /// ESTALE when the node no longer has a name: the kernel then walks the path again
    /// (`open(O_CREAT)` or `stat` racing with an unlink find the name's new object instead of
    /// failing with ENOENT).
    pub(crate) fn entry(&self, ino: u64) -> R<Entry> {
        let (path, cached) = lock(&self.nodes).path_and_entry(ino).ok_or(Errno::ESTALE)?;
        let e = match cached {
            Some(e) => self.refresh(e),
            None => self.lookup_path(&path),
        };
        e.map_err(|e| if e == Errno::ENOENT { Errno::ESTALE } else { e })
    }

    /// The node id (and st_ino) of a live entry: its stable st_ino, or a fresh alias when that
    /// number's node is a dead one the kernel still holds (see `nodes.rs`).
    pub(crate) fn st_ino(&self, e: &Entry) -> u64 {
        let base = self.base_ino(e);
        lock(&self.nodes).id_for(base)
    }

    /// The stable st_ino of an entry (see `ino.rs`), recorded as the origin on copy-up.
    pub(crate) fn base_ino(&self, e: &Entry) -> u64 {
        if e.path.as_os_str().is_empty() {
            return ROOT_INO;
        }
        if self.in_upper(e) {
            if let Some(ino) = self.origin(e) {
                return ino;
            }
        }
        self.inos.map(e.stat.st_dev, e.stat.st_ino)
    }

    fn origin(&self, e: &Entry) -> Option<u64> {
        if let Some(known) = self.inos.origins.get(0, &e.stat) {
            return known;
        }
        let (fd, name) = self.parent_fd(e, 0).ok()?;
        // Only an answer is remembered, not a failure to read.
        let origin = xattr::get(proc_path(fd.as_fd(), name), self.inos.origin_xattr)
            .ok()?
            .and_then(|v| InoMap::decode(&v));
        self.inos.origins.note(0, &e.stat, origin);
        origin
    }

    /// FUSE attributes of an entry.
    pub(crate) fn attr(&self, e: &Entry) -> FileAttr {
        to_attr(&e.stat, self.st_ino(e), e.is_dir() && e.is_merged())
    }

    /// The directory fd (in `layer`) holding `e`, and `e`'s name in it. For the root, the
    /// root itself and ".".
    pub(crate) fn parent_fd<'a>(&self, e: &'a Entry, layer: usize) -> R<(Arc<SafeFd>, &'a OsStr)> {
        match (e.path.parent(), e.path.file_name()) {
            (Some(p), Some(n)) => Ok((self.stack.dir_fd(layer, p).map_err(errno)?, n)),
            _ => Ok((self.stack.dir_fd(layer, Path::new("")).map_err(errno)?, OsStr::new("."))),
        }
    }

    /// Where the mount puts the session's notifier once the session is made.
    pub fn notifier_slot(&self) -> Arc<std::sync::OnceLock<fuser::Notifier>> {
        self.notifier.clone()
    }

    /// Whether to ask for a passthrough backing.
    pub(crate) fn passthrough(&self) -> bool {
        self.passthrough.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// An open's passthrough backing was refused: with EPERM, passthrough is off from now on.
    pub(crate) fn backing_refused(&self, e: &io::Error) {
        if e.raw_os_error() == Some(libc::EPERM) {
            if self.passthrough.swap(false, std::sync::atomic::Ordering::Relaxed) {
                tracing::info!(
                    "FUSE passthrough refused by the kernel (EPERM): reads and writes go through the daemon"
                );
            }
        } else {
            tracing::debug!("passthrough not used: {e}");
        }
    }

    /// Records a kernel reference to `e` and returns (attr, generation).
    pub(crate) fn remember(&self, e: &Entry) -> (FileAttr, u64) {
        let attr = self.attr(e);
        let generation = lock(&self.nodes).remember(attr.ino.0, &e.path, 1);
        (attr, generation)
    }
}

/// Removes what an interrupted copy-up left in the work dir (`strata-*` entries).
fn clean_work(work: &Path) {
    let Ok(rd) = std::fs::read_dir(work) else { return };
    for e in rd.flatten() {
        if !e.file_name().as_encoded_bytes().starts_with(b"strata-") {
            continue;
        }
        let p = e.path();
        let res = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&p),
            _ => std::fs::remove_file(&p),
        };
        match res {
            Ok(()) => tracing::info!("removed leftover {}", p.display()),
            Err(err) => tracing::warn!("can't remove leftover {}: {err}", p.display()),
        }
    }
}

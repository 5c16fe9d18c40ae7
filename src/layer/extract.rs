//! The filesystem side of unpacking: creates entries under a root directory
//! without ever touching anything outside it.
//!
//! Every parent directory is resolved with openat2(RESOLVE_IN_ROOT), so `..`
//! and symlinks (absolute or relative) stay inside the root; the final
//! component is always created fresh (O_EXCL / O_NOFOLLOW, after removing what
//! was there), so nothing is ever written through a symlink.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens};
use nix::sys::stat::{makedev, mkdirat, mknodat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

use super::override_stat::{self, FileType};
use super::tarpath::{show, split_parent};

/// Owner, permissions, time and xattrs of one entry.
#[derive(Debug, Clone, Default)]
pub struct Attrs {
    /// Permission bits including setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Attrs {
    fn mtime(&self) -> TimeSpec {
        TimeSpec::new(self.mtime_sec, self.mtime_nsec as _)
    }
}

/// What an unprivileged unpack could not restore, for the command's summary (device nodes and
/// foreign owners are not in it: they go to the override xattr, see `override_stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Files whose `security.capability` (file capabilities) could not be set.
    pub capabilities: u64,
    /// Other xattrs that need privileges (`trusted.*`, `security.*`).
    pub xattrs: u64,
}

impl Skipped {
    pub fn is_empty(&self) -> bool {
        *self == Skipped::default()
    }

    pub fn add(&mut self, o: Skipped) {
        self.capabilities += o.capabilities;
        self.xattrs += o.xattrs;
    }
}

/// Special files created with mknod.
#[derive(Debug, Clone, Copy)]
pub enum Node {
    Char(u64, u64),
    Block(u64, u64),
    Fifo,
}

/// Directory fds kept for reuse; cleared wholesale when it grows this large.
const CACHE_LIMIT: usize = 512;

pub struct Tree {
    root: File,
    /// Resolved parent directories (O_PATH), by clean relative path.
    cache: HashMap<Vec<u8>, OwnedFd>,
    /// Directory mode and mtime, applied at the end (creating children changes mtimes).
    dirs: HashMap<Vec<u8>, Attrs>,
    is_root: bool,
    /// Our effective uid and gid: what new files get without a chown.
    owner: (u64, u64),
    /// A setgid root dir would hand its group to new files: then chown always.
    always_chown: bool,
    /// Some entry's owner or type went to the override xattr (see `override_stat`).
    overridden: bool,
    buf: Vec<u8>,
    skipped: std::cell::Cell<Skipped>,
    /// A tree the tar was packed from and that is being discarded (a build step's upper dir):
    /// its regular files are moved in instead of written again (see [`Tree::take_from_source`]).
    source: Option<File>,
    /// Regular files moved from `source`.
    moved: u64,
}

impl Tree {
    pub fn open(dest: &Path) -> Result<Tree> {
        let root = File::from(
            nix::fcntl::open(dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .with_context(|| format!("opening {}", dest.display()))?,
        );
        let st = nix::sys::stat::fstat(&root)?;
        let euid = nix::unistd::geteuid();
        // Root inside a user namespace can't write trusted.* xattrs or mknod: not privileged.
        let privileged = crate::sys::userns::privileged();
        // The root is implicit until the tar has an entry for it.
        mark_implicit(&root, privileged)?;
        Ok(Tree {
            root,
            cache: HashMap::new(),
            dirs: HashMap::new(),
            is_root: privileged,
            overridden: false,
            owner: (euid.as_raw() as u64, nix::unistd::getegid().as_raw() as u64),
            always_chown: st.st_mode & libc::S_ISGID != 0,
            buf: vec![0; 1 << 20],
            skipped: Default::default(),
            source: None,
            moved: 0,
        })
    }

    /// Takes regular files from `source` (the tree the tar was packed from, which the caller
    /// discards afterwards) by rename instead of writing their data again.
    pub fn take_files_from(&mut self, source: &Path) -> Result<()> {
        let dir =
            nix::fcntl::open(source, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .with_context(|| format!("opening {}", source.display()))?;
        self.source = Some(File::from(dir));
        Ok(())
    }

    /// Writes a regular file with `size` bytes from `data`.
    pub fn file(&mut self, path: &[u8], attrs: &Attrs, size: u64, data: &mut dyn Read) -> Result<u64> {
        let file = match self.take_from_source(path, attrs, size)? {
            Some(file) => file,
            None => self.write_file(path, size, data)?,
        };
        // Order matters: chown clears setuid bits and capabilities, so it goes first.
        if !self.chown(Target::Fd(file.as_fd()), attrs)? {
            self.overridden |=
                override_stat::record(&file, attrs.uid, attrs.gid, attrs.mode, FileType::File)?;
        }
        fchmod(&file, mode(attrs.mode)).context("chmod")?;
        self.set_xattrs_fd(&file, attrs)?;
        futimens(&file, &attrs.mtime(), &attrs.mtime()).context("setting mtime")?;
        Ok(size)
    }

    /// Moves `path` of the source tree to `path` here when it is the file the tar entry was
    /// packed from: a regular file of `size` bytes, owned as the entry says, with no other link
    /// (a second name in the source would share the layer's inode). `None`: write it instead.
    fn take_from_source(&mut self, path: &[u8], attrs: &Attrs, size: u64) -> Result<Option<File>> {
        use xattr::FileExt;
        // Empty files too: a rename costs less than a create here and an unlink there.
        let Some(source) = &self.source else { return Ok(None) };
        let how = OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
        let Ok(fd) = openat2(source.as_fd(), OsStr::from_bytes(path), how) else { return Ok(None) };
        let file = File::from(fd);
        let st = nix::sys::stat::fstat(&file).context("stat of the source file")?;
        let is_reg = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG;
        if !is_reg
            || st.st_nlink != 1
            || st.st_size as u64 != size
            || (u64::from(st.st_uid), u64::from(st.st_gid)) != (attrs.uid, attrs.gid)
        {
            return Ok(None);
        }
        let (parent, name) = self.parent_of(path)?;
        match fstatat(self.fd(parent), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(_) => self.remove(path)?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e).context("stat"),
        }
        let source = self.source.as_ref().expect("checked above");
        nix::fcntl::renameat(source.as_fd(), OsStr::from_bytes(path), self.fd(parent), name)
            .context("moving the file from the source tree")?;
        let moved = fstatat(self.fd(parent), name, AtFlags::AT_SYMLINK_NOFOLLOW).context("stat")?;
        if (moved.st_dev, moved.st_ino) != (st.st_dev, st.st_ino) {
            bail!("internal error: the source file changed while it was moved");
        }
        self.moved += 1;
        // The entry's xattrs are set by the caller; any other the source file had must go.
        for k in file.list_xattr().context("listing xattrs")? {
            if !attrs.xattrs.iter().any(|(n, _)| *n == k) {
                file.remove_xattr(&k).with_context(|| format!("removing xattr {}", k.to_string_lossy()))?;
            }
        }
        Ok(Some(file))
    }

    /// Creates `path` and writes `size` bytes from `data` into it.
    fn write_file(&mut self, path: &[u8], size: u64, data: &mut dyn Read) -> Result<File> {
        let (parent, name) = self.parent_of(path)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match openat(self.fd(parent), name, flags, Mode::from_bits_truncate(0o600)) {
            Err(Errno::EEXIST) => {
                self.remove(path)?;
                openat(self.fd(parent), name, flags, Mode::from_bits_truncate(0o600))
            }
            r => r,
        }
        .context("creating file")?;
        let mut file = File::from(fd);
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = data.read(&mut self.buf[..want]).context("reading file data from the archive")?;
            if n == 0 {
                bail!("archive ends inside the file's data ({} of {size} bytes missing)", left);
            }
            file.write_all(&self.buf[..n]).context("writing file data")?;
            left -= n as u64;
        }
        Ok(file)
    }

    /// Creates (or merges into) a directory; its mode and mtime are set in [`Tree::finish`].
    pub fn dir(&mut self, path: &[u8], attrs: &Attrs) -> Result<()> {
        if path.is_empty() {
            clear_implicit(&self.root, self.is_root);
            if !self.chown(Target::Fd(self.root.as_fd()), attrs)? {
                self.overridden |=
                    override_stat::record(&self.root, attrs.uid, attrs.gid, attrs.mode, FileType::Dir)?;
            }
            self.set_xattrs_fd(&self.root, attrs)?;
            self.dirs.insert(Vec::new(), attrs.clone());
            return Ok(());
        }
        let (parent, name) = self.parent_of(path)?;
        match fstatat(self.fd(parent), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
            Ok(_) => {
                self.remove(path)?;
                mkdirat(self.fd(parent), name, Mode::from_bits_truncate(0o700)).context("mkdir")?;
            }
            Err(Errno::ENOENT) => {
                mkdirat(self.fd(parent), name, Mode::from_bits_truncate(0o700)).context("mkdir")?
            }
            Err(e) => return Err(e).context("stat"),
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let dir =
            File::from(openat(self.fd(parent), name, flags, Mode::empty()).context("opening directory")?);
        clear_implicit(&dir, self.is_root);
        if !self.chown(Target::Fd(dir.as_fd()), attrs)? {
            self.overridden |= override_stat::record(&dir, attrs.uid, attrs.gid, attrs.mode, FileType::Dir)?;
        }
        self.set_xattrs_fd(&dir, attrs)?;
        self.dirs.insert(path.to_vec(), attrs.clone());
        Ok(())
    }

    pub fn symlink(&mut self, path: &[u8], target: &[u8], attrs: &Attrs) -> Result<()> {
        let (parent, name) = self.parent_of(path)?;
        let target = OsStr::from_bytes(target);
        if let Err(Errno::EEXIST) = symlinkat(target, self.fd(parent), name) {
            self.remove(path)?;
            symlinkat(target, self.fd(parent), name).context("creating symlink")?;
        }
        self.finish_at(path, attrs, false)
    }

    /// Hard link `path` to the earlier entry `target`, both inside the root.
    pub fn hard_link(&mut self, path: &[u8], target: &[u8]) -> Result<()> {
        if path == target {
            // Nothing to link: a tar saying so is broken. Refused, as Docker's unpack fails on it
            // too, rather than dropped without a word.
            bail!("hard link to itself ({}): it names no other file", show(target));
        }
        let (tparent, tname) = split_parent(target);
        let missing = || format!("hard link target {} not found", show(target));
        // Its own fd, not the cache: resolving the link's parent may evict cache entries.
        let tdir = if tparent.is_empty() {
            OwnedFd::from(self.root.try_clone()?)
        } else {
            openat2(&self.root, tparent, dir_how(OFlag::O_PATH)).with_context(missing)?
        };
        match fstatat(&tdir, tname, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                bail!("hard link target {} is a directory", show(target))
            }
            Ok(_) => {}
            Err(Errno::ENOENT) => bail!(
                "hard link target {} does not exist (links must name an earlier entry in the layer)",
                show(target)
            ),
            Err(e) => return Err(e).with_context(missing),
        }
        let (parent, name) = self.parent_of(path)?;
        let link = |t: &Tree| linkat(&tdir, tname, t.fd(parent), name, AtFlags::empty());
        if let Err(Errno::EEXIST) = link(self) {
            self.remove(path)?;
            link(self).context("creating hard link")?;
        }
        Ok(())
    }

    /// Creates a device node or FIFO. Returns false if skipped (unprivileged).
    pub fn node(&mut self, path: &[u8], node: Node, attrs: &Attrs) -> Result<bool> {
        let (parent, name) = self.parent_of(path)?;
        let (kind, dev) = match node {
            Node::Char(ma, mi) => (SFlag::S_IFCHR, makedev(ma, mi)),
            Node::Block(ma, mi) => (SFlag::S_IFBLK, makedev(ma, mi)),
            Node::Fifo => (SFlag::S_IFIFO, 0),
        };
        let perm = Mode::from_bits_truncate(0o600);
        let made = match mknodat(self.fd(parent), name, kind, perm, dev) {
            Err(Errno::EEXIST) => {
                self.remove(path)?;
                mknodat(self.fd(parent), name, kind, perm, dev)
            }
            r => r,
        };
        match made {
            Ok(()) => {}
            Err(Errno::EPERM) if !self.is_root => {
                // Unprivileged: an empty file that records the device (what containers/storage does).
                let (parent, name) = split_parent(path);
                let flags =
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let file = File::from(
                    openat(self.fd(parent), name, flags, Mode::from_bits_truncate(0o600))
                        .context("creating the file that stands for a device node")?,
                );
                self.chown(Target::Fd(file.as_fd()), attrs)?;
                fchmod(&file, mode(attrs.mode)).context("chmod")?;
                let kind = match node {
                    Node::Char(major, minor) => FileType::Char { major, minor },
                    Node::Block(major, minor) => FileType::Block { major, minor },
                    Node::Fifo => FileType::Pipe,
                };
                self.overridden |= override_stat::record(&file, attrs.uid, attrs.gid, attrs.mode, kind)?;
                futimens(&file, &attrs.mtime(), &attrs.mtime()).context("setting mtime")?;
                return Ok(true);
            }
            Err(e) => return Err(e).context("mknod"),
        }
        self.finish_at(path, attrs, true)?;
        Ok(true)
    }

    fn note(&self, f: impl FnOnce(&mut Skipped)) {
        let mut s = self.skipped.get();
        f(&mut s);
        self.skipped.set(s);
    }

    fn set_xattrs_fd(&self, file: &File, attrs: &Attrs) -> Result<()> {
        use xattr::FileExt;
        for (k, v) in &attrs.xattrs {
            if let Err(e) = file.set_xattr(k, v) {
                self.xattr_error(e, k)?;
            }
        }
        Ok(())
    }

    /// Without root, an xattr that needs privileges is skipped (and counted); else an error.
    fn xattr_error(&self, e: std::io::Error, name: &OsStr) -> Result<()> {
        if !self.is_root && e.raw_os_error() == Some(libc::EPERM) {
            tracing::debug!("not root: skipping xattr {}", name.to_string_lossy());
            if name.as_bytes() == b"security.capability" {
                self.note(|s| s.capabilities += 1);
            } else {
                self.note(|s| s.xattrs += 1);
            }
            return Ok(());
        }
        Err(e).with_context(|| format!("setting xattr {}", name.to_string_lossy()))
    }

    /// Regular files moved from the source tree so far (see [`Tree::take_files_from`]).
    pub fn moved(&self) -> u64 {
        self.moved
    }

    /// Applies the deferred directory modes and mtimes, deepest first; says what was skipped.
    pub fn finish(mut self) -> Result<Skipped> {
        if self.overridden {
            // fuse-overlayfs reads the override xattrs of a layer only if its root has one.
            let root = self.dirs.get(&Vec::new()).map_or((0, 0, 0o755), |a| (a.uid, a.gid, a.mode));
            override_stat::mark_layer_root(&self.root, root.0, root.1, root.2)?;
        }
        let mut dirs: Vec<(Vec<u8>, Attrs)> = self.dirs.drain().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(depth(p)));
        for (path, attrs) in dirs {
            let dir = if path.is_empty() {
                self.root.try_clone()?
            } else {
                let how = dir_how(OFlag::O_RDONLY | OFlag::O_NOFOLLOW);
                match openat2(&self.root, path.as_slice(), how) {
                    Ok(fd) => File::from(fd),
                    // Replaced by a later non-directory entry: nothing to do.
                    Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                    Err(e) => return Err(e).with_context(|| format!("reopening {}", show(&path))),
                }
            };
            let ctx = || format!("setting mode and mtime of {}", show(&path));
            fchmod(&dir, mode(attrs.mode)).with_context(ctx)?;
            futimens(&dir, &attrs.mtime(), &attrs.mtime()).with_context(ctx)?;
        }
        if self.overridden {
            // The layer is marked: the files that needed no value get one too (fuse-overlayfs).
            override_stat::record_missing(&self.root)
                .context("recording the owners of the layer's other files in the override xattr")?;
        }
        Ok(self.skipped.get())
    }

    /// Owner, mode, xattrs and mtime of a symlink or node named in `parent`.
    fn finish_at(&self, path: &[u8], attrs: &Attrs, chmod: bool) -> Result<()> {
        let (parent, name) = split_parent(path);
        let dir = self.fd(parent);
        self.chown(Target::At(dir, name), attrs)?;
        if chmod {
            // The node was just created by us: following is safe (it is no symlink).
            fchmodat(dir, name, mode(attrs.mode), FchmodatFlags::FollowSymlink).context("chmod")?;
        }
        if !attrs.xattrs.is_empty() {
            // lsetxattr through the parent's /proc fd link: resolved inside the root.
            let mut p = OsString::from(format!("/proc/self/fd/{}/", dir.as_raw_fd()));
            p.push(OsStr::from_bytes(name));
            for (k, v) in &attrs.xattrs {
                match xattr::set(&p, k, v) {
                    // user.* is only allowed on files and directories: such a tar can't be honoured.
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) && k.as_bytes().starts_with(b"user.") => {
                        tracing::warn!(
                            "{}: skipping xattr {} (not allowed on this file type)",
                            show(path),
                            k.to_string_lossy()
                        );
                    }
                    Err(e) => self.xattr_error(e, k)?,
                    Ok(()) => {}
                }
            }
        }
        utimensat(dir, name, &attrs.mtime(), &attrs.mtime(), UtimensatFlags::NoFollowSymlink)
            .context("setting mtime")?;
        Ok(())
    }

    /// Gives the entry its owner; `false` if we may not (unprivileged, or an id the user
    /// namespace does not map), and the caller records the owner in the override xattr instead.
    fn chown(&self, target: Target<'_>, attrs: &Attrs) -> Result<bool> {
        if !self.always_chown && (attrs.uid, attrs.gid) == self.owner {
            return Ok(true);
        }
        let (uid, gid) = (
            Uid::from_raw(u32::try_from(attrs.uid).context("uid out of range")?),
            Gid::from_raw(u32::try_from(attrs.gid).context("gid out of range")?),
        );
        let r = match target {
            Target::Fd(fd) => fchown(fd, Some(uid), Some(gid)),
            Target::At(dir, name) => fchownat(dir, name, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW),
        };
        match r {
            Ok(()) => Ok(true),
            Err(Errno::EPERM | Errno::EINVAL) if !self.is_root => {
                tracing::debug!("not root: keeping own owner instead of {}:{}", attrs.uid, attrs.gid);
                Ok(false)
            }
            Err(e) => Err(e).with_context(|| format!("chown to {}:{}", attrs.uid, attrs.gid)),
        }
    }

    /// Resolves (creating if missing) the parent of `path`; returns (parent, name).
    fn parent_of<'p>(&mut self, path: &'p [u8]) -> Result<(&'p [u8], &'p [u8])> {
        if path.is_empty() {
            bail!("entry would replace the layer root itself");
        }
        let (parent, name) = split_parent(path);
        self.resolve_dir(parent, true)?;
        Ok((parent, name))
    }

    fn fd(&self, dir: &[u8]) -> BorrowedFd<'_> {
        if dir.is_empty() {
            return self.root.as_fd();
        }
        self.cache[dir].as_fd()
    }

    /// Makes sure `dir` is in the cache; missing directories are created 0755 when `create`.
    fn resolve_dir(&mut self, dir: &[u8], create: bool) -> Result<()> {
        if dir.is_empty() || self.cache.contains_key(dir) {
            return Ok(());
        }
        let how = dir_how(OFlag::O_PATH);
        let fd = match openat2(&self.root, dir, how) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => {
                let (parent, name) = split_parent(dir);
                self.resolve_dir(parent, true)?;
                match mkdirat(self.fd(parent), name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) => {
                        let flags =
                            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                        let made = File::from(
                            openat(self.fd(parent), name, flags, Mode::empty())
                                .with_context(|| format!("opening directory {}", show(dir)))?,
                        );
                        mark_implicit(&made, self.is_root)?;
                        fchmodat(
                            self.fd(parent),
                            name,
                            Mode::from_bits_truncate(0o755),
                            FchmodatFlags::FollowSymlink,
                        )
                        .with_context(|| format!("chmod {}", show(dir)))?;
                    }
                    Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e).with_context(|| format!("creating directory {}", show(dir))),
                }
                openat2(&self.root, dir, how).with_context(|| format!("opening directory {}", show(dir)))?
            }
            Err(Errno::ENOSYS) => bail!("openat2 is not available (Linux 5.6 or later is needed)"),
            Err(e) => return Err(e).with_context(|| format!("resolving directory {}", show(dir))),
        };
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(dir.to_vec(), fd);
        Ok(())
    }

    /// Removes whatever is at `path` (recursively for a directory).
    fn remove(&mut self, path: &[u8]) -> Result<()> {
        let (parent, name) = split_parent(path);
        let dir = self.fd(parent);
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e).context("stat of the entry being replaced"),
        };
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFDIR {
            remove_tree(dir, name).context("removing the directory being replaced")?;
            // Paths under it (cached fds, deferred attributes) are gone with it.
            self.dirs
                .retain(|p, _| !(p.starts_with(path) && (p.len() == path.len() || p[path.len()] == b'/')));
        } else {
            unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).context("removing the entry being replaced")?;
        }
        if kind == libc::S_IFDIR || kind == libc::S_IFLNK {
            // A cached parent may have been this directory or resolved through this link.
            self.cache.clear();
            self.resolve_dir(parent, true)?;
        }
        Ok(())
    }
}

enum Target<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

/// Opens a directory by a path resolved as if the layer root were `/`.
fn dir_how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

fn mode(m: u32) -> Mode {
    Mode::from_bits_truncate((m & 0o7777) as libc::mode_t)
}

fn depth(p: &[u8]) -> usize {
    if p.is_empty() { 0 } else { 1 + p.iter().filter(|&&b| b == b'/').count() }
}

/// Marks a directory this unpack made without a tar entry for it (see `IMPLICIT_DIR_XATTRS`).
fn mark_implicit(dir: &File, is_root: bool) -> Result<()> {
    use xattr::FileExt;
    let name = super::whiteout::implicit_dir_xattr(is_root);
    dir.set_xattr(name, b"1")
        .with_context(|| format!("setting xattr {name} (the filesystem must support xattrs)"))
}

/// The tar has an entry for this directory after all: its attributes are the layer's own.
fn clear_implicit(dir: &File, is_root: bool) {
    use xattr::FileExt;
    let _ = dir.remove_xattr(super::whiteout::implicit_dir_xattr(is_root));
}

/// rm -r of `name` in `dir`, never following symlinks.
fn remove_tree(dir: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags, Mode::empty())?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let children: Vec<(Vec<u8>, bool)> = d
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_bytes().to_vec(), e.file_type() == Some(nix::dir::Type::Directory)))
        .filter(|(n, _)| n != b"." && n != b"..")
        .collect();
    for (child, is_dir) in children {
        let here = d.as_fd();
        if is_dir {
            remove_tree(here, &child)?;
        } else {
            match unlinkat(here, child.as_slice(), UnlinkatFlags::NoRemoveDir) {
                // d_type unknown on some filesystems: it was a directory after all.
                Err(Errno::EISDIR) => remove_tree(here, &child)?,
                r => r?,
            }
        }
    }
    drop(d);
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)?;
    Ok(())
}

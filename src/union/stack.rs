//! A stack of layers and path lookup through it.
//!
//! Layer 0 is the top. With a writable upper, the upper is layer 0. Lookup goes top-down:
//! the first layer holding the name wins; `.wh.NAME` (or an overlay 0/0 char device) in a layer
//! hides NAME in the layers below it; a non-directory hides everything below it; an opaque
//! directory hides the children of the same directory in lower layers.

use std::ffi::OsStr;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use lru::LruCache;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};

use super::layer::{Layer, SafeFd, file_type, is_dir, is_implicit_dir, is_opaque_dir, stat_at};
use super::layer_names::RecordedDir;
use super::listing::{self, ListEntry, Listing};
use super::name_index::{MIN_LAYERS, NameIndex, NameIndexes};
use super::pathhash::PathHash;
use super::xattr_memo::XattrMemo;
use crate::layer::override_stat::{self, OverrideStat};
use crate::layer::whiteout::{is_overlay_whiteout_stat, is_reserved, whiteout_name};

const DIR_FD_CACHE: usize = 512;
/// Total directory entries kept in cached listings (bounds memory for huge directories).
const LISTING_BUDGET: usize = 200_000;

/// One entry of the merged view.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Path relative to the layer roots; empty for the root.
    pub path: PathBuf,
    /// Index of the layer the entry comes from (its top-most occurrence).
    pub layer: usize,
    /// lstat of the entry in that layer.
    pub stat: FileStat,
    /// For a directory, every layer whose directory is merged into this one, top first.
    /// For anything else, just `[layer]`.
    pub layers: Vec<usize>,
}

impl Entry {
    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        is_dir(&self.stat)
    }

    /// A directory merged from more than one layer.
    pub fn is_merged(&self) -> bool {
        self.layers.len() > 1
    }

    /// Last path component ("" for the root).
    pub fn name(&self) -> &OsStr {
        self.path.file_name().unwrap_or_default()
    }
}

/// A merged path's bytes as a cache key: hashing and comparing a `Path` walks its components,
/// a cost that grows with the depth on every lookup of a deep tree.
type PathKey = Vec<u8>;

fn key(p: &Path) -> PathKey {
    p.as_os_str().as_bytes().to_vec()
}

struct Listings {
    lru: LruCache<PathKey, Arc<Listing>, PathHash>,
    entries: usize,
}

/// The layer stack with its caches.
pub struct Stack {
    layers: Vec<Layer>,
    writable: bool,
    dir_fds: Mutex<LruCache<(usize, PathKey), Arc<SafeFd>, PathHash>>,
    listings: Mutex<Listings>,
    /// Bumped whenever a cached listing is invalidated: a listing taken at generation G still
    /// describes the tree while the generation is G.
    generation: AtomicU64,
    fd_store: OnceLock<Arc<dyn DirFdStore>>,
    /// Override values already read in marked layers (a getxattr per stat otherwise).
    overrides: XattrMemo<OverrideStat>,
    /// Merged name indexes of directories with many lower layers (`name_index.rs`).
    names: NameIndexes,
    /// Whether the lower layers' records of their directories (`layer_names.rs`) stand in for
    /// reading them: over two lower layers or more (a single one is never probed for what it
    /// lacks, and its record would be read whole for nothing).
    use_records: bool,
}

/// Directory fds kept beyond the stack's own LRU: the FUSE filesystem keeps each directory's fds
/// on its node while the kernel holds that node, so a request deep in a tree finds its
/// directory's fd (or its parent's, to open it beneath with one component) and never walks from
/// the layer root again. The store forgets what changes (renames, removals); the stack asks it
/// first and offers it every directory it opens.
pub trait DirFdStore: Send + Sync {
    /// The fd of the directory `dir` in `layer`, if kept.
    fn get(&self, layer: usize, dir: &Path) -> Option<Arc<SafeFd>>;
    /// Offers the fd of `dir` in `layer`; true if kept (then the stack's LRU need not hold it).
    fn put(&self, layer: usize, dir: &Path, fd: &Arc<SafeFd>) -> bool;
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack").field("layers", &self.layers).field("writable", &self.writable).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stack {
    /// Opens a stack: `lowers` top first, and optionally a writable `upper` above them.
    pub fn new(lowers: &[PathBuf], upper: Option<&Path>) -> io::Result<Stack> {
        let mut layers = Vec::with_capacity(lowers.len() + 1);
        if let Some(u) = upper {
            layers.push(Layer::open_writable(u)?);
        }
        for l in lowers {
            layers.push(Layer::open(l)?);
        }
        if layers.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no layers"));
        }
        // Copy-up brings lower files' override xattrs up: the upper must be read the same way.
        if upper.is_some() && layers[1..].iter().any(|l| l.overrides().is_some()) {
            layers[0].mark_overrides()?;
        }
        Ok(Stack {
            layers,
            writable: upper.is_some(),
            dir_fds: Mutex::new(LruCache::with_hasher(
                NonZeroUsize::new(DIR_FD_CACHE).unwrap_or(NonZeroUsize::MIN),
                PathHash,
            )),
            listings: Mutex::new(Listings { lru: LruCache::unbounded_with_hasher(PathHash), entries: 0 }),
            generation: AtomicU64::new(0),
            fd_store: OnceLock::new(),
            overrides: XattrMemo::default(),
            names: NameIndexes::default(),
            use_records: lowers.len() >= 2,
        })
    }

    /// All layers, top first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The writable upper layer (layer 0), if any.
    pub fn upper(&self) -> Option<&Layer> {
        if self.writable { self.layers.first() } else { None }
    }

    /// Whether layer 0 is a writable upper.
    pub fn has_upper(&self) -> bool {
        self.writable
    }

    /// A directory fd for `rel` in `layer`, cached. Opened beneath its parent's fd when that
    /// one is cached (the common case: lookups walk down one level at a time), else beneath the
    /// layer root in pieces below PATH_MAX: no depth limit, and never outside the layer.
    pub fn dir_fd(&self, layer: usize, rel: &Path) -> io::Result<Arc<SafeFd>> {
        if let Some(fd) = self.cached_dir_fd(layer, rel) {
            return Ok(fd);
        }
        let fd = self.open_dir_fd(layer, rel)?;
        Ok(self.keep_dir_fd(layer, rel, fd))
    }

    /// The fd of the directory `rel` in `layer`, if cached (here or in the store).
    pub fn cached_dir_fd(&self, layer: usize, rel: &Path) -> Option<Arc<SafeFd>> {
        let store = self.fd_store.get();
        if let Some(fd) = store.and_then(|s| s.get(layer, rel)) {
            return Some(fd);
        }
        lock(&self.dir_fds).get(&(layer, key(rel))).cloned()
    }

    /// Opens the directory `rel` in `layer` afresh (not cached: see [`Stack::keep_dir_fd`]),
    /// beneath its parent's cached fd when there is one.
    pub fn open_dir_fd(&self, layer: usize, rel: &Path) -> io::Result<SafeFd> {
        let parent = match (rel.parent(), rel.file_name()) {
            (Some(p), Some(n)) => self.cached_dir_fd(layer, p).map(|fd| (fd, n)),
            _ => None,
        };
        match parent {
            Some((pfd, name)) => pfd.dir_beneath(Path::new(name)),
            None => self
                .layers
                .get(layer)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?
                .open_dir(rel),
        }
    }

    /// Caches `fd`, the directory `rel` of `layer`, and shares it.
    pub fn keep_dir_fd(&self, layer: usize, rel: &Path, fd: SafeFd) -> Arc<SafeFd> {
        let fd = Arc::new(fd);
        match self.fd_store.get() {
            Some(s) if s.put(layer, rel, &fd) => {}
            _ => {
                lock(&self.dir_fds).put((layer, key(rel)), fd.clone());
            }
        }
        fd
    }

    /// Offers the store the fds of the directory `rel` in `layers` that only the stack's LRU
    /// holds: a lookup opens them before the store knows the directory (a merged directory's
    /// first lookup opens one in each of its layers), and the LRU alone would drop them again
    /// once more directories are opened, to be opened again by the first request below it.
    pub fn offer_dir_fds(&self, rel: &Path, layers: &[usize]) {
        let Some(store) = self.fd_store.get() else { return };
        let k = key(rel);
        let held: Vec<(usize, Arc<SafeFd>)> = {
            let c = lock(&self.dir_fds);
            layers.iter().filter_map(|&l| c.peek(&(l, k.clone())).map(|fd| (l, fd.clone()))).collect()
        };
        for (l, fd) in held {
            if store.put(l, rel, &fd) {
                lock(&self.dir_fds).pop(&(l, k.clone()));
            }
        }
    }

    /// Keeps directory fds in `store` too (once; see [`DirFdStore`]).
    pub fn set_fd_store(&self, store: Arc<dyn DirFdStore>) {
        let _ = self.fd_store.set(store);
    }

    /// Opens the file `rel` of `layer` beneath its parent directory's fd (never following a
    /// symlink, never leaving the layer).
    pub fn open_in(&self, layer: usize, rel: &Path, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
        match (rel.parent(), rel.file_name()) {
            (Some(p), Some(n)) => {
                self.dir_fd(layer, p)?.open_beneath(Path::new(n), flags | OFlag::O_NOFOLLOW, mode)
            }
            _ => self.dir_fd(layer, Path::new(""))?.open_beneath(Path::new(""), flags, mode),
        }
    }

    /// The root of the merged view.
    pub fn root(&self) -> io::Result<Entry> {
        let mut layers = Vec::new();
        let mut attrs: Option<(usize, FileStat)> = None;
        // Whether the attributes taken so far are made up (unpack's implicit root); asked only
        // once a second layer is merged in, so a single-layer root costs no xattr reads.
        let mut implicit: Option<bool> = None;
        // The marks of a root a layer's record has are not read from disk.
        let recorded = |i: usize| Some(self.recorded_dir(i, Path::new(""))??.marks);
        for i in 0..self.layers.len() {
            let fd = self.dir_fd(i, Path::new(""))?;
            let marks = recorded(i);
            match &attrs {
                None => {
                    attrs = Some((
                        i,
                        self.present(i, fd.as_fd(), OsStr::new(""), nix::sys::stat::fstat(fd.as_fd())?)?,
                    ))
                }
                Some((top, _)) => {
                    if implicit.is_none() {
                        implicit = Some(match recorded(*top) {
                            Some(m) => m.implicit,
                            None => self.implicit(*top, Path::new(""))?,
                        });
                    }
                    let real = match marks {
                        Some(m) => !m.implicit,
                        None => !is_implicit_dir(fd.as_fd())?,
                    };
                    if implicit == Some(true) && real {
                        let st = nix::sys::stat::fstat(fd.as_fd())?;
                        attrs = Some((i, self.present(i, fd.as_fd(), OsStr::new(""), st)?));
                        implicit = Some(false);
                    }
                }
            }
            layers.push(i);
            let opaque = match marks {
                Some(m) => m.opaque,
                None => is_opaque_dir(fd.as_fd())?,
            };
            if opaque {
                break;
            }
        }
        let (layer, stat) = attrs.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        Ok(Entry { path: PathBuf::new(), layer, stat, layers })
    }

    /// Looks up a relative path ("" or "/" = root) through the stack.
    pub fn lookup(&self, path: &Path) -> io::Result<Option<Entry>> {
        let mut cur = self.root()?;
        for c in path.components() {
            match c {
                Component::Normal(name) => {
                    if !cur.is_dir() {
                        return Ok(None);
                    }
                    match self.lookup_child(&cur, name)? {
                        Some(e) => cur = e,
                        None => return Ok(None),
                    }
                }
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                }
            }
        }
        Ok(Some(cur))
    }

    /// Looks up `name` in the directory `parent`.
    pub fn lookup_child(&self, parent: &Entry, name: &OsStr) -> io::Result<Option<Entry>> {
        self.lookup_child_in(parent, name, &parent.layers)
    }

    /// Looks up `name` in `parent`, using only the given layers of the parent (top first):
    /// e.g. `&parent.layers[1..]` asks "what would be there without the upper?". In a directory
    /// merged from many lower layers their name index says which of them to visit
    /// (`name_index.rs`).
    pub fn lookup_child_in(
        &self,
        parent: &Entry,
        name: &OsStr,
        layers: &[usize],
    ) -> io::Result<Option<Entry>> {
        if is_reserved(name) || name.is_empty() || name == "." || name == ".." {
            return Ok(None);
        }
        // With the directory's lower layers indexed, only the layers holding the name are
        // visited (the upper, never indexed, still is), and no `.wh.` name in them: the index
        // ends a name's layers at its whiteout.
        let narrowed: Vec<usize>;
        let (layers, indexed_from) = match self.name_index(parent, layers) {
            Some((upper, ix)) => {
                narrowed = upper.iter().chain(ix.layers_of(name)).copied().collect();
                (&narrowed[..], upper.len())
            }
            None => (layers, layers.len()),
        };
        let path = parent.path.join(name);
        let wh = whiteout_name(name);
        let mut found: Option<Entry> = None;
        // Whether the found directory's attributes were made up by unpack (then the next real ones
        // below count); asked only when a lower layer has the directory too, so the common case
        // of a directory in one layer costs no xattr reads on this hot path.
        let mut implicit: Option<bool> = None;
        // A directory merged from many indexed lower layers: its own index, read with each
        // layer's marks (opaque, implicit) when the lookup reaches them (`NameIndexes::for_merge`).
        let mut merged: Option<Arc<NameIndex>> = None;
        let mark_of =
            |merged: &Option<Arc<NameIndex>>, l: usize| merged.as_ref().and_then(|ix| ix.marks_of(l));
        for (i, &l) in layers.iter().enumerate() {
            // Whiteouts and opacity only matter when there are layers below this one.
            let below = i + 1 < layers.len();
            if i == indexed_from && layers.len() - i > 1 {
                // More than one indexed layer for a name: a directory in each of them.
                merged = self.names.for_merge(self, &path, &layers[i..]);
            }
            let mark = mark_of(&merged, l);
            let parent_fd = || match self.dir_fd(l, &parent.path) {
                Ok(fd) => Ok(Some(fd)),
                Err(e) if is_gone(&e) => Ok(None),
                Err(e) => Err(e),
            };
            // A layer the indexes know holds the directory below the one found: merged in
            // without a stat (its attributes are read only when they replace made-up ones), and
            // without opening its parent there (a layer's record told without an open).
            if let (Some(m), Some(e)) = (mark, &mut found) {
                if implicit.is_none() {
                    implicit = Some(self.implicit_marked(&merged, e.layer, &path)?);
                }
                if implicit == Some(true) && !m.implicit {
                    let Some(dir) = parent_fd()? else { continue };
                    let Some(st) = stat_at(dir.as_fd(), name)?.filter(is_dir) else { continue };
                    let st = self.present(l, dir.as_fd(), name, st)?;
                    (e.layer, e.stat, implicit) = (l, st, Some(false));
                }
                e.layers.push(l);
                if !below || m.opaque {
                    break;
                }
                continue;
            }
            // A layer's record says whether it holds the name and whether it whites it out: no
            // stat for a name it lacks, no `.wh.` probe.
            let (held, whited_out) = match self.recorded_dir(l, &parent.path) {
                Some(None) => continue,
                Some(Some(rd)) => {
                    let (held, whited_out) = rd.probe(name);
                    (Some(held.is_some()), whited_out)
                }
                None => (None, false),
            };
            let mut dir_fd: Option<Arc<SafeFd>> = None;
            let on_disk = if held == Some(false) {
                None
            } else {
                let Some(dir) = parent_fd()? else { continue };
                let st = stat_at(dir.as_fd(), name)?;
                dir_fd = Some(dir);
                st
            };
            if let (Some(st), Some(dir)) = (on_disk, &dir_fd) {
                if is_overlay_whiteout_stat(&st) {
                    break;
                }
                match &mut found {
                    None => {
                        let d = is_dir(&st);
                        let stat = self.present(l, dir.as_fd(), name, st)?;
                        found = Some(Entry { path: path.clone(), layer: l, stat, layers: vec![l] });
                        let opaque = match mark {
                            Some(m) => m.opaque,
                            None => d && below && self.opaque(l, &path)?,
                        };
                        if !d || !below || opaque {
                            break;
                        }
                    }
                    Some(e) => {
                        if !is_dir(&st) {
                            break;
                        }
                        if implicit.is_none() {
                            implicit = Some(self.implicit_marked(&merged, e.layer, &path)?);
                        }
                        if implicit == Some(true) && !self.implicit(l, &path)? {
                            let st = self.present(l, dir.as_fd(), name, st)?;
                            (e.layer, e.stat, implicit) = (l, st, Some(false));
                        }
                        e.layers.push(l);
                        if !below || self.opaque(l, &path)? {
                            break;
                        }
                    }
                }
            }
            if below && i < indexed_from {
                let whiteout = match (held, &dir_fd) {
                    (Some(_), _) => whited_out,
                    (None, Some(dir)) => stat_at(dir.as_fd(), &wh)?.is_some(),
                    (None, None) => match parent_fd()? {
                        Some(dir) => stat_at(dir.as_fd(), &wh)?.is_some(),
                        None => false,
                    },
                };
                if whiteout {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Whether `layer`'s copy of the directory `path` is made up by unpack: from the marks read
    /// with its index when there are some.
    fn implicit_marked(
        &self,
        merged: &Option<Arc<NameIndex>>,
        layer: usize,
        path: &Path,
    ) -> io::Result<bool> {
        match merged.as_ref().and_then(|ix| ix.marks_of(layer)) {
            Some(m) => Ok(m.implicit),
            None => self.implicit(layer, path),
        }
    }

    /// The name index for a lookup in `parent` over `layers`, with the upper part of `layers`
    /// (layer 0 of a writable stack, or nothing): only when the rest is the directory's whole
    /// lower part (a suffix of it, as [`Stack::listed_child`] asks for, hides nothing above).
    fn name_index<'a>(&self, parent: &Entry, layers: &'a [usize]) -> Option<(&'a [usize], Arc<NameIndex>)> {
        let upper_part = |ls: &[usize]| usize::from(self.writable && ls.first() == Some(&0));
        let (upper, lower) = layers.split_at(upper_part(layers));
        if lower.len() < MIN_LAYERS || lower != &parent.layers[upper_part(&parent.layers)..] {
            return None;
        }
        self.names.for_lookup(self, &parent.path, lower).map(|ix| (upper, ix))
    }

    /// The entry of a name listed in `dir`, looked up only from the layer the listing found it
    /// in: the layers above hold neither it nor a whiteout for it. Only valid while the listing
    /// is current (see [`Stack::generation`]); falls back to a full lookup when the layer no
    /// longer holds what the listing saw.
    pub fn listed_child(&self, dir: &Entry, le: &ListEntry) -> io::Result<Option<Entry>> {
        let Some(pos) = dir.layers.iter().position(|&l| l == le.layer) else {
            return self.lookup_child(dir, &le.name);
        };
        if le.kind == libc::S_IFDIR {
            return self.lookup_child_in(dir, &le.name, &dir.layers[pos..]);
        }
        let fd = match self.dir_fd(le.layer, &dir.path) {
            Ok(fd) => fd,
            Err(e) if is_gone(&e) => return self.lookup_child(dir, &le.name),
            Err(e) => return Err(e),
        };
        match stat_at(fd.as_fd(), &le.name)? {
            Some(st) if file_type(&st) == le.kind => Ok(Some(Entry {
                path: dir.path.join(&le.name),
                layer: le.layer,
                stat: self.present(le.layer, fd.as_fd(), &le.name, st)?,
                layers: vec![le.layer],
            })),
            _ => self.lookup_child(dir, &le.name),
        }
    }

    /// The stat of `path` in `layer` as the merged view shows it; `None` when not there.
    pub fn stat_in(&self, layer: usize, path: &Path) -> io::Result<Option<FileStat>> {
        let (parent, name) = match (path.parent(), path.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => (Path::new(""), OsStr::new("")),
        };
        let dir = self.dir_fd(layer, parent)?;
        let st = if name.is_empty() {
            Some(nix::sys::stat::fstat(dir.as_fd())?)
        } else {
            stat_at(dir.as_fd(), name)?
        };
        st.map(|st| self.present(layer, dir.as_fd(), name, st)).transpose()
    }

    /// The stat of `e` as it is on disk, without what an override xattr records.
    pub fn disk_stat(&self, e: &Entry) -> io::Result<FileStat> {
        if self.layers.get(e.layer).and_then(Layer::overrides).is_none() {
            return Ok(e.stat);
        }
        let (parent, name) = match (e.path.parent(), e.path.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => (Path::new(""), OsStr::new(".")),
        };
        let dir = self.dir_fd(e.layer, parent)?;
        stat_at(dir.as_fd(), name)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    /// The stat of `name` in `dir` (of `layer`) as the merged view shows it: `st` from disk with
    /// the layer's override xattr applied (`layer::override_stat`; only in marked layers).
    fn present(
        &self,
        layer: usize,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        mut st: FileStat,
    ) -> io::Result<FileStat> {
        if let Some(marker) = self.layers.get(layer).and_then(Layer::overrides) {
            let recorded = match self.overrides.get(layer, &st) {
                Some(r) => r,
                None => {
                    let r = override_stat::read_at(dir, name, marker.xattr)?;
                    self.overrides.note(layer, &st, r);
                    r
                }
            };
            override_stat::present(&mut st, marker, recorded.as_ref());
        }
        Ok(st)
    }

    /// What the record of `layer` says of its directory `dir`: `Some(None)` when the layer has
    /// no such directory; `None` when no record is used for the layer (read it from disk).
    pub fn recorded_dir(&self, layer: usize, dir: &Path) -> Option<Option<RecordedDir<'_>>> {
        if !self.use_records || (self.writable && layer == 0) {
            return None;
        }
        Some(self.layers.get(layer)?.names()?.dir(dir))
    }

    fn implicit(&self, layer: usize, path: &Path) -> io::Result<bool> {
        if let Some(rec) = self.recorded_dir(layer, path) {
            return Ok(rec.is_some_and(|d| d.marks.implicit));
        }
        match self.dir_fd(layer, path) {
            Ok(fd) => is_implicit_dir(fd.as_fd()),
            Err(e) if is_gone(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn opaque(&self, layer: usize, path: &Path) -> io::Result<bool> {
        if let Some(rec) = self.recorded_dir(layer, path) {
            return Ok(rec.is_some_and(|d| d.marks.opaque));
        }
        match self.dir_fd(layer, path) {
            Ok(fd) => is_opaque_dir(fd.as_fd()),
            Err(e) if is_gone(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The merged listing of a directory (whiteouts removed), cached.
    pub fn list(&self, dir: &Entry) -> io::Result<Arc<Listing>> {
        if let Some(l) = lock(&self.listings).lru.get(dir.path.as_os_str().as_bytes()) {
            if l.layers == dir.layers {
                return Ok(l.clone());
            }
        }
        let listing = Arc::new(listing::merge(self, dir)?);
        let n = listing.entries.len();
        if n <= LISTING_BUDGET / 4 {
            let mut c = lock(&self.listings);
            if let Some(old) = c.lru.put(key(&dir.path), listing.clone()) {
                c.entries -= old.entries.len();
            }
            c.entries += n;
            while c.entries > LISTING_BUDGET {
                match c.lru.pop_lru() {
                    Some((_, old)) => c.entries -= old.entries.len(),
                    None => break,
                }
            }
        }
        Ok(listing)
    }

    /// The listing generation: it changes whenever a directory's children change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Forgets the cached listing of `dir` (its children changed).
    pub fn invalidate_listing(&self, dir: &Path) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut c = lock(&self.listings);
        if let Some(old) = c.lru.pop(dir.as_os_str().as_bytes()) {
            c.entries -= old.entries.len();
        }
    }

    /// Forgets what is cached about the directory `path` itself (its fds and listing) and its
    /// parent's listing: enough for a removed *empty* directory, whose children were forgotten
    /// one by one as they went (no walk over every cached path, which a deep `rm -rf` can't
    /// afford).
    pub fn invalidate_dir(&self, path: &Path) {
        {
            let mut fds = lock(&self.dir_fds);
            for l in 0..self.layers.len() {
                fds.pop(&(l, key(path)));
            }
        }
        self.invalidate_listing(path);
        if let Some(parent) = path.parent() {
            self.invalidate_listing(parent);
        }
    }

    /// Forgets everything cached about `path` and below it (it was removed or renamed), and the
    /// listing of its parent.
    pub fn invalidate_tree(&self, path: &Path) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let within = |p: &[u8]| is_within(Path::new(OsStr::from_bytes(p)), path);
        lock(&self.dir_fds).retain(|(_, p), _| !within(p));
        let mut c = lock(&self.listings);
        let mut dropped = 0;
        c.lru.retain(|p, l| {
            let keep = !within(p);
            if !keep {
                dropped += l.entries.len();
            }
            keep
        });
        c.entries -= dropped;
        drop(c);
        if let Some(parent) = path.parent() {
            self.invalidate_listing(parent);
        }
    }
}

/// Whether `p` is `base` or below it. Compares bytes, so a deep path that is too short is
/// rejected at once (`Path::starts_with` walks every component).
pub fn is_within(p: &Path, base: &Path) -> bool {
    let (p, b) = (p.as_os_str().as_bytes(), base.as_os_str().as_bytes());
    if b.is_empty() {
        return true;
    }
    p.len() >= b.len() && p.starts_with(b) && (p.len() == b.len() || p[b.len()] == b'/')
}

/// Errors that mean "not in this layer".
pub(crate) fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP))
}

//! Copy-up: bring a lower entry into the upper layer before its first change.
//!
//! The copy is built in the work dir (data by `copy_file_range`, holes kept; owner, mode,
//! times, xattrs; the origin st_ino in a private xattr), then renamed into place: atomic.
//! Parents are copied first. A lower file with several hard links is copied once and every
//! visible name of it is linked to the copy, so the names stay one file.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use nix::dir::Type;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags, readlinkat, renameat2};
use nix::sys::stat::{FileStat, Mode, SFlag, UtimensatFlags, fchmod, mkdirat, mknodat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, Whence, fchownat, linkat, lseek, symlinkat};
use xattr::FileExt;

use super::filesystem::{LinkMap, R, StrataFs, errno, lock};
use super::ino::{InoMap, is_private_xattr};
use super::upper::read_upper_dir;
use crate::union::Entry;
use crate::union::layer::{SafeFd, proc_path, stat_at};

/// One lock per lower file being copied up outside the namespace lock (keyed by its st_ino).
#[derive(Debug, Default)]
pub(crate) struct CopyLocks {
    slots: Mutex<HashMap<u64, Weak<Mutex<()>>>>,
}

impl CopyLocks {
    /// The copy-up lock of node `ino`.
    pub(crate) fn slot(&self, ino: u64) -> Arc<Mutex<()>> {
        let mut slots = lock(&self.slots);
        if let Some(s) = slots.get(&ino).and_then(Weak::upgrade) {
            return s;
        }
        slots.retain(|_, w| w.strong_count() > 0);
        let s = Arc::new(Mutex::new(()));
        slots.insert(ino, Arc::downgrade(&s));
        s
    }
}

impl StrataFs {
    fn work_fd(&self) -> R<BorrowedFd<'_>> {
        self.work.as_ref().map(|w| w.as_fd()).ok_or(Errno::EROFS)
    }

    /// The owner of a new file in the work dir (`StrataFs::work_owner`).
    fn work_owner(&self) -> Option<(u32, u32)> {
        *self.work_owner.get_or_init(|| {
            let wst = nix::sys::stat::fstat(self.work_fd().ok()?).ok()?;
            let gid =
                if wst.st_mode & libc::S_ISGID != 0 { wst.st_gid } else { nix::unistd::getegid().as_raw() };
            Some((nix::unistd::geteuid().as_raw(), gid))
        })
    }

    /// A fresh name in the work dir.
    pub(crate) fn temp_name(&self) -> OsString {
        // The pid only tells daemons apart: taken once (each getpid is a syscall).
        static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        OsString::from(format!("strata-{}-{n}", PID.get_or_init(std::process::id)))
    }

    /// Makes sure `e` exists in the upper layer and returns its upper entry.
    pub(crate) fn copy_up(&self, e: &Entry) -> R<Entry> {
        self.copy_up_data(e, true)
    }

    /// Copy-up for a file about to be truncated to 0 (O_TRUNC): everything but the data.
    pub(crate) fn copy_up_empty(&self, e: &Entry) -> R<Entry> {
        self.copy_up_data(e, false)
    }

    fn copy_up_data(&self, e: &Entry, data: bool) -> R<Entry> {
        self.copy_up_with(e, data, None)
    }

    /// Copies up the lower regular file of node `ino` with no namespace lock held (see
    /// [`Self::copy_up_unlocked`]). Callers then copy up as usual, which finds it done.
    pub(crate) fn prepare_copy_up(&self, ino: u64) -> R<()> {
        if self.read_only || self.work.is_none() {
            return Ok(());
        }
        // A node without a name (or any other failure) is left to the request itself.
        let Ok(e) = self.entry_shared(ino) else { return Ok(()) };
        self.copy_up_unlocked(&e.path.clone(), Some(e))
    }

    /// Copies up the lower regular file at `path` with no namespace lock held, so other
    /// requests go on meanwhile (a 1 GiB copy-up must not freeze `ls` elsewhere, and copy-ups
    /// of different files run side by side). The copy is built in the work dir under the
    /// file's own copy-up lock (one copy per file at a time); then, under the namespace lock,
    /// it is renamed into place if the name still shows that lower file (else it is dropped).
    /// Anything else at `path` is left alone.
    fn copy_up_unlocked(&self, path: &Path, found: Option<Entry>) -> R<()> {
        let look = || {
            let _ns = self.ns.read().unwrap_or_else(|e| e.into_inner());
            self.lookup_path(path).ok()
        };
        let wanted = |e: &Entry| !self.in_upper(e) && e.stat.st_mode & libc::S_IFMT == libc::S_IFREG;
        let Some(e) = found.or_else(look).filter(wanted) else { return Ok(()) };
        let origin = self.base_ino(&e);
        let slot = self.copy_locks.slot(origin);
        let (_copying, e) = match slot.try_lock() {
            Ok(g) => (g, e),
            Err(_) => {
                let g = lock(&slot);
                // Another request was copying it: done now, most likely.
                let Some(e) = look().filter(wanted) else { return Ok(()) };
                (g, e)
            }
        };
        self.wrote.store(true, Ordering::Relaxed);
        let made = self.copy_to_work(&e, origin, true)?;
        let tmp = made.name.clone();
        let _ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
        match self.lookup_path(path) {
            Ok(now)
                if !self.in_upper(&now)
                    && now.layer == e.layer
                    && now.stat.st_ino == e.stat.st_ino
                    && now.stat.st_dev == e.stat.st_dev =>
            {
                // Installed by its rename; a failure may leave it in the work dir.
                let r = self.copy_up_with(&now, true, Some(made)).map(drop);
                if r.is_err() {
                    let _ = self.remove_work(&tmp, false);
                }
                r
            }
            _ => {
                let _ = self.remove_work(&tmp, false);
                Ok(())
            }
        }
    }

    /// Before a rename: copies up what it will move (a directory's whole subtree, or a file)
    /// while holding the namespace lock only a moment per entry, file data not at all, so a
    /// rename of a big lower tree does not stall the mount. The rename itself then finds it
    /// done. Copy-ups change nothing in the merged view, so a rename that fails after this
    /// loses nothing; one that is bound to fail (a name missing, a non-empty directory or any
    /// name with RENAME_NOREPLACE in the way, a move into itself) copies nothing.
    pub(crate) fn prepare_rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> R<()> {
        if self.read_only || self.work.is_none() {
            return Ok(());
        }
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let moved = {
            let _ns = self.ns.read().unwrap_or_else(|e| e.into_inner());
            let (Ok(pe), Ok(npe)) = (self.entry(parent), self.entry(newparent)) else { return Ok(()) };
            let Ok(Some(src)) = self.child(&pe, name) else { return Ok(()) };
            let Ok(dst) = self.child(&npe, newname) else { return Ok(()) };
            if crate::union::stack::is_within(&npe.path.join(newname), &src.path) {
                return Ok(());
            }
            match dst {
                None if exchange => return Ok(()),
                None => vec![src.path],
                Some(d) if exchange => vec![src.path, d.path],
                Some(_) if flags & libc::RENAME_NOREPLACE != 0 => return Ok(()),
                Some(d) if d.is_dir() && !self.stack.list(&d).is_ok_and(|l| l.entries.is_empty()) => {
                    return Ok(());
                }
                Some(_) => vec![src.path],
            }
        };
        for p in moved {
            self.prepare_copy_up_tree(&p)?;
        }
        Ok(())
    }

    /// Copies up the entry at `path` and, for a directory, everything visible below it, one
    /// entry at a time (see [`Self::prepare_rename`]).
    fn prepare_copy_up_tree(&self, path: &Path) -> R<()> {
        // An explicit work list, not recursion: a subtree of any depth.
        let mut todo = vec![path.to_path_buf()];
        while let Some(p) = todo.pop() {
            let e = {
                let _ns = self.ns.read().unwrap_or_else(|e| e.into_inner());
                match self.lookup_path(&p) {
                    Ok(e) => e,
                    Err(_) => continue, // gone meanwhile: nothing to copy
                }
            };
            if e.stat.st_mode & libc::S_IFMT == libc::S_IFREG {
                self.copy_up_unlocked(&p, Some(e))?;
                continue;
            }
            let up = if self.in_upper(&e) {
                e
            } else {
                // A directory, symlink or device: metadata only, quick.
                let _ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
                match self.lookup_path(&p) {
                    Ok(e) => self.copy_up(&e)?,
                    Err(_) => continue,
                }
            };
            // An upper directory merged with no lower one holds its whole subtree already.
            if !up.is_dir() || !up.is_merged() {
                continue;
            }
            let _ns = self.ns.read().unwrap_or_else(|e| e.into_inner());
            let Ok(listing) = self.stack.list(&up) else { continue };
            for child in listing.entries.iter() {
                if let Ok(Some(ce)) = self.child(&up, &child.name) {
                    if !self.in_upper(&ce) || ce.is_dir() {
                        todo.push(ce.path);
                    }
                }
            }
        }
        Ok(())
    }

    /// Copies up `e`; `ready` is a copy of it already built in the work dir.
    fn copy_up_with(&self, e: &Entry, data: bool, ready: Option<WorkCopy>) -> R<Entry> {
        if self.read_only {
            return Err(Errno::EROFS);
        }
        // Every change to the upper starts here (its parent or itself brought up first).
        self.wrote.store(true, Ordering::Relaxed);
        if self.in_upper(e) {
            return Ok(e.clone());
        }
        let (Some(parent), Some(name)) = (e.path.parent(), e.path.file_name()) else {
            return Err(Errno::EIO); // the root is always in the upper
        };
        // The ancestors not yet in the upper, copied top-down without recursion (any depth).
        let mut missing = Vec::new();
        let mut at = parent;
        loop {
            let ae = self.lookup_path(at)?;
            if self.in_upper(&ae) {
                break;
            }
            let up = at.parent();
            missing.push(ae);
            match up {
                Some(p) => at = p,
                None => break,
            }
        }
        for ae in missing.iter().rev() {
            self.copy_up_data(ae, true)?;
        }
        let origin = self.base_ino(e);
        let made = match ready {
            Some(t) => t,
            None => self.copy_to_work(e, origin, data)?,
        };
        let tmp = made.name;
        let work = self.work_fd()?;
        let updir = self.stack.dir_fd(0, parent).map_err(errno)?;
        // Copy-up changes nothing in the merged parent: keep its times.
        let pst = nix::sys::stat::fstat(updir.as_fd())?;
        if let Err(err) = renameat2(work, tmp.as_os_str(), updir.as_fd(), name, RenameFlags::RENAME_NOREPLACE)
        {
            let _ = self.remove_work(&tmp, e.is_dir());
            return Err(err);
        }
        let _ = set_times(updir.as_fd(), OsStr::new("."), &pst);
        if e.stat.st_mode & libc::S_IFMT == libc::S_IFREG && e.stat.st_nlink > 1 {
            self.link_aliases(e, origin)?;
        }
        self.changed_one(&e.path);
        self.record_new(&e.path, None)?;
        tracing::debug!(path = %e.path.display(), "copied up");
        let up = if e.is_dir() {
            // The copy is the top of the directory's merge, over the same lower layers, and no
            // marker of its own (made here, private xattrs not copied): no lookup through the
            // layers (a stat, an opaque and an implicit check in each) to find that out.
            let stat = self.stack.stat_in(0, &e.path).map_err(errno)?.ok_or(Errno::ENOENT)?;
            let layers = std::iter::once(0).chain(e.layers.iter().copied().filter(|&l| l != 0)).collect();
            let up = Entry { path: e.path.clone(), layer: 0, stat, layers };
            lock(&self.nodes).cache(&up);
            up
        } else {
            self.lookup_path(&e.path)?
        };
        // What the copy is known to carry, for the file as it now is (the rename moved its
        // ctime): the opens and writes that follow read neither xattr back.
        if made.origin_set {
            self.inos.origins.note(0, &up.stat, Some(origin));
        }
        if made.no_caps {
            self.no_caps.note(0, &up.stat, None);
        }
        Ok(up)
    }

    fn remove_work(&self, tmp: &OsStr, dir: bool) -> R<()> {
        let flag =
            if dir { nix::unistd::UnlinkatFlags::RemoveDir } else { nix::unistd::UnlinkatFlags::NoRemoveDir };
        nix::unistd::unlinkat(self.work_fd()?, tmp, flag)
    }

    /// Builds a copy of `e` (without children) in the work dir.
    fn copy_to_work(&self, e: &Entry, origin: u64, data: bool) -> R<WorkCopy> {
        let work = self.work_fd()?;
        let tmp = self.temp_name();
        let (srcdir, name) = self.parent_fd(e, e.layer)?;
        // The file as it is on disk: what an override xattr records (copied with the others)
        // is not something to recreate (a device node the user can't make).
        let disk = self.stack.disk_stat(e).map_err(errno)?;
        let st = &disk;
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        let mut made = WorkCopy { name: tmp.clone(), origin_set: false, no_caps: false };
        let res = (|| -> R<()> {
            match st.st_mode & libc::S_IFMT {
                libc::S_IFREG => {
                    let src = self
                        .stack
                        .open_in(e.layer, &e.path, OFlag::O_RDONLY | OFlag::O_NOFOLLOW, Mode::empty())
                        .map_err(errno)?;
                    let dst = nix::fcntl::openat(
                        work,
                        tmp.as_os_str(),
                        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o600),
                    )?;
                    if data {
                        copy_data(src.as_fd(), dst.as_fd(), st)?;
                    }
                    let dst = File::from(dst);
                    self.set_meta_fd(&dst, st, perm)?;
                    // Through the open files: no /proc path to resolve per call.
                    let copied = copy_file_xattrs(&File::from(src), &dst);
                    made.no_caps = copied.is_some_and(|names| !names.iter().any(|n| n == CAPS));
                    made.origin_set = dst.set_xattr(self.inos.origin_xattr, &InoMap::encode(origin)).is_ok();
                    set_times(work, &tmp, st)?;
                }
                libc::S_IFDIR => {
                    mkdirat(work, tmp.as_os_str(), Mode::from_bits_truncate(0o700))?;
                    let fd = nix::fcntl::openat(
                        work,
                        tmp.as_os_str(),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )?;
                    let dir = File::from(fd);
                    self.set_meta_fd(&dir, st, perm)?;
                    copy_xattrs(&proc_path(srcdir.as_fd(), name), &proc_path(work, &tmp));
                    let _ = dir.set_xattr(self.inos.origin_xattr, &InoMap::encode(origin));
                    set_times(work, &tmp, st)?;
                }
                libc::S_IFLNK => {
                    let target = readlinkat(srcdir.as_fd(), name)?;
                    symlinkat(target.as_os_str(), work, tmp.as_os_str())?;
                    self.finish_special(work, &tmp, st, srcdir.as_fd(), name, origin)?;
                }
                kind => {
                    let sflag = SFlag::from_bits_truncate(kind);
                    mknodat(work, tmp.as_os_str(), sflag, perm, st.st_rdev)?;
                    // chown (in finish_special) clears setuid/setgid: the mode goes after it.
                    self.finish_special(work, &tmp, st, srcdir.as_fd(), name, origin)?;
                    nix::sys::stat::fchmodat(
                        work,
                        tmp.as_os_str(),
                        perm,
                        nix::sys::stat::FchmodatFlags::FollowSymlink,
                    )?;
                }
            }
            Ok(())
        })();
        if let Err(err) = res {
            let _ = self.remove_work(&tmp, st.st_mode & libc::S_IFMT == libc::S_IFDIR);
            return Err(err);
        }
        Ok(made)
    }

    /// Owner and mode of a copy just made in the work dir (owned by `work_owner`: no chown
    /// when that is already the lower file's owner, root's common case).
    fn set_meta_fd(&self, f: &File, st: &FileStat, perm: Mode) -> R<()> {
        if self.work_owner() != Some((st.st_uid, st.st_gid)) {
            tolerate_eperm(nix::unistd::fchown(
                f,
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
            ))?;
        }
        fchmod(f, perm)?;
        Ok(())
    }

    fn finish_special(
        &self,
        work: BorrowedFd<'_>,
        tmp: &OsStr,
        st: &FileStat,
        srcdir: BorrowedFd<'_>,
        name: &OsStr,
        origin: u64,
    ) -> R<()> {
        tolerate_eperm(fchownat(
            work,
            tmp,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ))?;
        copy_xattrs(&proc_path(srcdir, name), &proc_path(work, tmp));
        let _ = xattr::set(proc_path(work, tmp), self.inos.origin_xattr, &InoMap::encode(origin));
        set_times(work, tmp, st)
    }

    /// Links every other visible name of the hard-linked lower file `e` to its upper copy.
    fn link_aliases(&self, e: &Entry, origin: u64) -> R<()> {
        let map = self.hardlinks(e.layer)?;
        let Some(paths) = map.get(&e.stat.st_ino) else { return Ok(()) };
        for alias in paths {
            if alias == &e.path {
                continue;
            }
            let Ok(ae) = self.lookup_path(alias) else { continue };
            if ae.layer != e.layer || ae.stat.st_ino != e.stat.st_ino || self.in_upper(&ae) {
                continue;
            }
            let (Some(ap), Some(an)) = (alias.parent(), alias.file_name()) else { continue };
            let ape = self.lookup_path(ap)?;
            self.copy_up(&ape)?;
            let (src_dir, src_name) = self.parent_fd(e, 0)?;
            let dst_dir = self.stack.dir_fd(0, ap).map_err(errno)?;
            let pst = nix::sys::stat::fstat(dst_dir.as_fd())?;
            linkat(src_dir.as_fd(), src_name, dst_dir.as_fd(), an, AtFlags::empty())?;
            let _ = set_times(dst_dir.as_fd(), OsStr::new("."), &pst);
            self.changed_one(alias);
        }
        let _ = origin;
        Ok(())
    }

    /// st_ino → paths of every multiply-linked regular file of a lower layer. The layer is
    /// walked through directory fds, each opened beneath its parent's, so hard links deeper
    /// than PATH_MAX are found too; a directory's fd stays open only while subdirectories of it
    /// wait to be listed.
    fn hardlinks(&self, layer: usize) -> R<Arc<LinkMap>> {
        if let Some(m) = lock(&self.links).get(&layer) {
            return Ok(m.clone());
        }
        let mut map: LinkMap = HashMap::new();
        let root = self.stack.dir_fd(layer, Path::new("")).map_err(errno)?;
        // (the parent's fd, the directory's path in the layer): directories still to list.
        let mut todo: Vec<(Arc<SafeFd>, PathBuf)> = vec![(root, PathBuf::new())];
        while let Some((parent, rel)) = todo.pop() {
            let name = rel.file_name().unwrap_or(OsStr::new(""));
            // Unreadable or gone: skipped, as a plain walk would.
            let Ok((dfd, children)) = read_upper_dir(&parent, name) else { continue };
            drop(parent);
            let dfd = Arc::new(dfd);
            for (n, kind) in children {
                match kind {
                    Some(Type::Directory) => todo.push((dfd.clone(), rel.join(&n))),
                    // A regular file, or a type readdir did not tell: its stat decides.
                    Some(Type::File) | None => {
                        let Ok(Some(st)) = stat_at(dfd.as_fd(), &n) else { continue };
                        match st.st_mode & libc::S_IFMT {
                            libc::S_IFDIR => todo.push((dfd.clone(), rel.join(&n))),
                            libc::S_IFREG if st.st_nlink > 1 => {
                                map.entry(st.st_ino).or_default().push(rel.join(&n))
                            }
                            _ => {}
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        let m = Arc::new(map);
        lock(&self.links).insert(layer, m.clone());
        Ok(m)
    }

    /// Copies up `e` and, for a directory, everything visible below it; the upper directory
    /// then holds the whole merged subtree.
    pub(crate) fn copy_up_tree(&self, e: &Entry) -> R<Entry> {
        // An explicit work list, not recursion: a subtree of any depth.
        let mut todo = vec![e.clone()];
        while let Some(cur) = todo.pop() {
            let up = self.copy_up(&cur)?;
            // An upper directory merged with no lower one holds its whole subtree already.
            if up.is_dir() && up.is_merged() {
                let listing = self.stack.list(&up).map_err(errno)?;
                for child in listing.entries.iter() {
                    if let Some(ce) = self.child(&up, &child.name)? {
                        if !self.in_upper(&ce) || ce.is_dir() {
                            todo.push(ce);
                        }
                    }
                }
            }
        }
        self.lookup_path(&e.path)
    }
}

/// Without privileges a file can't be given away: the copy then keeps the daemon's owner
/// (rootless mounts), with a log line. As root EPERM is a real error.
pub(crate) fn tolerate_eperm(r: R<()>) -> R<()> {
    match r {
        Err(Errno::EPERM) if !crate::sys::userns::privileged() => {
            tracing::debug!("chown not permitted (rootless): owner not preserved");
            Ok(())
        }
        r => r,
    }
}

/// Copies file data, keeping holes. A file with as many blocks as its size needs has none
/// to look for (most files): copied in one go, with no SEEK_DATA/SEEK_HOLE and no truncate.
fn copy_data(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, st: &FileStat) -> R<()> {
    let end = st.st_size.max(0);
    if st.st_blocks.saturating_mul(512) >= end {
        if copy_range(src, dst, 0, end)? < end {
            // The source came up short (it can't change, but its size is what the stat said).
            nix::unistd::ftruncate(dst, end)?;
        }
        return Ok(());
    }
    let mut pos: i64 = 0;
    while pos < end {
        let data = match lseek(src, pos, Whence::SeekData) {
            Ok(d) => d,
            Err(Errno::ENXIO) => break,
            Err(_) => pos,
        };
        let hole = lseek(src, data, Whence::SeekHole).unwrap_or(end).min(end);
        copy_range(src, dst, data, hole)?;
        pos = hole.max(data + 1);
    }
    nix::unistd::ftruncate(dst, end)?;
    Ok(())
}

/// Copies bytes `from..to` of `src` to the same offsets of `dst` (copy_file_range, or read and
/// write where the filesystems can't); returns where the copy ended (short if `src` did).
fn copy_range(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, from: i64, to: i64) -> R<i64> {
    let (mut off_in, mut off_out) = (from, from);
    while off_in < to {
        let want = (to - off_in) as usize;
        match crate::sys::fsio::copy_file_range(src, &mut off_in, dst, &mut off_out, want) {
            Ok(0) => break,
            Ok(_) => {}
            Err(Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                copy_plain(src, dst, &mut off_in, to)?;
                off_out = off_in;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(off_out)
}

fn copy_plain(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, off: &mut i64, end: i64) -> R<()> {
    let mut buf = vec![0u8; 1 << 20];
    while *off < end {
        let want = ((end - *off) as usize).min(buf.len());
        let n = nix::sys::uio::pread(src, &mut buf[..want], *off)?;
        if n == 0 {
            break;
        }
        let mut done = 0;
        while done < n {
            done += nix::sys::uio::pwrite(dst, &buf[done..n], *off + done as i64)?;
        }
        *off += n as i64;
    }
    Ok(())
}

/// The xattr the kernel asks for before every write(2), to drop it (`StrataFs::no_caps`).
pub(crate) const CAPS: &str = "security.capability";

/// A copy built in the work dir: its name there, and what it is known to carry.
pub(crate) struct WorkCopy {
    name: OsString,
    /// The origin xattr was written.
    origin_set: bool,
    /// Every xattr of the lower file was listed, and `security.capability` was not among them.
    no_caps: bool,
}

/// Copies the xattrs of the open file `src` to `dst`, as [`copy_xattrs`]; the names the source
/// has (`None` when they could not be listed).
fn copy_file_xattrs(src: &File, dst: &File) -> Option<Vec<OsString>> {
    let names: Vec<OsString> = src.list_xattr().ok()?.collect();
    for n in &names {
        if is_private_xattr(n) {
            continue;
        }
        if let Ok(Some(v)) = src.get_xattr(n) {
            if let Err(e) = dst.set_xattr(n, &v) {
                tracing::warn!(name = ?n, "copy-up: xattr not copied: {e}");
            }
        }
    }
    Some(names)
}

/// Copies the xattrs of one file to another (paths under /proc/self/fd, never followed at the
/// end). Names strata keeps private are skipped; failures are logged, not fatal.
fn copy_xattrs(src: &Path, dst: &Path) {
    let Ok(names) = xattr::list(src) else { return };
    for n in names {
        if is_private_xattr(&n) {
            continue;
        }
        if let Ok(Some(v)) = xattr::get(src, &n) {
            if let Err(e) = xattr::set(dst, &n, &v) {
                tracing::warn!(name = ?n, "copy-up: xattr not copied: {e}");
            }
        }
    }
}

fn set_times(dir: BorrowedFd<'_>, name: &OsStr, st: &FileStat) -> R<()> {
    let a = TimeSpec::new(st.st_atime, st.st_atime_nsec);
    let m = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    utimensat(dir, name, &a, &m, UtimensatFlags::NoFollowSymlink)
}

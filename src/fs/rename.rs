//! rename(2) with RENAME_NOREPLACE and RENAME_EXCHANGE, for files and directories from any
//! layer: the source (a whole subtree for a directory) is copied up, then renamed in the
//! upper, never EXDEV. A directory moved onto a name where a lower directory lies becomes
//! opaque; whiteouts it carried for its old place are dropped.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::path::Path;

use std::sync::Arc;

use nix::dir::Type;
use nix::errno::Errno;
use nix::fcntl::{RenameFlags, renameat2};
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::filesystem::{R, StrataFs, errno, lock};
use super::upper::read_upper_dir;
use crate::layer::whiteout::{OPAQUE_MARKER, is_overlay_whiteout_stat, is_reserved};
use crate::union::layer::{SafeFd, stat_at};

impl StrataFs {
    /// rename(2) / renameat2(2).
    pub(crate) fn do_rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> R<()> {
        let _ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
        if self.read_only {
            return Err(Errno::EROFS);
        }
        Self::check_name(newname)?;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        if flags & !(libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE) != 0 || (exchange && noreplace) {
            return Err(Errno::EINVAL);
        }
        let pe = self.entry(parent)?;
        let npe = self.entry(newparent)?;
        let src = self.child(&pe, name)?.ok_or(Errno::ENOENT)?;
        let dst = self.child(&npe, newname)?;
        let dst_path = npe.path.join(newname);
        if src.path == dst_path {
            return Ok(());
        }
        if crate::union::stack::is_within(&dst_path, &src.path) {
            return Err(Errno::EINVAL);
        }
        match (&dst, exchange, noreplace) {
            (Some(_), _, true) => return Err(Errno::EEXIST),
            (None, true, _) => return Err(Errno::ENOENT),
            (Some(d), false, _) => {
                match (src.is_dir(), d.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    _ => {}
                }
                if d.is_dir() && !self.stack.list(d).map_err(errno)?.entries.is_empty() {
                    return Err(Errno::ENOTEMPTY);
                }
                if !d.is_dir() && self.st_ino(d) == self.st_ino(&src) {
                    return Ok(()); // two names of one file: nothing to do
                }
            }
            _ => {}
        }
        let src_ino = self.st_ino(&src);
        let dst_ino = dst.as_ref().map(|d| self.st_ino(d));
        self.copy_up_tree(&src)?;
        if exchange && dst.is_some() {
            // Copying `src` up may have copied `dst` up already (a hard-linked lower file with
            // names in both): copy up what the name shows now, not the entry seen before.
            let d = self.child(&self.lookup_path(&npe.path)?, newname)?.ok_or(Errno::ENOENT)?;
            self.copy_up_tree(&d)?;
        }
        let (pe, pfd) = self.writable_dir(&self.lookup_path(&pe.path)?)?;
        let (npe, npfd) = self.writable_dir(&self.lookup_path(&npe.path)?)?;
        if exchange {
            renameat2(pfd.as_fd(), name, npfd.as_fd(), newname, RenameFlags::RENAME_EXCHANGE)?;
            self.moved(src.is_dir(), &src.path);
            self.moved(dst.as_ref().is_some_and(|d| d.is_dir()), &dst_path);
            lock(&self.nodes).exchange(&src.path, &dst_path);
            self.fix_moved(&src.path)?;
            self.fix_moved(&dst_path)?;
            return Ok(());
        }
        // Crash order: every step leaves a tree where no deleted lower name shows again.
        // 1. A directory moving onto a lower directory is made opaque first (it holds its whole
        //    subtree already, so this changes nothing where it is).
        if src.is_dir() && self.lower_entry(&npe, newname)?.is_some_and(|l| l.is_dir()) {
            self.make_opaque(&src.path)?;
        }
        // 2. The whiteout for the old name, before the entry leaves it (a whiteout hides
        //    nothing in its own layer, and stops a directory beside it merging).
        let old_whiteout = self.lower_entry(&pe, name)?.is_some();
        let rename_whiteout = old_whiteout && self.whiteout_takes_the_name(name);
        if old_whiteout && !rename_whiteout {
            self.write_whiteout(&pe.path, name)?;
        }
        // 3. An upper directory being replaced: whited out, then moved to the work dir and
        //    removed there (its own whiteouts keep hiding the lower names until it is gone).
        if let Some(d) = &dst {
            if d.is_dir() {
                if let Ok(d_up) = self.lookup_path(&d.path) {
                    if self.in_upper(&d_up) {
                        if !self.whiteout_takes_the_name(newname) {
                            self.write_whiteout(&npe.path, newname)?;
                        }
                        self.discard_upper_dir(&npfd, newname)?;
                    }
                }
            }
        }
        // A deleted lower name's whiteout may sit at the new name itself (the char 0/0 form of
        // a long name): a directory swaps places with it (a file replaces it in the rename).
        let moved = dst.is_none()
            && src.is_dir()
            && self.move_onto_overlay_whiteout(&pfd, name, &npfd, newname, rename_whiteout)?;
        // 4. The move itself; a long old name gets its 0/0 whiteout in the same step.
        let flags = if rename_whiteout { RenameFlags::RENAME_WHITEOUT } else { RenameFlags::empty() };
        match if moved { Ok(()) } else { renameat2(pfd.as_fd(), name, npfd.as_fd(), newname, flags) } {
            Err(Errno::EPERM | Errno::EINVAL) if rename_whiteout => {
                // No RENAME_WHITEOUT (rootless): the device after the move.
                renameat2(pfd.as_fd(), name, npfd.as_fd(), newname, RenameFlags::empty())?;
                self.write_whiteout(&pe.path, name)?;
            }
            r => r?,
        }
        self.moved(src.is_dir(), &src.path);
        self.moved(src.is_dir(), &dst_path);
        // 5. The new name's whiteout goes last.
        self.remove_whiteout(&npe.path, newname)?;
        {
            let mut nodes = lock(&self.nodes);
            if let (Some(d), Some(di)) = (&dst, dst_ino) {
                if d.is_dir() {
                    nodes.remove_tree(&d.path);
                } else {
                    nodes.remove_path(di, &d.path);
                }
            }
            nodes.rename(&src.path, &dst_path);
        }
        let _ = src_ino;
        self.moved(src.is_dir(), &dst_path);
        self.fix_moved(&dst_path)
    }

    /// Forgets what is cached about a name a rename changed: the whole subtree of a directory,
    /// only the entry itself (and its parent's listing) for anything else, so renaming a file
    /// costs the same however much is cached.
    fn moved(&self, dir: bool, path: &Path) {
        if dir {
            self.changed(path);
        } else {
            self.changed_one(path);
        }
    }

    /// A directory now at `path` in the upper holds its whole subtree: drop the whiteouts it
    /// carried and make it opaque iff a lower directory lies at its new place.
    fn fix_moved(&self, path: &Path) -> R<()> {
        let e = self.lookup_path(path)?;
        if !e.is_dir() {
            return Ok(());
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return Ok(()) };
        let pfd = self.stack.dir_fd(0, parent).map_err(errno)?;
        let pe = self.lookup_path(parent)?;
        // Opaque first, then the clean-up: never a moment where it merges with what it hides.
        let opaque = self.lower_entry(&pe, name)?.is_some_and(|l| l.is_dir());
        if opaque {
            self.make_opaque(path)?;
        }
        scrub(&pfd, name, true, opaque)?;
        self.changed(path);
        Ok(())
    }

    /// Moves the upper directory `name` of `dirfd` (empty in the merged view) into the work
    /// dir and removes it there.
    fn discard_upper_dir(&self, dirfd: &SafeFd, name: &OsStr) -> R<()> {
        let work = self.work.as_ref().ok_or(Errno::EROFS)?;
        let tmp = self.temp_name();
        renameat2(dirfd.as_fd(), name, work.as_fd(), tmp.as_os_str(), RenameFlags::RENAME_NOREPLACE)?;
        let wfd =
            SafeFd::root(Path::new(&format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(work))))
                .map_err(errno)?;
        super::remove::clear_dir(&wfd, &tmp)?;
        unlinkat(work.as_fd(), tmp.as_os_str(), UnlinkatFlags::RemoveDir)
    }
}

/// Removes whiteouts and opaque markers in the upper directory `parent/name`; in the whole
/// subtree when `deep` (an explicit work list of directory fds, not recursion: any depth).
/// `keep_opaque`: the top directory keeps its opaque marker.
fn scrub(parent: &SafeFd, name: &OsStr, deep: bool, keep_opaque: bool) -> R<()> {
    let mut todo = scrub_one(parent, name, deep, keep_opaque)?;
    while let Some((dfd, n)) = todo.pop() {
        todo.extend(scrub_one(&dfd, &n, true, false)?);
    }
    Ok(())
}

/// Scrubs one directory; returns its subdirectories (with its fd) still to scrub.
fn scrub_one(
    parent: &SafeFd,
    name: &OsStr,
    deep: bool,
    keep_opaque: bool,
) -> R<Vec<(Arc<SafeFd>, OsString)>> {
    let (dfd, entries) = read_upper_dir(parent, name)?;
    let mut remove = Vec::new();
    let mut dirs = Vec::new();
    for (n, kind) in entries {
        let n = n.as_os_str();
        if is_reserved(n) {
            if !(keep_opaque && n == OPAQUE_MARKER) {
                remove.push(n.to_os_string());
            }
            continue;
        }
        match kind {
            Some(Type::Directory) if deep => dirs.push(n.to_os_string()),
            Some(Type::CharacterDevice) | None => {
                if let Some(st) = stat_at(dfd.as_fd(), n).map_err(errno)? {
                    if is_overlay_whiteout_stat(&st) {
                        remove.push(n.to_os_string());
                    } else if deep && st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                        dirs.push(n.to_os_string());
                    }
                }
            }
            _ => {}
        }
    }
    for n in remove {
        match unlinkat(dfd.as_fd(), n.as_os_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    let dfd = Arc::new(dfd);
    Ok(dirs.into_iter().map(|n| (dfd.clone(), n)).collect())
}

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
use crate::layer::whiteout::{is_overlay_whiteout_stat, is_reserved};
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
        if exchange {
            if let Some(d) = &dst {
                self.copy_up_tree(d)?;
            }
        }
        let (pe, pfd) = self.writable_dir(&self.lookup_path(&pe.path)?)?;
        let (npe, npfd) = self.writable_dir(&self.lookup_path(&npe.path)?)?;
        if exchange {
            renameat2(pfd.as_fd(), name, npfd.as_fd(), newname, RenameFlags::RENAME_EXCHANGE)?;
            self.changed(&src.path);
            self.changed(&dst_path);
            lock(&self.nodes).exchange(&src.path, &dst_path);
            self.fix_moved(&src.path)?;
            self.fix_moved(&dst_path)?;
            return Ok(());
        }
        if let Some(d) = &dst {
            if d.is_dir() {
                if let Ok(d_up) = self.lookup_path(&d.path) {
                    if self.in_upper(&d_up) {
                        scrub(&npfd, newname, false)?;
                    }
                }
            }
        }
        renameat2(pfd.as_fd(), name, npfd.as_fd(), newname, RenameFlags::empty())?;
        self.changed(&src.path);
        self.changed(&dst_path);
        if self.lower_entry(&pe, name)?.is_some() {
            self.write_whiteout(&pe.path, name)?;
        }
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
        self.changed(&dst_path);
        self.fix_moved(&dst_path)
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
        scrub(&pfd, name, true)?;
        self.changed(path);
        let pe = self.lookup_path(parent)?;
        if let Some(lower) = self.lower_entry(&pe, name)? {
            if lower.is_dir() {
                self.make_opaque(path)?;
                self.changed(path);
            }
        }
        Ok(())
    }
}

/// Removes whiteouts and opaque markers in the upper directory `parent/name`; in the whole
/// subtree when `deep` (an explicit work list of directory fds, not recursion: any depth).
fn scrub(parent: &SafeFd, name: &OsStr, deep: bool) -> R<()> {
    let mut todo = scrub_one(parent, name, deep)?;
    while let Some((dfd, n)) = todo.pop() {
        todo.extend(scrub_one(&dfd, &n, true)?);
    }
    Ok(())
}

/// Scrubs one directory; returns its subdirectories (with its fd) still to scrub.
fn scrub_one(parent: &SafeFd, name: &OsStr, deep: bool) -> R<Vec<(Arc<SafeFd>, OsString)>> {
    let (dfd, entries) = read_upper_dir(parent, name)?;
    let mut remove = Vec::new();
    let mut dirs = Vec::new();
    for (n, kind) in entries {
        let n = n.as_os_str();
        if is_reserved(n) {
            remove.push(n.to_os_string());
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

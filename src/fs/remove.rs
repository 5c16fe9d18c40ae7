//! unlink and rmdir: remove from the upper, whiteout what the lower layers still show.

use std::ffi::OsStr;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::filesystem::{R, StrataFs, errno, lock};
use super::upper::read_upper_dir;
use crate::union::layer::SafeFd;

impl StrataFs {
    /// unlink(2).
    pub(crate) fn do_unlink(&self, parent: u64, name: &OsStr) -> R<()> {
        self.remove(parent, name, false)
    }

    /// rmdir(2): ENOTEMPTY is judged on the merged view.
    pub(crate) fn do_rmdir(&self, parent: u64, name: &OsStr) -> R<()> {
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: u64, name: &OsStr, dir: bool) -> R<()> {
        let _ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
        if self.read_only {
            return Err(Errno::EROFS);
        }
        let pe = self.entry(parent)?;
        let e = self.child(&pe, name)?.ok_or(Errno::ENOENT)?;
        match (dir, e.is_dir()) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            _ => {}
        }
        if dir && !self.stack.list(&e).map_err(errno)?.entries.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        let ino = self.st_ino(&e);
        let in_upper = self.in_upper(&e);
        let (pe, fd) = self.writable_dir(&pe)?;
        // A lower entry needs a whiteout; an upper one only if it hid a lower one.
        let whiteout = !in_upper || self.lower_entry(&pe, name)?.is_some();
        // Crash order: the whiteout is written before the upper entry goes (it hides nothing in
        // its own layer, and an upper directory with a whiteout beside it is no longer merged
        // with the lower one), so a crash in between never brings a deleted lower name back.
        if whiteout && !(in_upper && self.whiteout_takes_the_name(name)) {
            self.write_whiteout(&pe.path, name)?;
        }
        if in_upper {
            if whiteout && self.whiteout_takes_the_name(name) {
                // The whiteout is a 0/0 device at the name itself: swapped in atomically.
                self.swap_in_whiteout(&fd, name, dir)?;
            } else if dir {
                clear_dir(&fd, name)?;
                unlinkat(fd.as_fd(), name, UnlinkatFlags::RemoveDir)?;
            } else {
                unlinkat(fd.as_fd(), name, UnlinkatFlags::NoRemoveDir)?;
            }
        }
        if dir {
            self.changed_empty_dir(&e.path);
        } else {
            self.changed_one(&e.path);
        }
        let mut nodes = lock(&self.nodes);
        // An empty directory: its children's names went with them.
        nodes.remove_path(ino, &e.path);
        Ok(())
    }
}

/// Empties an upper directory whose merged view is empty: it holds only whiteouts, the opaque
/// marker, or overlay whiteouts.
pub(crate) fn clear_dir(parent: &SafeFd, name: &OsStr) -> R<()> {
    let (dfd, entries) = read_upper_dir(parent, name)?;
    for (n, _) in entries {
        match unlinkat(dfd.as_fd(), n.as_os_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(Errno::EISDIR) => return Err(Errno::ENOTEMPTY),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

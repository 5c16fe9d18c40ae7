//! Extended attributes through the mount; strata's private names never show, nor do the override
//! xattrs (`layer::override_stat`): what they record shows as the file's owner, mode and type.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;

use super::copyup::CAPS;
use super::filesystem::{R, StrataFs, errno};
use super::ino::is_private_xattr;
use crate::layer::override_stat::is_override_xattr;
use crate::union::Entry;
use crate::union::layer::SafeFd;
use crate::union::layer::proc_path;

/// Names that never show through the mount and can't be set through it.
fn hidden(name: &OsStr) -> bool {
    is_private_xattr(name) || is_override_xattr(name)
}

impl StrataFs {
    /// Path for the xattr calls on `e` in `layer`, and whether to follow it (only for the root,
    /// which is the fd itself).
    fn xattr_path(&self, e: &Entry, layer: usize) -> R<(PathBuf, bool, std::sync::Arc<SafeFd>)> {
        let (fd, name) = self.parent_fd(e, layer)?;
        let root = e.path.as_os_str().is_empty();
        Ok((proc_path(fd.as_fd(), if root { OsStr::new("") } else { name }), root, fd))
    }

    /// getxattr(2).
    pub(crate) fn do_getxattr(&self, ino: u64, name: &OsStr) -> R<Vec<u8>> {
        if hidden(name) {
            return Err(Errno::ENODATA);
        }
        let e = match self.entry(ino) {
            Ok(e) => e,
            Err(Errno::ESTALE) => return self.unlinked_getxattr(ino, name),
            Err(err) => return Err(err),
        };
        // The kernel asks for the capability before every write(2) (to drop it): a file known
        // to have none (made or copied up here, or asked before) is answered from memory, its
        // ctime unchanged since (`entry` gives an upper file's current stat).
        let caps = name == CAPS;
        if caps && self.no_caps.get(e.layer, &e.stat) == Some(None) {
            return Err(Errno::ENODATA);
        }
        let (p, deref, _fd) = self.xattr_path(&e, e.layer)?;
        let v = if deref { xattr::get_deref(&p, name) } else { xattr::get(&p, name) };
        let v = v.map_err(errno)?;
        if caps && v.is_none() {
            self.no_caps.note(e.layer, &e.stat, None);
        }
        v.ok_or(Errno::ENODATA)
    }

    /// listxattr(2): NUL-terminated names.
    pub(crate) fn do_listxattr(&self, ino: u64) -> R<Vec<u8>> {
        let e = match self.entry(ino) {
            Ok(e) => e,
            Err(Errno::ESTALE) => return self.unlinked_listxattr(ino),
            Err(err) => return Err(err),
        };
        let (p, deref, _fd) = self.xattr_path(&e, e.layer)?;
        let names = if deref { xattr::list_deref(&p) } else { xattr::list(&p) }.map_err(errno)?;
        let mut out = Vec::new();
        for n in names {
            if !hidden(&n) {
                out.extend_from_slice(n.as_bytes());
                out.push(0);
            }
        }
        Ok(out)
    }

    /// setxattr(2) with XATTR_CREATE / XATTR_REPLACE.
    pub(crate) fn do_setxattr(&self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> R<()> {
        if hidden(name) {
            return Err(Errno::EPERM);
        }
        self.prepare_copy_up(ino)?;
        let _ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
        if self.read_only {
            return Err(Errno::EROFS);
        }
        let e = match self.entry(ino) {
            Ok(e) => self.copy_up(&e)?,
            Err(Errno::ESTALE) => return self.unlinked_setxattr(ino, name, value, flags),
            Err(err) => return Err(err),
        };
        let (p, deref, _fd) = self.xattr_path(&e, 0)?;
        let cur = if deref { xattr::get_deref(&p, name) } else { xattr::get(&p, name) }.map_err(errno)?;
        if flags & libc::XATTR_CREATE != 0 && cur.is_some() {
            return Err(Errno::EEXIST);
        }
        if flags & libc::XATTR_REPLACE != 0 && cur.is_none() {
            return Err(Errno::ENODATA);
        }
        if deref { xattr::set_deref(&p, name, value) } else { xattr::set(&p, name, value) }.map_err(errno)
    }

    /// removexattr(2).
    pub(crate) fn do_removexattr(&self, ino: u64, name: &OsStr) -> R<()> {
        if hidden(name) {
            return Err(Errno::ENODATA);
        }
        let _ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
        if self.read_only {
            return Err(Errno::EROFS);
        }
        let e = match self.entry(ino) {
            Ok(e) => self.copy_up(&e)?,
            Err(Errno::ESTALE) => return self.unlinked_removexattr(ino, name),
            Err(err) => return Err(err),
        };
        let (p, deref, _fd) = self.xattr_path(&e, 0)?;
        if deref { xattr::remove_deref(&p, name) } else { xattr::remove(&p, name) }.map_err(errno)
    }
}

//! Open-but-unlinked files: a node whose every name is gone is still reachable through an
//! open file of it (the request's file handle, or any handle of the node), so `fstat`,
//! `ftruncate`, `fchmod`, `fchown`, `futimens` and the xattr calls on such a descriptor work, and
//! `st_nlink` shows 0 as on any filesystem.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use fuser::FileAttr;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, fchmod, fstat, futimens};
use nix::unistd::{Gid, Uid, fchown};
use xattr::FileExt;

use super::attr::to_attr;
use super::filesystem::{R, StrataFs, errno};
use super::handles::FileHandle;
use super::ino::is_private_xattr;
use super::io::{SetAttr, timespec};

impl StrataFs {
    /// An open file of node `ino` (the request's handle first); ESTALE when there is none.
    pub(crate) fn open_file_of(&self, ino: u64, fh: Option<u64>) -> R<Arc<FileHandle>> {
        fh.and_then(|f| self.handles.file(f))
            .filter(|h| h.ino == ino)
            .or_else(|| self.handles.file_of(ino))
            .ok_or(Errno::ESTALE)
    }

    /// The attributes of a nameless node, from an open file of it.
    pub(crate) fn unlinked_attr(&self, ino: u64, fh: Option<u64>) -> R<(FileAttr, Duration)> {
        let h = self.open_file_of(ino, fh)?;
        let st = fstat(h.file.as_fd())?;
        Ok((to_attr(&st, ino, false), Duration::ZERO))
    }

    /// setattr on a nameless node, through an open file of it (upper files only: a lower one
    /// can't change, and has no name left to copy up).
    pub(crate) fn unlinked_setattr(&self, ino: u64, a: &SetAttr) -> R<(FileAttr, Duration)> {
        let h = self.open_file_of(ino, a.fh)?;
        if !h.is_upper() {
            return Err(Errno::EROFS);
        }
        let f = &h.file;
        if a.uid.is_some() || a.gid.is_some() {
            fchown(f.as_fd(), a.uid.map(Uid::from_raw), a.gid.map(Gid::from_raw))?;
        }
        if let Some(m) = a.mode {
            fchmod(f.as_fd(), Mode::from_bits_truncate(m & 0o7777))?;
        }
        if let Some(size) = a.size {
            if f.set_len(size).is_err() {
                // A read-only handle: a writable descriptor of the same (nameless) file.
                writable(f)?.set_len(size).map_err(errno)?;
            }
        }
        if a.atime.is_some() || a.mtime.is_some() {
            futimens(f.as_fd(), &timespec(a.atime), &timespec(a.mtime))?;
        }
        self.unlinked_attr(ino, a.fh)
    }

    /// getxattr / listxattr / setxattr / removexattr on a nameless node.
    pub(crate) fn unlinked_getxattr(&self, ino: u64, name: &std::ffi::OsStr) -> R<Vec<u8>> {
        let h = self.open_file_of(ino, None)?;
        h.file.get_xattr(name).map_err(errno)?.ok_or(Errno::ENODATA)
    }

    pub(crate) fn unlinked_listxattr(&self, ino: u64) -> R<Vec<u8>> {
        let h = self.open_file_of(ino, None)?;
        let mut out = Vec::new();
        for n in h.file.list_xattr().map_err(errno)? {
            if !is_private_xattr(&n) && !crate::layer::override_stat::is_override_xattr(&n) {
                out.extend_from_slice(n.as_bytes());
                out.push(0);
            }
        }
        Ok(out)
    }

    pub(crate) fn unlinked_setxattr(
        &self,
        ino: u64,
        name: &std::ffi::OsStr,
        value: &[u8],
        flags: i32,
    ) -> R<()> {
        let h = self.open_file_of(ino, None)?;
        if !h.is_upper() {
            return Err(Errno::EROFS);
        }
        let cur = h.file.get_xattr(name).map_err(errno)?;
        if flags & libc::XATTR_CREATE != 0 && cur.is_some() {
            return Err(Errno::EEXIST);
        }
        if flags & libc::XATTR_REPLACE != 0 && cur.is_none() {
            return Err(Errno::ENODATA);
        }
        h.file.set_xattr(name, value).map_err(errno)
    }

    pub(crate) fn unlinked_removexattr(&self, ino: u64, name: &std::ffi::OsStr) -> R<()> {
        let h = self.open_file_of(ino, None)?;
        if !h.is_upper() {
            return Err(Errno::EROFS);
        }
        h.file.remove_xattr(name).map_err(errno)
    }
}

/// A writable descriptor of the file open as `f` (which may have no name left): reopened
/// through its /proc/self/fd link.
fn writable(f: &File) -> R<File> {
    let p = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(f));
    Ok(File::from(nix::fcntl::open(p.as_str(), OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?))
}

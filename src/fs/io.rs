//! Opening files, data I/O, setattr, readlink, statfs.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{FileAttr, TimeOrNow};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::attr::to_attr;
use super::filesystem::{R, StrataFs, TTL, errno};
use crate::union::Entry;

/// What `open` found: the file, and where it lives.
pub(crate) struct Opened {
    pub file: File,
    pub entry: Entry,
    pub upper: bool,
    pub write: bool,
    /// Opened O_RDWR (usable as a backing file for readers and writers alike).
    pub rdwr: bool,
}

/// The attribute changes of a setattr request.
#[derive(Debug, Default)]
pub(crate) struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
    pub fh: Option<u64>,
}

pub(crate) fn timespec(t: Option<TimeOrNow>) -> TimeSpec {
    match t {
        None => TimeSpec::UTIME_OMIT,
        Some(TimeOrNow::Now) => TimeSpec::UTIME_NOW,
        Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => TimeSpec::new(d.as_secs() as i64, d.subsec_nanos() as i64),
            Err(e) => {
                let d = e.duration();
                TimeSpec::new(-(d.as_secs() as i64), 0)
            }
        },
    }
}

impl StrataFs {
    /// Opens node `ino`; a write open copies it up first.
    pub(crate) fn do_open(&self, ino: u64, flags: i32) -> R<Opened> {
        let acc = flags & libc::O_ACCMODE;
        let write = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        let e = if write {
            if flags & libc::O_TRUNC == 0 {
                self.prepare_copy_up(ino)?;
            }
            let _ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
            if self.read_only {
                return Err(Errno::EROFS);
            }
            let e = self.entry(ino)?;
            if flags & libc::O_TRUNC != 0 { self.copy_up_empty(&e)? } else { self.copy_up(&e)? }
        } else {
            let _ns = self.ns.read().unwrap_or_else(|e| e.into_inner());
            self.entry(ino)?
        };
        if e.is_dir() {
            return Err(Errno::EISDIR);
        }
        let keep = libc::O_ACCMODE
            | libc::O_APPEND
            | libc::O_TRUNC
            | libc::O_SYNC
            | libc::O_DSYNC
            | libc::O_NONBLOCK;
        let oflags = OFlag::from_bits_truncate(flags & keep) | OFlag::O_NOFOLLOW;
        let upper = self.in_upper(&e);
        // The file's passthrough backing serves every open of it until the last one closes: a
        // reader of an upper file opens it read-write, so a writer coming later can share it.
        let rdwr = (!write && upper && self.passthrough() && !self.read_only)
            .then(|| {
                self.stack.open_in(
                    e.layer,
                    &e.path,
                    (oflags - OFlag::O_ACCMODE) | OFlag::O_RDWR,
                    Mode::empty(),
                )
            })
            .and_then(Result::ok);
        // The name may have gone since it was resolved (no lock is held here): ESTALE makes the
        // kernel walk the path again rather than fail the open.
        let opened_rdwr = rdwr.is_some();
        let fd =
            match rdwr {
                Some(fd) => fd,
                None => self.stack.open_in(e.layer, &e.path, oflags, Mode::empty()).map_err(
                    |err| match errno(err) {
                        Errno::ENOENT => Errno::ESTALE,
                        other => other,
                    },
                )?,
            };
        Ok(Opened { file: File::from(fd), upper, entry: e, write, rdwr: opened_rdwr || acc == libc::O_RDWR })
    }

    /// A second fd on the opened file for the kernel's passthrough backing, when the opened
    /// one can't serve: read-write for upper files opened for writing (O_WRONLY can't read).
    pub(crate) fn backing_file(&self, o: &Opened) -> R<File> {
        let acc = if o.upper && o.write { OFlag::O_RDWR } else { OFlag::O_RDONLY };
        let fd = self
            .stack
            .open_in(o.entry.layer, &o.entry.path, acc | OFlag::O_NOFOLLOW, Mode::empty())
            .map_err(errno)?;
        Ok(File::from(fd))
    }

    /// Clears the suid bit of `ino`, and the sgid bit if it is group-executable, as the
    /// kernel does on a write, a truncate by a caller without CAP_FSETID, and a chown: the
    /// kernel leaves it to the daemon once `FUSE_HANDLE_KILLPRIV_V2` is on (see `init`).
    /// Returns the mode to set, if any bit was set (`fh`: for a node whose names are gone).
    pub(crate) fn killed_suidgid(&self, ino: u64, fh: Option<u64>) -> R<Option<u32>> {
        let (attr, _) = self.do_getattr(ino, fh)?;
        let mode = u32::from(attr.perm);
        let mut killed = mode & !libc::S_ISUID;
        if mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP {
            killed &= !libc::S_ISGID;
        }
        Ok((killed != mode).then_some(killed))
    }

    /// Whether a file of `mode` is opened for writing without passthrough: the kernel leaves
    /// clearing its suid, or its sgid when it is group-executable, to the daemon
    /// (`FUSE_HANDLE_KILLPRIV_V2`), which sees a write only when it reaches it.
    pub(crate) fn write_skips_passthrough(&self, mode: u32) -> bool {
        let killable = mode & libc::S_ISUID != 0
            || mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP;
        killable && self.passthrough() && self.killpriv.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// write(2) at an offset.
    pub(crate) fn do_write(&self, fh: u64, offset: u64, data: &[u8]) -> R<u32> {
        let h = self.handles.file(fh).ok_or(Errno::EBADF)?;
        if !h.is_upper() {
            return Err(Errno::EBADF);
        }
        h.file.write_all_at(data, offset).map_err(errno)?;
        Ok(data.len() as u32)
    }

    /// chmod, chown, truncate, utimens: on the upper copy.
    pub(crate) fn do_setattr(&self, ino: u64, a: &SetAttr) -> R<(FileAttr, std::time::Duration)> {
        if a.size != Some(0) {
            self.prepare_copy_up(ino)?;
        }
        let _ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
        if self.read_only {
            return Err(Errno::EROFS);
        }
        let e = match self.entry(ino) {
            Ok(e) => e,
            Err(Errno::ESTALE) => return self.unlinked_setattr(ino, a),
            Err(err) => return Err(err),
        };
        let up = if a.size == Some(0) { self.copy_up_empty(&e)? } else { self.copy_up(&e)? };
        let (dfd, name) = self.parent_fd(&up, 0)?;
        let is_link = up.stat.st_mode & libc::S_IFMT == libc::S_IFLNK;
        self.chown_chmod(dfd.as_fd(), name, is_link, a.uid, a.gid, a.mode)?;
        if let Some(size) = a.size {
            let h = a.fh.and_then(|fh| self.handles.file(fh)).filter(|h| h.is_upper());
            let res = match h {
                Some(h) => h.file.set_len(size),
                None => {
                    let fd = self
                        .stack
                        .open_in(0, &up.path, OFlag::O_WRONLY | OFlag::O_NOFOLLOW, Mode::empty())
                        .map_err(errno)?;
                    File::from(fd).set_len(size)
                }
            };
            // An O_RDONLY handle can't truncate; a fresh fd can.
            if let Err(err) = res {
                if err.raw_os_error() == Some(libc::EINVAL) || err.raw_os_error() == Some(libc::EBADF) {
                    let fd = self
                        .stack
                        .open_in(0, &up.path, OFlag::O_WRONLY | OFlag::O_NOFOLLOW, Mode::empty())
                        .map_err(errno)?;
                    File::from(fd).set_len(size).map_err(errno)?;
                } else {
                    return Err(errno(err));
                }
            }
        }
        if a.atime.is_some() || a.mtime.is_some() {
            utimensat(
                dfd.as_fd(),
                name,
                &timespec(a.atime),
                &timespec(a.mtime),
                UtimensatFlags::NoFollowSymlink,
            )?;
        }
        let e = self.lookup_path(&up.path)?;
        // The node id is the file's st_ino (see `do_getattr`): no origin xattr is read again
        // because the change moved the ctime (three SETATTRs per file dpkg installs).
        Ok((to_attr(&e.stat, ino, e.is_dir() && e.is_merged()), TTL))
    }

    /// getattr, by name or (for a node whose names are gone) through an open file of it.
    /// The node id is the st_ino the kernel was given for this object (see `ino.rs`), so it is
    /// answered as is: an upper entry's origin xattr is not read again whenever its ctime
    /// moved (a directory's moves with every name made in it: a parent's GETATTR follows each
    /// create).
    pub(crate) fn do_getattr(&self, ino: u64, fh: Option<u64>) -> R<(FileAttr, std::time::Duration)> {
        match self.entry_shared(ino) {
            Ok(e) => Ok((to_attr(&e.stat, ino, e.is_dir() && e.is_merged()), TTL)),
            Err(Errno::ESTALE) => self.unlinked_attr(ino, fh),
            Err(err) => Err(err),
        }
    }

    /// readlink(2).
    pub(crate) fn do_readlink(&self, ino: u64) -> R<Vec<u8>> {
        let e = self.entry(ino)?;
        let (fd, name) = self.parent_fd(&e, e.layer)?;
        let t = nix::fcntl::readlinkat(fd.as_fd(), name)?;
        Ok(std::os::unix::ffi::OsStringExt::into_vec(t))
    }

    /// statfs(2) of the top layer's filesystem.
    pub(crate) fn do_statfs(&self) -> R<nix::sys::statvfs::Statvfs> {
        let fd = self.stack.dir_fd(0, std::path::Path::new("")).map_err(errno)?;
        nix::sys::statvfs::fstatvfs(fd.as_fd())
    }

    /// fsync(2) / fdatasync(2).
    pub(crate) fn do_fsync(&self, fh: u64, datasync: bool) -> R<()> {
        let h = self.handles.file(fh).ok_or(Errno::EBADF)?;
        if datasync { h.file.sync_data() } else { h.file.sync_all() }.map_err(errno)
    }

    /// fsync(2) / fdatasync(2) of a directory: of its upper copy, which holds every change made
    /// in it through the mount (a directory of the lower layers alone, or one gone since, has
    /// nothing of this mount's to make durable).
    pub(crate) fn do_fsyncdir(&self, ino: u64, datasync: bool) -> R<()> {
        let e = match self.entry_shared(ino) {
            Ok(e) => e,
            Err(Errno::ESTALE) => return Ok(()),
            Err(err) => return Err(err),
        };
        if !self.in_upper(&e) {
            return Ok(());
        }
        let fd = self.stack.dir_fd(0, &e.path).map_err(errno)?;
        if datasync { nix::unistd::fdatasync(fd.as_fd()) } else { nix::unistd::fsync(fd.as_fd()) }
    }

    /// fallocate(2).
    pub(crate) fn do_fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> R<()> {
        let h = self.handles.file(fh).ok_or(Errno::EBADF)?;
        if !h.is_upper() {
            return Err(Errno::EBADF);
        }
        let flags = nix::fcntl::FallocateFlags::from_bits_truncate(mode);
        nix::fcntl::fallocate(h.file.as_fd(), flags, offset as i64, length as i64)?;
        Ok(())
    }

    /// lseek(2), for SEEK_DATA and SEEK_HOLE.
    pub(crate) fn do_lseek(&self, fh: u64, offset: i64, whence: i32) -> R<i64> {
        let h = self.handles.file(fh).ok_or(Errno::EBADF)?;
        let w = match whence {
            libc::SEEK_SET => nix::unistd::Whence::SeekSet,
            libc::SEEK_CUR => nix::unistd::Whence::SeekCur,
            libc::SEEK_END => nix::unistd::Whence::SeekEnd,
            libc::SEEK_DATA => nix::unistd::Whence::SeekData,
            libc::SEEK_HOLE => nix::unistd::Whence::SeekHole,
            _ => return Err(Errno::EINVAL),
        };
        // A private fd so concurrent seeks on one handle don't race.
        let f: Arc<File> = h.file.clone();
        let dup = f.try_clone().map_err(errno)?;
        nix::unistd::lseek(dup.as_fd(), offset, w)
    }
}

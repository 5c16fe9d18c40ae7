//! New names: create, mkdir, mknod, symlink, link.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmod, fchmodat, mkdirat, mknodat};
use nix::unistd::{linkat, symlinkat};

use super::filesystem::{R, StrataFs};
use super::upper::Caller;
use crate::layer::whiteout::is_whiteout_device;
use crate::union::Entry;
use crate::union::layer::SafeFd;

impl StrataFs {
    pub(crate) fn new_name(&self, parent: u64, name: &OsStr) -> R<(Entry, std::sync::Arc<SafeFd>)> {
        Self::check_name(name)?;
        if self.read_only {
            return Err(Errno::EROFS);
        }
        let pe = self.entry(parent)?;
        // In a directory of the upper alone (new or opaque) the name is taken only in the upper,
        // where the call that makes it fails with EEXIST itself (`make_new`): no stat first.
        if !self.upper_only(&pe) && self.child(&pe, name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        self.writable_dir(&pe)
    }

    /// Makes `name` in the upper directory `fd` with `make`, which fails with EEXIST when the
    /// name is taken (as O_EXCL, mkdirat, mknodat, symlinkat and linkat do). Past `new_name`,
    /// what takes it can only be an overlayfs whiteout (char device 0/0, hiding a lower name):
    /// it goes and `make` runs again. So the common case costs no stat of its own.
    pub(crate) fn make_new<T>(&self, fd: &SafeFd, name: &OsStr, make: impl Fn() -> nix::Result<T>) -> R<T> {
        match make() {
            Err(Errno::EEXIST) if self.clear_overlay_whiteout(fd, name)? => make(),
            r => r,
        }
    }

    /// create(2) with O_CREAT|O_EXCL semantics; returns the entry and the open upper file.
    pub(crate) fn do_create(
        &self,
        who: Caller,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> R<(Entry, File)> {
        let _ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
        let (pe, fd) = self.new_name(parent, name)?;
        let perm = Mode::from_bits_truncate(mode & !umask & 0o7777);
        let oflags = OFlag::from_bits_truncate(flags & (libc::O_ACCMODE | libc::O_APPEND))
            | OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_CLOEXEC
            | OFlag::O_NOFOLLOW;
        let file =
            File::from(self.make_new(&fd, name, || nix::fcntl::openat(fd.as_fd(), name, oflags, perm))?);
        // Owner first, then the mode: chown clears setuid/setgid, and the daemon's own umask
        // may have taken bits off the create mode. The file's stat tells whether either is due
        // (a daemon creating for its own ids, root's common case, makes the owner right).
        let made = (|| {
            let mut st = nix::sys::stat::fstat(&file)?;
            let (uid, gid) = super::upper::new_owner(&pe, who);
            if (st.st_uid, st.st_gid) != (uid, gid) {
                super::copyup::tolerate_eperm(nix::unistd::fchown(
                    &file,
                    Some(nix::unistd::Uid::from_raw(uid)),
                    Some(nix::unistd::Gid::from_raw(gid)),
                ))?;
                st = nix::sys::stat::fstat(&file)?;
            }
            if st.st_mode & 0o7777 == perm.bits() {
                return Ok(st);
            }
            fchmod(&file, perm)?;
            nix::sys::stat::fstat(&file)
        })();
        let st = match made {
            Ok(st) => st,
            Err(e) => {
                let _ = nix::unistd::unlinkat(fd.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
                return Err(e);
            }
        };
        let e = self.after_create(&pe, name, false, Some(st))?;
        // A file just made has no capability: its first write asks (see `no_caps`).
        self.no_caps.note(0, &e.stat, None);
        Ok((e, file))
    }

    /// mkdir(2).
    pub(crate) fn do_mkdir(&self, who: Caller, parent: u64, name: &OsStr, mode: u32, umask: u32) -> R<Entry> {
        let _ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
        let (pe, fd) = self.new_name(parent, name)?;
        // A directory inherits a setgid parent's setgid bit, as the kernel gives it.
        let inherit = if pe.stat.st_mode & libc::S_ISGID != 0 { libc::S_ISGID } else { 0 };
        let perm = Mode::from_bits_truncate((mode & !umask & 0o7777) | inherit);
        self.make_new(&fd, name, || mkdirat(fd.as_fd(), name, perm))?;
        self.set_owner(&fd, &pe, name, who)?;
        fchmodat(fd.as_fd(), name, perm, FchmodatFlags::FollowSymlink)?;
        self.after_create(&pe, name, true, None)
    }

    /// mknod(2): FIFOs, sockets, devices, regular files; never a char device 0/0.
    pub(crate) fn do_mknod(
        &self,
        who: Caller,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> R<Entry> {
        if is_whiteout_device(mode, rdev.into()) {
            // It would be a whiteout, not a file: refused as kernel overlayfs does (EPERM),
            // before anything is touched.
            return Err(Errno::EPERM);
        }
        let _ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
        let (pe, fd) = self.new_name(parent, name)?;
        let kind = SFlag::from_bits_truncate(mode & libc::S_IFMT);
        let perm = Mode::from_bits_truncate(mode & !umask & 0o7777);
        self.make_new(&fd, name, || mknodat(fd.as_fd(), name, kind, perm, rdev as libc::dev_t))?;
        self.set_owner(&fd, &pe, name, who)?;
        // `name` is the node just made (no symlink): following it follows nothing.
        fchmodat(fd.as_fd(), name, perm, FchmodatFlags::FollowSymlink)?;
        self.after_create(&pe, name, false, None)
    }

    /// symlink(2).
    pub(crate) fn do_symlink(&self, who: Caller, parent: u64, name: &OsStr, target: &Path) -> R<Entry> {
        let _ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
        let (pe, fd) = self.new_name(parent, name)?;
        self.make_new(&fd, name, || symlinkat(target, fd.as_fd(), name))?;
        self.set_owner(&fd, &pe, name, who)?;
        self.after_create(&pe, name, false, None)
    }

    /// link(2): the file is copied up (with its other names) and linked in the upper.
    pub(crate) fn do_link(&self, ino: u64, parent: u64, name: &OsStr) -> R<Entry> {
        self.prepare_copy_up(ino)?;
        let _ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
        let src = self.entry(ino)?;
        if src.is_dir() {
            return Err(Errno::EPERM);
        }
        let (pe, fd) = self.new_name(parent, name)?;
        let src = self.copy_up(&src)?;
        let (sfd, sname) = self.parent_fd(&src, 0)?;
        self.make_new(&fd, name, || linkat(sfd.as_fd(), sname, fd.as_fd(), name, AtFlags::empty()))?;
        // The other names' cached stats hold the old link count.
        self.changed_one(&src.path);
        self.after_create(&pe, name, false, None)
    }
}

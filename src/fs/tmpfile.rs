//! `O_TMPFILE`: an unnamed file in a directory, as kernel overlayfs makes it.
//!
//! The parent is copied up and the file is an `O_TMPFILE` of the parent's upper directory,
//! with the caller's owner and mode as every other create path gives them. Its node has no
//! name (st_nlink 0): getattr, setattr and xattrs go through an open file of it, as for any
//! open-but-unlinked file (`unlinked.rs`). `linkat` then names it: FUSE LINK of a nameless
//! node links the upper file from its descriptor (the upper filesystem's own rule decides
//! whether it may be linked), with the whiteout rules of any new name. A file never linked
//! leaves nothing in the upper once its last descriptor closes.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fuser::{BackingId, FileAttr, FopenFlags};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag};
use nix::sys::stat::{Mode, fchmod, fstat};
use nix::unistd::{Gid, Uid, fchown, linkat};

use super::attr::to_attr;
use super::copyup::tolerate_eperm;
use super::filesystem::{R, StrataFs, TTL, lock};
use super::handles::FileHandle;
use super::upper::{Caller, new_owner};

/// A new unnamed file: its open upper file, node id, generation and attributes.
pub(crate) struct TmpFile {
    pub file: File,
    pub ino: u64,
    pub generation: u64,
    pub attr: FileAttr,
}

impl StrataFs {
    /// open(dir, O_TMPFILE): an unnamed regular file in the upper directory of `parent`.
    pub(crate) fn do_tmpfile(&self, who: Caller, parent: u64, mode: u32, umask: u32) -> R<TmpFile> {
        // Copying the parent up changes the namespace.
        let _ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
        if self.read_only {
            return Err(Errno::EROFS);
        }
        let pe = self.entry(parent)?;
        let (pe, dirfd) = self.writable_dir(&pe)?;
        self.wrote.store(true, Ordering::Relaxed);
        let perm = Mode::from_bits_truncate(mode & !umask & 0o7777);
        // Always read-write: the daemon's descriptor serves reads, writes and passthrough
        // whatever the caller's access mode (the kernel enforces that one).
        let flags = OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC;
        let file = File::from(nix::fcntl::openat(dirfd.as_fd(), ".", flags, perm)?);
        // Owner first, then the mode: chown clears setuid/setgid, and the daemon's own umask
        // already took bits off the create mode (as in `do_create`).
        let (uid, gid) = new_owner(&pe, who);
        tolerate_eperm(fchown(file.as_fd(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))))?;
        fchmod(file.as_fd(), perm)?;
        let st = fstat(file.as_fd())?;
        let (ino, generation) = lock(&self.nodes).add_nameless(self.inos.map(st.st_dev, st.st_ino));
        Ok(TmpFile { file, ino, generation, attr: to_attr(&st, ino, false) })
    }

    /// Registers the open tmpfile, with a passthrough backing id when the kernel allows it.
    /// Returns (fh, open flags, backing).
    pub(crate) fn register_tmpfile(
        &self,
        t: TmpFile,
        open_backing: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> (u64, FopenFlags, Option<Arc<BackingId>>) {
        let mut backing = None;
        let mut flags = FopenFlags::empty();
        // As `register_open`: a file a write clears suid/sgid of is written through the daemon.
        if self.write_skips_passthrough(u32::from(t.attr.perm)) {
            flags |= FopenFlags::FOPEN_DIRECT_IO;
        } else if self.passthrough() {
            match open_backing(&t.file) {
                Ok(b) => {
                    let b = Arc::new(b);
                    self.handles.set_backing(t.ino, &b, true, true);
                    backing = Some(b);
                }
                Err(e) => self.backing_refused(&e),
            }
        }
        let fh = self.handles.add_file(FileHandle {
            file: Arc::new(t.file),
            ino: t.ino,
            lower_size: None,
            backing: backing.clone(),
        });
        (fh, flags, backing)
    }

    /// link(2) of a node with no name (an `O_TMPFILE` file): its upper file is linked from an
    /// open descriptor of it. Returns the attributes, TTL and generation of the entry; a node
    /// that meanwhile got a name is linked as usual.
    pub(crate) fn do_link_nameless(
        &self,
        ino: u64,
        parent: u64,
        name: &OsStr,
    ) -> R<(FileAttr, Duration, u64)> {
        let ns = self.ns.write().unwrap_or_else(|e| e.into_inner());
        if lock(&self.nodes).path(ino).is_some() {
            drop(ns);
            let e = self.do_link(ino, parent, name)?;
            let (attr, generation) = self.remember(&e);
            return Ok((attr, TTL, generation));
        }
        // A lower file has no upper object to link (and the kernel only links a nameless
        // file that was made as an O_TMPFILE).
        let h = self.open_file_of(ino, None).map_err(|_| Errno::ENOENT)?;
        if !h.is_upper() {
            return Err(Errno::ENOENT);
        }
        let (pe, dirfd) = self.new_name(parent, name)?;
        // Through /proc (AT_SYMLINK_FOLLOW), not AT_EMPTY_PATH: that one needs
        // CAP_DAC_READ_SEARCH, which a rootless daemon lacks. An unlinked file that was not
        // made with O_TMPFILE can't be linked again: the upper filesystem answers ENOENT.
        let proc = format!("/proc/self/fd/{}", h.file.as_raw_fd());
        self.make_new(&dirfd, name, || {
            linkat(AT_FDCWD, proc.as_str(), dirfd.as_fd(), name, AtFlags::AT_SYMLINK_FOLLOW)
        })?;
        let path = pe.path.join(name);
        let Some(generation) = lock(&self.nodes).name_nameless(ino, &path) else {
            // The kernel forgot the node meanwhile: undo.
            let _ = nix::unistd::unlinkat(dirfd.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
            return Err(Errno::ENOENT);
        };
        let e = self.after_create(&pe, name, false, None)?;
        Ok((to_attr(&e.stat, ino, false), TTL, generation))
    }
}

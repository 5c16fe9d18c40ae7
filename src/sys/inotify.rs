//! inotify(7) on one directory: an fd that becomes readable when a file in it is written and
//! closed, or renamed into it (how runtimes leave a pid file), so a waiter sleeps in poll(2)
//! instead of looking again every few milliseconds.
//!
//! Closing an inotify fd that still has (or just had) a watch blocks for an SRCU grace period
//! while the kernel reaps the watch (`fsnotify_destroy_group` → `fsnotify_wait_marks_destroyed`):
//! 5–15 ms measured here, which would land on `strata run`'s critical path. Left alone for about a
//! jiffy, the kernel reaps a removed watch in the background and the close costs microseconds. So
//! dropping a [`DirWatch`] removes its watch at once and leaves the close to a short-lived thread
//! a little later (or to the process's exit, if that comes first). Not kept open for good: a
//! monitor lives as long as its container, and inotify instances are limited per user.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

pub struct DirWatch {
    fd: Option<OwnedFd>,
    wd: i32,
}

/// How long after removing its watch an inotify fd is closed: the kernel has reaped the watch by
/// then (a jiffy and a grace period; measured: ≥ 4 ms suffices here).
const REAPED: Duration = Duration::from_millis(20);

impl DirWatch {
    /// Watches `dir` for files closed after writing (`IN_CLOSE_WRITE`) or moved in (`IN_MOVED_TO`).
    pub fn new(dir: &Path) -> io::Result<DirWatch> {
        let path = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: inotify_init1 takes flags only; a non-negative result is a new fd we own.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is the fd inotify_init1 just returned, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mask = libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO | libc::IN_ONLYDIR;
        // SAFETY: `raw` is a live inotify fd (owned by `fd`) and `path` a NUL-terminated string
        // that outlives the call.
        let wd = unsafe { libc::inotify_add_watch(raw, path.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DirWatch { fd: Some(fd), wd })
    }

    /// Reads the pending events away (their names don't matter: the waiter looks at the file), so
    /// the fd polls readable again only for new ones.
    pub fn drain(&self) {
        let Some(fd) = &self.fd else { return };
        let mut buf = [0u8; 4096];
        while nix::unistd::read(fd, &mut buf).is_ok_and(|n| n > 0) {}
    }
}

impl AsFd for DirWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_ref().expect("a DirWatch has its fd until dropped").as_fd()
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else { return };
        // SAFETY: `fd` is a live inotify fd and `wd` the watch it returned; no pointers.
        unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), self.wd) };
        // No thread to be had: the fd closes here (it waits, that's all).
        let _ = std::thread::Builder::new().name("inotify-close".into()).spawn(move || {
            std::thread::sleep(REAPED);
            drop(fd);
        });
    }
}

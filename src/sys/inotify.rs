//! inotify(7) on one directory: an fd that becomes readable when a file in it is written and
//! closed, or renamed into it (how runtimes leave a pid file), so a waiter sleeps in poll(2)
//! instead of looking again every few milliseconds.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub struct DirWatch(OwnedFd);

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
        // SAFETY: `fd` is a live inotify fd and `path` a NUL-terminated string that outlives the call.
        if unsafe { libc::inotify_add_watch(raw, path.as_ptr(), mask) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DirWatch(fd))
    }

    /// Reads the pending events away (their names don't matter: the waiter looks at the file), so
    /// the fd polls readable again only for new ones.
    pub fn drain(&self) {
        let mut buf = [0u8; 4096];
        while nix::unistd::read(&self.0, &mut buf).is_ok_and(|n| n > 0) {}
    }
}

impl AsFd for DirWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

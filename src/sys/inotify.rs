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

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

pub struct DirWatch {
    inotify: Option<Inotify>,
    wd: WatchDescriptor,
}

/// How long after removing its watch an inotify fd is closed: the kernel has reaped the watch by
/// then (a jiffy and a grace period; measured: ≥ 4 ms suffices here).
const REAPED: Duration = Duration::from_millis(20);

impl DirWatch {
    /// Watches `dir` for files closed after writing (`IN_CLOSE_WRITE`) or moved in (`IN_MOVED_TO`).
    pub fn new(dir: &Path) -> io::Result<DirWatch> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
        let mask = AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ONLYDIR;
        let wd = inotify.add_watch(dir, mask)?;
        Ok(DirWatch { inotify: Some(inotify), wd })
    }

    /// Reads the pending events away (their names don't matter: the waiter looks at the file), so
    /// the fd polls readable again only for new ones.
    pub fn drain(&self) {
        let Some(i) = &self.inotify else { return };
        while i.read_events().is_ok_and(|e| !e.is_empty()) {}
    }
}

impl AsFd for DirWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_ref().expect("a DirWatch has its fd until dropped").as_fd()
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        let Some(inotify) = self.inotify.take() else { return };
        let _ = inotify.rm_watch(self.wd);
        // No thread to be had: the fd closes here (it waits, that's all).
        let _ = std::thread::Builder::new().name("inotify-close".into()).spawn(move || {
            std::thread::sleep(REAPED);
            drop(inotify);
        });
    }
}

//! Waiting for a runtime to start a process (`run`, `exec`): it writes the process's pid file
//! once the process runs, or exits first when it can't start it. Both are events: the runtime
//! child's pidfd turns readable when it exits, an inotify watch on the pid file's directory when
//! a file there is written or renamed in (runc renames its pid file in, crun writes it in place);
//! one poll(2) sleeps on both, so the waiter takes no CPU from the runtime while it works.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::Duration;

use crate::sys::daemon::ProcessHandle;
use crate::sys::inotify::DirWatch;

/// How a wait for the process to start ended.
#[derive(Debug)]
pub enum Started {
    /// The runtime wrote the pid file: the process runs (or ran), with this pid.
    Running(i32),
    /// The runtime exited before writing it (it could not start the process): its status.
    Ended(ExitStatus),
}

/// A second look now and then, in case an event is never delivered (a pid file on a filesystem
/// inotify can't watch). Without pidfds or inotify at all, looking is all there is.
const SAFETY_NET: Duration = Duration::from_millis(100);
const WITHOUT_EVENTS: Duration = Duration::from_millis(2);

/// Waits until `child` (the runtime) has written `pid_file` or has exited.
pub fn wait(child: &mut Child, pid_file: &Path) -> io::Result<Started> {
    // Set up before the first look, so nothing written after it goes unnoticed.
    let watch = pid_file.parent().and_then(|d| DirWatch::new(d).ok());
    let exit = ProcessHandle::open(child.id() as i32).ok().flatten();
    let timeout = if watch.is_some() && exit.is_some() { SAFETY_NET } else { WITHOUT_EVENTS };
    let timeout = nix::poll::PollTimeout::try_from(timeout).unwrap_or(nix::poll::PollTimeout::NONE);
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Started::Ended(s));
        }
        if let Some(pid) = read_pid(pid_file) {
            return Ok(Started::Running(pid));
        }
        let mut fds: Vec<nix::poll::PollFd> =
            [watch.as_ref().map(AsFd::as_fd), exit.as_ref().map(AsFd::as_fd)]
                .into_iter()
                .flatten()
                .map(|fd| nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN))
                .collect();
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(w) = &watch {
            w.drain();
        }
    }
}

/// The pid in a runtime's pid file, once it is there and complete.
pub fn read_pid(pid_file: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

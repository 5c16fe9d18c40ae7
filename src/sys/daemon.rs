//! fork(2) for daemonising a mount.

use nix::unistd::ForkResult;

/// Forks the process.
///
/// Call only while the process is single-threaded (before any request threads exist): the
/// child goes on running ordinary Rust code.
pub fn fork() -> nix::Result<ForkResult> {
    // SAFETY: callers fork before starting threads (documented above), so the child has no
    // locks held by vanished threads; glibc's malloc is fork-safe.
    unsafe { nix::unistd::fork() }
}

/// Leaves the process at once, without running atexit handlers or destructors (for the
/// intermediate child of a double fork).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// Raises the soft limit of open files to the hard limit (the daemon caches directory fds).
pub fn raise_nofile_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, exclusively borrowed rlimit for getrlimit to fill, and a valid
    // rlimit for setrlimit to read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

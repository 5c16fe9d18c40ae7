//! fork(2) for daemonising a mount daemon or a container monitor.

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

/// In the child of a first fork: a new session, then a second fork whose parent leaves at once,
/// so the caller goes on as a daemon no terminal can reach and init reaps.
pub fn detach_from_session() {
    let _ = nix::unistd::setsid();
    match fork() {
        Ok(ForkResult::Parent { .. }) => exit_now(0),
        Ok(ForkResult::Child) => {}
        Err(_) => exit_now(1),
    }
}

/// Large allocations (the FUSE request buffers: 16 MiB for each request thread) come straight
/// from mmap: fresh zero pages the kernel provides on first touch. Left to itself, glibc raises
/// its mmap threshold once such a buffer is freed (the handshake's), and each request thread's
/// zeroed buffer then comes from the heap and is cleared with memset: 16 MiB written per thread
/// at every mount, milliseconds of CPU racing the mount's first requests (and its unmount), and
/// memory the daemon keeps. A fixed threshold turns that adjustment off.
pub fn large_allocations_from_mmap() {
    // SAFETY: mallopt takes two integers and changes only allocator tuning; called before the
    // request threads exist.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Lowers the calling thread's scheduling priority to the least (nice 19): for work that only
/// helps when a CPU is idle. Linux keeps a nice value per thread; it can't be raised back by an
/// ordinary user, so only a thread of its own should call this.
pub fn lowest_priority_for_this_thread() {
    // SAFETY: setpriority takes three integers; who 0 is the calling thread on Linux.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
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

/// A process to wait for (not necessarily our child): a pidfd, which keeps naming the same
/// process even once its pid is reused.
pub struct ProcessHandle(std::os::fd::OwnedFd);

/// Readable once the process has exited (to poll together with other fds).
impl std::os::fd::AsFd for ProcessHandle {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl ProcessHandle {
    /// A handle on process `pid`; `Ok(None)` when it is gone already, an error when the kernel
    /// has no pidfds (before 5.3), so the caller can fall back to polling.
    pub fn open(pid: i32) -> std::io::Result<Option<ProcessHandle>> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags, no pointers; a non-negative result is a new
        // fd that we own from here on.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if raw < 0 {
            let e = std::io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ESRCH) { Ok(None) } else { Err(e) };
        }
        // SAFETY: `raw` is the fd pidfd_open just returned, owned by nothing else.
        Ok(Some(ProcessHandle(unsafe { std::os::fd::OwnedFd::from_raw_fd(raw as i32) })))
    }

    /// Sends SIGKILL to the process (a no-op once it has exited, even if its pid is reused).
    pub fn kill(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal takes our pidfd, a signal number, a null siginfo (the kernel
        // fills in a kill(2)-like one) and no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Waits up to `timeout` for the process to exit; whether it has.
    pub fn wait_exit(&self, timeout: std::time::Duration) -> std::io::Result<bool> {
        use std::os::fd::AsFd;
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [nix::poll::PollFd::new(self.0.as_fd(), nix::poll::PollFlags::POLLIN)];
        // A pidfd becomes readable when the process exits.
        loop {
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
                Ok(n) => return Ok(n > 0),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

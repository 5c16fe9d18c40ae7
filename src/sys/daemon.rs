//! fork(2) for daemonising a mount daemon or a container monitor.

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::OnceLock;

use nix::unistd::ForkResult;

/// The descriptors above stdio this process was started with (a caller's lock, the write end
/// of a `$(…)`'s pipe), with the file each names: noted before strata opens anything.
static INHERITED: OnceLock<Vec<(RawFd, u64, u64)>> = OnceLock::new();

/// Notes the descriptors this process inherited, for [`close_inherited`]. The first thing a
/// binary that may fork a daemon does; without /proc it notes none.
pub fn note_inherited() {
    let listed: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).filter(|&fd| fd > 2).collect()
        })
        .unwrap_or_default();
    // The listing's own descriptor is among them, closed now: fstat leaves it out.
    let _ = INHERITED
        .set(listed.into_iter().filter_map(|fd| identity(fd).map(|(dev, ino)| (fd, dev, ino))).collect());
}

/// In a daemon just forked (a mount daemon, a container's monitor): closes what the command
/// inherited, which would otherwise stay open as long as the mount or the container (a script's
/// `flock` held for the mount's life, a `$(strata …)` never reaching its end). A number strata
/// closed and reused since names another file then, and stays.
pub fn close_inherited() {
    for &(fd, dev, ino) in INHERITED.get().into_iter().flatten() {
        if identity(fd) == Some((dev, ino)) {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// The device and inode `fd` names, if it is open.
fn identity(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: fstat only reads the descriptor's file status; a closed number fails with EBADF.
    let st = nix::sys::stat::fstat(unsafe { BorrowedFd::borrow_raw(fd) }).ok()?;
    Some((st.st_dev, st.st_ino))
}

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

/// Takes an exclusive flock on `fd`, blocking: the kernel wakes this process the moment the
/// holder lets go (no polling). Every `tick` a SIGALRM (a handler that does nothing, installed
/// without `SA_RESTART`, so flock returns EINTR) asks `keep_waiting`; `Ok(false)` once it says
/// no. The timer and the signal's previous disposition are restored before returning. For a
/// single-threaded command (the alarm goes to the process).
pub fn flock_exclusive_ticking(
    fd: std::os::fd::BorrowedFd<'_>,
    tick: std::time::Duration,
    mut keep_waiting: impl FnMut() -> bool,
) -> std::io::Result<bool> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    extern "C" fn wake(_: libc::c_int) {}
    let every = libc::timeval {
        tv_sec: tick.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(tick.subsec_micros().max(1)),
    };
    let arm = |t: libc::timeval| {
        let value = libc::itimerval { it_interval: t, it_value: t };
        // SAFETY: setitimer reads a valid itimerval and may write the old one to a null pointer
        // (none asked); it changes only this process's real-time timer.
        unsafe { libc::setitimer(libc::ITIMER_REAL, &value, std::ptr::null_mut()) }
    };
    let action = SigAction::new(SigHandler::Handler(wake), SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler does nothing (async-signal-safe); the old action is put back below.
    let old = unsafe { sigaction(Signal::SIGALRM, &action)? };
    arm(every);
    // Not nix's `Flock`, which unlocks when dropped: the lock is the caller's to keep.
    let got = loop {
        match rustix::fs::flock(fd, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => break Ok(true),
            Err(rustix::io::Errno::INTR) if keep_waiting() => continue,
            Err(rustix::io::Errno::INTR) => break Ok(false),
            Err(e) => break Err(e.into()),
        }
    };
    arm(libc::timeval { tv_sec: 0, tv_usec: 0 });
    // SAFETY: restores the disposition sigaction returned above.
    let _ = unsafe { sigaction(Signal::SIGALRM, &old) };
    got
}

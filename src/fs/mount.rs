//! Mounting and unmounting: foreground, daemonised, and explicit unmount.
//!
//! strata mounts itself (`sys::fuse_mount`) and hands the connection to fuser, which serves it
//! and never unmounts: unmounting is explicit (`umount2`, lazily when busy, `fusermount3 -u`
//! when unprivileged), and a session that ends on an error unmounts only its own mount.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use fuser::{Config, SessionACL};
use nix::errno::Errno;
use nix::mount::{MntFlags, umount2};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::{ForkResult, Pid};

use super::StrataFs;
use crate::sys::daemon;
use crate::sys::fuse_mount::{self, FuseMount, fusermount_unmount};

/// What to mount and how.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Lower layer directories, top first.
    pub lowers: Vec<PathBuf>,
    /// The writable layer (none: read-only mount of the lowers).
    pub upper: Option<PathBuf>,
    /// Scratch dir for copy-up, on the upper's filesystem (required with `upper`).
    pub work: Option<PathBuf>,
    /// Mount read-only (an `upper` then serves as the top read-only layer).
    pub read_only: bool,
    /// Let other users use the mount (permission checks stay the kernel's).
    pub allow_other: bool,
    /// Source name shown in /proc/mounts.
    pub fsname: String,
    /// The mount's type is `fuse.<subtype>`.
    pub subtype: String,
    /// Extra kernel mount flags: dev, nodev, suid, nosuid, exec, noexec, atime, noatime,
    /// sync, async, dirsync.
    pub flags: Vec<String>,
    /// Daemon log (daemon mode: stdout and stderr go there).
    pub log_file: Option<PathBuf>,
    /// Request threads.
    pub threads: usize,
    /// Use FUSE passthrough for file data when the kernel allows it.
    pub passthrough: bool,
    /// Where the daemon answers freezes of the upper (a commit of the mount in use; freeze.rs).
    pub control_socket: Option<PathBuf>,
    /// The user namespace the layers were written in (a rootless user's with a subordinate
    /// range): the daemon enters it once mounted and serves from there (`fs::attr::set_frame`).
    pub namespace_frame: Option<crate::sys::userns::IdMaps>,
    /// Serve through FUSE over io_uring when the kernel offers it (the admin's choice:
    /// `/sys/module/fuse/parameters/enable_uring`); /dev/fuse otherwise. Default: on, or
    /// `STRATA_IO_URING=0|1`.
    pub io_uring: bool,
    /// A descriptor the forked daemon inherits and closes once it has finished (the session
    /// over, the upper synced), just before it exits: the container's lock, which `strata
    /// umount` waits for, so it wakes then instead of after the process's teardown (its threads
    /// woken and ended, its memory unmapped: most of a millisecond). Only the daemon of a
    /// `strata mount` gets one, which holds the last copy once the command has exited.
    pub done_fd: Option<std::os::fd::RawFd>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            lowers: Vec::new(),
            upper: None,
            work: None,
            read_only: false,
            allow_other: false,
            fsname: "strata".into(),
            subtype: "strata".into(),
            flags: Vec::new(),
            log_file: None,
            threads: std::thread::available_parallelism().map(|n| n.get().clamp(2, 8)).unwrap_or(4),
            passthrough: true,
            control_socket: None,
            namespace_frame: None,
            io_uring: io_uring_default(),
            done_fd: None,
        }
    }
}

/// `STRATA_IO_URING=0` (or `1`) overrides the default, which is to use io_uring whenever the
/// kernel offers it.
fn io_uring_default() -> bool {
    !matches!(std::env::var("STRATA_IO_URING").as_deref(), Ok("0" | "no" | "false" | "off"))
}

/// io_uring threads per CPU queue, each with one ring entry: `STRATA_IO_URING_THREADS` (1–8),
/// default 2: a thread busy with a slow request (a copy-up of a big file, a renamed tree) holds
/// its ring entry, so with one the other requests of that CPU waited for it (a `stat` held for
/// the whole 512 MiB copy of overlay_core_copyup_stall).
fn io_uring_threads() -> usize {
    std::env::var("STRATA_IO_URING_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2).clamp(1, 8)
}

/// How long a /dev/fuse thread polls for the next request after serving one before it sleeps:
/// `STRATA_FUSE_SPIN_US` (microseconds, at most 1000), default 0 (never). Measured on the 2-vCPU
/// VM (BENCHMARKS.md, "Spin before sleeping") it won create 10k, not the other cases.
fn idle_spin() -> std::time::Duration {
    let us = std::env::var("STRATA_FUSE_SPIN_US").ok().and_then(|v| v.parse().ok()).unwrap_or(0u64);
    std::time::Duration::from_micros(us.min(1000))
}

/// The layers to stack, top first, and the writable layer and its work dir (none read-only:
/// an upper then serves as the top lower).
fn layers(opts: &MountOptions) -> Result<(Vec<PathBuf>, Option<&Path>, Option<&Path>)> {
    let mut lowers = opts.lowers.clone();
    let (upper, work) = if opts.read_only {
        if let Some(u) = &opts.upper {
            lowers.insert(0, u.clone());
        }
        (None, None)
    } else {
        (opts.upper.as_deref(), opts.work.as_deref())
    };
    if lowers.is_empty() && upper.is_none() {
        bail!("no layers to mount");
    }
    Ok((lowers, upper, work))
}

fn open_layers(opts: &MountOptions) -> Result<StrataFs> {
    let (lowers, upper, work) = layers(opts)?;
    StrataFs::new(&lowers, upper, work, opts.passthrough).context("opening the layers")
}

/// What to ask the kernel (or fusermount3) for, and how fuser serves it.
fn build(opts: &MountOptions) -> Result<(FuseMount<'_>, Config)> {
    let (_, upper, _) = layers(opts)?;
    let root = nix::unistd::geteuid().is_root();
    let has = |f: &str| opts.flags.iter().any(|x| x == f);
    // As root a container's devices and setuid files work unless asked otherwise; fusermount3
    // sets nodev,nosuid for everyone else.
    let mut flags: Vec<&str> = ["nodev", "nosuid"].into_iter().filter(|f| !root || has(f)).collect();
    for f in &opts.flags {
        match f.as_str() {
            "ro" | "rw" | "nodev" | "nosuid" => {}
            f if fuse_mount::flag(f).is_some() => flags.push(f),
            f => bail!("unknown mount flag {f:?}"),
        }
    }
    if upper.is_none() {
        flags.push("ro");
    }
    let mount =
        FuseMount { fsname: &opts.fsname, subtype: &opts.subtype, flags, allow_other: opts.allow_other };
    let mut config = Config::default();
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    config.io_uring = opts.io_uring;
    config.io_uring_threads_per_queue = io_uring_threads();
    // STRATA_IO_URING_PIN=0: the queue threads float instead of running on their queue's CPU.
    config.io_uring_unpinned = std::env::var("STRATA_IO_URING_PIN").as_deref() == Ok("0");
    config.idle_spin = idle_spin();
    Ok((mount, config))
}

/// Mounts and serves until unmounted. `ready` runs once the kernel handshake is done.
pub fn mount_with(opts: &MountOptions, mountpoint: &Path, ready: impl FnOnce()) -> Result<()> {
    daemon::raise_nofile_limit();
    daemon::large_allocations_from_mmap();
    let mountpoint = &absolute(mountpoint)?;
    let (mount, config) = build(opts)?;
    // fuser's owner check compares with our euid, 0 once in a user namespace; without
    // allow_other the kernel lets only the mount's owner in anyway.
    let acl =
        if opts.allow_other || opts.namespace_frame.is_some() { SessionACL::All } else { SessionACL::Owner };
    let signals = block_unmount_signals();
    let mounting = || format!("mounting on {}", mountpoint.display());
    // fusermount3 (everyone but root) is a setuid process start: it runs while this process
    // opens the layers and enters its user namespace. As root mount(2) comes after, as before:
    // the mount shows only once it can be served at once.
    let through_fusermount = !nix::unistd::geteuid().is_root();
    let mut pending = None;
    if through_fusermount {
        pending = Some(mount.start(mountpoint).with_context(mounting)?);
    }
    let fs = open_layers(opts);
    // A rootless daemon serves from the user namespace its layers were written in (no thread
    // may exist yet): it reads files of subordinate owners there. fusermount3 can't work there,
    // so it was started first, outside; it mounts while this process enters the namespace (the
    // one kept for the user, or a new one while newuidmap and newgidmap run).
    let entered = match (&fs, &opts.namespace_frame) {
        (Ok(_), Some(m)) => Some(crate::sys::userns::enter_here(m)),
        _ => None,
    };
    let pending = match pending {
        Some(p) => p,
        None => match &fs {
            Ok(_) => mount.start(mountpoint).with_context(mounting)?,
            Err(_) => return fs.map(|_| ()),
        },
    };
    let (dev, fusermount) = pending.finish_unreaped().with_context(mounting)?;
    let fs = match (fs, entered) {
        (Ok(fs), None | Some(Ok(()))) => fs,
        (Err(e), _) => {
            let _ = fuse_mount::unmount_if_ours(&dev, mountpoint);
            return Err(e);
        }
        (Ok(_), Some(Err(e))) => {
            let _ = fuse_mount::unmount_if_ours(&dev, mountpoint);
            return Err(e).context("entering the user namespace");
        }
    };
    let wrote = fs.wrote_flag();
    let upper = fs.stack().upper().map(|u| u.path().to_path_buf());
    if let Some(m) = &opts.namespace_frame {
        super::attr::set_frame(m.clone());
    }
    // Bound before the mount answers, served (a thread) after.
    let control = match &opts.control_socket {
        Some(p) => Some((
            super::freeze::listen(p).with_context(|| format!("listening on {}", p.display()))?,
            fs.freeze_gate(),
        )),
        None => None,
    };
    let mut _control = None;
    // Kept to ask the connection, once the session is over, whether the mount is still ours.
    let probe = dev.try_clone()?;
    let notifier = fs.notifier_slot();
    let session = fuser::Session::from_fd(fs, dev, acl, config);
    if let Ok(s) = &session {
        let _ = notifier.set(s.notifier());
    }
    let transport = session.as_ref().ok().map(|s| s.transport());
    let served = session.and_then(|s| {
        let t = s.transport();
        let how = if t.io_uring_queues() > 0 { "io_uring" } else { "/dev/fuse" };
        tracing::info!(mountpoint = %mountpoint.display(), transport = how, io_uring = %t.io_uring_note(), "mounted");
        // The caller goes on first; a signal meanwhile stays pending (blocked) until the thread waits.
        ready();
        fusermount.reap();
        if let Some((listening, gate)) = control {
            match listening.serve(gate) {
                Ok(guard) => _control = Some(guard),
                // The socket is gone with it: a commit then says the mount can't be frozen.
                Err(e) => tracing::warn!("no thread for the control socket: {e}"),
            }
        }
        if let Some(set) = signals {
            unmount_on_signals(set, mountpoint.to_path_buf());
        }
        s.run()
    });
    if let Err(e) = fuse_mount::unmount_if_ours(&probe, mountpoint) {
        tracing::warn!("unmounting {} after the session: {e}", mountpoint.display());
    }
    if let Some(t) = transport {
        // Tests read this line to tell io_uring from a silent fallback.
        tracing::info!(
            io_uring_requests = t.io_uring_requests(),
            dev_fuse_requests = t.dev_fuse_requests(),
            io_uring_register_failures = t.io_uring_register_failures(),
            "FUSE requests served"
        );
    }
    served.context("FUSE session")?;
    // What the mount wrote is durable before the daemon exits (`strata umount` waits for that);
    // a mount that changed nothing has nothing to flush.
    if let Some(u) = upper.filter(|_| wrote.load(std::sync::atomic::Ordering::Relaxed)) {
        if let Err(e) = File::open(&u).and_then(|f| nix::unistd::syncfs(f.as_fd()).map_err(Into::into)) {
            tracing::warn!("syncfs {}: {e}", u.display());
        }
    }
    tracing::info!(mountpoint = %mountpoint.display(), "unmounted; exiting");
    Ok(())
}

/// SIGTERM, SIGINT and SIGHUP unmount (lazily) instead of killing the daemon, so the session
/// ends cleanly. They are blocked in this thread before the mount exists (one that comes while
/// the mount is set up waits; the request threads inherit the mask) ...
fn block_unmount_signals() -> Option<SigSet> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    match set.thread_block() {
        Ok(()) => Some(set),
        Err(e) => {
            tracing::warn!("can't block signals: {e}");
            None
        }
    }
}

/// ... and one thread waits for them once the mount answers.
fn unmount_on_signals(set: SigSet, mountpoint: PathBuf) {
    let spawned = std::thread::Builder::new().name("strata-signals".into()).spawn(move || {
        if let Ok(sig) = set.wait() {
            tracing::info!("{sig}: unmounting {}", mountpoint.display());
            if let Err(e) = fuse_mount::detach(&mountpoint) {
                tracing::warn!("unmount on {sig} failed: {e}");
                // In a user namespace neither umount2 nor fusermount3 works: ending the daemon
                // ends the connection (`strata umount` clears the mount left behind).
                if crate::sys::userns::in_user_namespace() {
                    super::super::sys::daemon::exit_now(128 + sig as i32);
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("no signal thread: {e}");
    }
}

/// Mounts and serves in this process until unmounted.
pub fn mount_foreground(opts: &MountOptions, mountpoint: &Path) -> Result<()> {
    mount_with(opts, mountpoint, || {})
}

/// Forks a daemon that mounts and serves; returns its pid once the mount answers.
/// Call it while the process is single-threaded.
pub fn mount_daemon(opts: &MountOptions, mountpoint: &Path) -> Result<Pid> {
    fork_daemon(opts, mountpoint, true)?.wait()
}

/// A mount daemon forked by [`spawn_daemon`], mounting while the caller goes on.
pub struct PendingDaemon {
    /// The child forked: the intermediate one of a double fork, which exits at once, or the
    /// daemon itself.
    child: Pid,
    double: bool,
    from_daemon: std::os::fd::OwnedFd,
}

impl PendingDaemon {
    /// The daemon's pid while it mounts: known at once when it is the caller's own child
    /// ([`spawn_daemon`]), not through the intermediate child of a double fork.
    pub fn pid(&self) -> Option<Pid> {
        (!self.double).then_some(self.child)
    }

    /// The daemon's pid once its mount answers, or why it failed.
    pub fn wait(self) -> Result<Pid> {
        if self.double {
            let _ = nix::sys::wait::waitpid(self.child, None);
        }
        let mut msg = String::new();
        File::from(self.from_daemon).read_to_string(&mut msg).context("reading from the mount daemon")?;
        let msg = msg.trim();
        if !self.double && !msg.starts_with("ok ") {
            // Our own child, which failed and exits: no zombie left.
            let _ = nix::sys::wait::waitpid(self.child, None);
        }
        if let Some(pid) = msg.strip_prefix("ok ") {
            // The daemon says so only once the kernel's handshake is done on its mount.
            let pid: i32 = pid.parse().map_err(|_| anyhow!("bad message from the daemon: {msg}"))?;
            Ok(Pid::from_raw(pid))
        } else if let Some(err) = msg.strip_prefix("err ") {
            Err(anyhow!("{err}"))
        } else {
            Err(anyhow!("the mount daemon exited without mounting"))
        }
    }
}

/// Forks a daemon that mounts and serves, and returns at once: [`PendingDaemon::wait`] says when
/// the mount answers (a container's start writes its bundle meanwhile). One fork, not two: the
/// daemon is the caller's child (in a session of its own), so the caller reaps it once it has
/// exited ([`reap_daemon`]) or exits itself. Call it while the process is single-threaded.
pub fn spawn_daemon(opts: &MountOptions, mountpoint: &Path) -> Result<PendingDaemon> {
    fork_daemon(opts, mountpoint, false)
}

/// Collects the exit status of a daemon [`spawn_daemon`] forked, once it has exited (no wait).
pub fn reap_daemon(pid: Pid) {
    let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
}

/// `double`: fork twice, so the daemon is no child of the caller (init reaps it).
fn fork_daemon(opts: &MountOptions, mountpoint: &Path, double: bool) -> Result<PendingDaemon> {
    let mountpoint = absolute(mountpoint)?;
    // The daemon leaves the working directory: every path must be absolute.
    let mut opts = opts.clone();
    for l in opts.lowers.iter_mut() {
        *l = absolute(l)?;
    }
    for p in
        [&mut opts.upper, &mut opts.work, &mut opts.log_file, &mut opts.control_socket].into_iter().flatten()
    {
        *p = absolute(p)?;
    }
    let opts = &opts;
    let (rd, wr) = nix::unistd::pipe()?;
    match daemon::fork()? {
        ForkResult::Parent { child } => {
            drop(wr);
            Ok(PendingDaemon { child, double, from_daemon: rd })
        }
        ForkResult::Child => {
            drop(rd);
            if double {
                daemon::detach_from_session();
            } else {
                let _ = nix::unistd::setsid();
            }
            daemon::close_inherited();
            let wr = std::cell::RefCell::new(Some(File::from(wr)));
            let code = match serve_daemon(opts, &mountpoint, &wr) {
                Ok(()) => 0,
                Err(e) => {
                    if let Some(mut w) = wr.borrow_mut().take() {
                        let _ = w.write_all(format!("err {e:#}\n").as_bytes());
                    }
                    tracing::error!("{e:#}");
                    1
                }
            };
            // Done writing: whoever waits for this descriptor's lock goes on now.
            if let Some(fd) = opts.done_fd {
                let _ = nix::unistd::close(fd);
            }
            daemon::exit_now(code)
        }
    }
}

fn serve_daemon(opts: &MountOptions, mountpoint: &Path, wr: &std::cell::RefCell<Option<File>>) -> Result<()> {
    let _ = std::env::set_current_dir("/");
    let null = File::options().read(true).write(true).open("/dev/null")?;
    nix::unistd::dup2_stdin(null.as_fd())?;
    let out = match &opts.log_file {
        Some(p) => File::options()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("opening log {}", p.display()))?,
        None => null.try_clone()?,
    };
    nix::unistd::dup2_stdout(out.as_fd())?;
    nix::unistd::dup2_stderr(out.as_fd())?;
    if opts.log_file.is_some() {
        // The caller's logging goes on to the file (stderr now), without colour codes.
        crate::logging::stderr_is_a_file();
    }
    if opts.log_file.is_some() && !tracing::dispatcher::has_been_set() {
        // Log to the file unless the caller already set up logging.
        let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init();
    }
    mount_with(opts, mountpoint, || {
        // Tell the parent, and close the pipe so its read ends.
        // One write (the parent reads to the end: `writeln!` made three, each a wake-up).
        if let Some(mut w) = wr.borrow_mut().take() {
            let _ = w.write_all(format!("ok {}\n", std::process::id()).as_bytes());
        }
    })
}

/// Makes a path absolute without touching it (a dead FUSE mount answers ENOTCONN to stat).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let p = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) };
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    Ok(out)
}

fn unescape_mountinfo(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 3 < s.len() && s[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (s[i + 1] - b'0') * 64 + (s[i + 2] - b'0') * 8 + (s[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// The fstype of what is mounted at `mountpoint` (the last mount there), if anything.
pub fn mount_type(mountpoint: &Path) -> Result<Option<String>> {
    let mp = absolute(mountpoint)?;
    let mp = std::fs::canonicalize(&mp).unwrap_or(mp);
    let info = std::fs::read("/proc/self/mountinfo")?;
    let mut found = None;
    for line in info.split(|b| *b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
        if fields.len() < 5 {
            continue;
        }
        if unescape_mountinfo(fields[4]) == mp.as_os_str().as_bytes() {
            let sep = fields.iter().position(|f| *f == b"-");
            let fstype = sep.and_then(|i| fields.get(i + 1)).map(|f| String::from_utf8_lossy(f).into_owned());
            found = Some(fstype.unwrap_or_default());
        }
    }
    Ok(found)
}

/// Whether something is mounted at `mountpoint`: one statx(2) for the kernel's
/// `STATX_ATTR_MOUNT_ROOT` (Linux 5.8+), else a scan of /proc/self/mountinfo. The statx asks for
/// no attribute and with `AT_STATX_DONT_SYNC`, so a FUSE mount is sent no request (a dead,
/// frozen or hung daemon can't hold it up) and answers whoever asks, owner or not.
pub fn is_mounted(mountpoint: &Path) -> Result<bool> {
    use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags, statx};
    let mp = absolute(mountpoint)?;
    match statx(CWD, &mp, AtFlags::STATX_DONT_SYNC, StatxFlags::empty()) {
        Ok(st) if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) => {
            Ok(st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT))
        }
        _ => Ok(mount_type(&mp)?.is_some()),
    }
}

/// Unmounts `mountpoint` (lazily if busy; via fusermount3 when unprivileged). A dead daemon's
/// mount (ENOTCONN) is cleared the same way.
pub fn unmount(mountpoint: &Path) -> Result<()> {
    let mp = absolute(mountpoint)?;
    let not_mounted = || anyhow!("{} is not mounted", mp.display());
    match umount2(&mp, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::EBUSY) => {
            tracing::info!("{} busy: unmounting lazily", mp.display());
            umount2(&mp, MntFlags::MNT_DETACH).with_context(|| format!("unmounting {}", mp.display()))
        }
        Err(Errno::EPERM) if is_mounted(&mp)? => Ok(fusermount_unmount(&mp)?),
        Err(Errno::EPERM | Errno::EINVAL | Errno::ENOENT) => Err(not_mounted()),
        Err(e) => Err(anyhow!("unmounting {}: {e}", mp.display())),
    }
}

/// Unmounts and waits (up to `timeout`) for the daemon `pid` to exit.
pub fn unmount_and_wait(mountpoint: &Path, pid: Option<Pid>, timeout: Duration) -> Result<()> {
    // Taken before unmounting, so it names the daemon even if its pid is reused once it exits.
    let handle = pid.map(|p| daemon::ProcessHandle::open(p.as_raw()));
    unmount(mountpoint)?;
    let Some(pid) = pid else { return Ok(()) };
    wait_daemon(pid, handle, timeout)
}

/// Waits up to `timeout` for daemon `pid` to exit, through `handle` (taken before the unmount, so
/// a reused pid is not mistaken for it), or by polling where there are no pidfds.
pub fn wait_daemon(
    pid: Pid,
    handle: Option<std::io::Result<Option<daemon::ProcessHandle>>>,
    timeout: Duration,
) -> Result<()> {
    match handle {
        Some(Ok(None)) => Ok(()),
        Some(Ok(Some(h))) if h.wait_exit(timeout)? => Ok(()),
        Some(Ok(Some(_))) => bail!("mount daemon {pid} still running after {timeout:?}"),
        _ => {
            let start = Instant::now();
            while is_alive(pid) {
                if start.elapsed() >= timeout {
                    bail!("mount daemon {pid} still running after {timeout:?}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        }
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn is_alive(pid: Pid) -> bool {
    if kill(pid, None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().map(|r| r.trim_start().starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

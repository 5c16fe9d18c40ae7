//! The per-container lock (flock on the container's directory `containers/<id>` itself): held by
//! whoever mounts, runs or removes the container, for as long as that lasts. A mount daemon or
//! monitor inherits it across fork and holds it until it exits, so a second mount can't start a
//! second daemon on the same upper (whose work-dir clean-up would delete the first one's
//! copy-ups) and `rm` never deletes an upper under a starting daemon. The directory, not a file
//! in it: a lock file was one more inode made and freed per container (each new inode on an ext4
//! without a journal scans past those freed in the last minute). Renaming the directory away (a
//! removal) keeps the lock with it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::FlockArg;

/// Held while the value lives (and in every process forked meanwhile, until they exit). Dropping
/// it only closes this process's descriptor: the lock ends when the last holder closes its copy.
pub struct ContainerLock {
    _file: File,
}

impl ContainerLock {
    /// Takes the lock of the container directory `dir`; `None` when someone holds it.
    pub fn try_acquire(dir: &Path) -> Result<Option<ContainerLock>> {
        let path = dir;
        // O_CLOEXEC (std's default): forked daemons inherit it, executed programs never do.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("cannot open container directory {} to lock it", path.display()))?;
        use std::os::fd::AsRawFd;
        // Not `nix::fcntl::Flock`: it unlocks on drop, which would release the lock for the
        // forked daemon too (a flock belongs to the open file description they share).
        #[allow(deprecated)]
        match nix::fcntl::flock(file.as_raw_fd(), FlockArg::LockExclusiveNonblock) {
            Ok(()) => Ok(Some(ContainerLock { _file: file })),
            Err(Errno::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }

    /// The descriptor that holds the lock: a mount daemon forked meanwhile closes its copy once
    /// it has finished writing (`MountOptions::done_fd`), so that a waiter wakes before its exit.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self._file.as_raw_fd()
    }

    /// Waits for the lock, woken by the kernel the moment its holder lets go (no polling), for
    /// as long as `keep_waiting`, asked every `tick`, says so; `None` when it gave up.
    pub fn wait(
        dir: &Path,
        tick: Duration,
        keep_waiting: impl FnMut() -> bool,
    ) -> Result<Option<ContainerLock>> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(dir)
            .with_context(|| format!("cannot open container directory {} to lock it", dir.display()))?;
        use std::os::fd::AsFd;
        let got = crate::sys::daemon::flock_exclusive_ticking(file.as_fd(), tick, keep_waiting)
            .with_context(|| format!("cannot lock {}", dir.display()))?;
        Ok(got.then_some(ContainerLock { _file: file }))
    }

    /// Waits up to `timeout` for the lock, calling `meanwhile` between tries (e.g. to unmount
    /// what holds it); `None` when it is still held then.
    pub fn acquire_within(
        dir: &Path,
        timeout: Duration,
        mut meanwhile: impl FnMut() -> Result<()>,
    ) -> Result<Option<ContainerLock>> {
        let start = Instant::now();
        loop {
            if let Some(l) = Self::try_acquire(dir)? {
                return Ok(Some(l));
            }
            if start.elapsed() >= timeout {
                return Ok(None);
            }
            meanwhile()?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

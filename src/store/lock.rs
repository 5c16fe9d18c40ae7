//! The store lock: writers exclusive, readers shared (flock on `ROOT/lock`).

use std::fs::{File, OpenOptions};
use std::path::Path;

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// Held for as long as the value lives; dropping it unlocks.
pub struct StoreLock {
    _flock: Flock<File>,
    pub mode: LockMode,
}

impl StoreLock {
    /// Takes the lock, waiting (with one line on stderr) while another strata process holds it.
    pub fn acquire(path: &Path, mode: LockMode) -> Result<Self> {
        let open = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(path)
                .with_context(|| format!("cannot open store lock {}", path.display()))
        };
        let (nb, blocking) = match mode {
            LockMode::Shared => (FlockArg::LockSharedNonblock, FlockArg::LockShared),
            LockMode::Exclusive => (FlockArg::LockExclusiveNonblock, FlockArg::LockExclusive),
        };
        let flock = match Flock::lock(open()?, nb) {
            Ok(f) => f,
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                eprintln!(
                    "waiting for the store lock {} (another strata process is using the store)",
                    path.display()
                );
                Flock::lock(file, blocking)
                    .map_err(|(_, e)| e)
                    .with_context(|| format!("cannot lock {}", path.display()))?
            }
            Err((_, e)) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
        };
        Ok(StoreLock { _flock: flock, mode })
    }
}

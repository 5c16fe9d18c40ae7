//! Starting runc before its bundle is ready. runc's own start (its exec, the Go runtime, its
//! flags) takes milliseconds before it reads `config.json`, and it reads it once, first; only
//! after that does it need the rootfs. So while the union is mounted and the bundle made,
//! `config.json` is a symlink to a pipe this process holds (`/proc/<pid>/fd/<n>`): runc, started
//! at once, sleeps in its read of the pipe until the mount answers and the config is written
//! into it. A regular `config.json` then replaces the symlink for whoever reads the bundle later
//! (`exec`). crun reads `config.json` twice, so only runc starts early.
//!
//! The pipe's reading end stays open here until the container is taken down: a runtime that
//! resolved the symlink just before it was replaced still finds the pipe behind it.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::{FcntlArg, OFlag, fcntl};

const NAME: &str = "config.json";

/// A `config.json` the runtime may already be waiting on.
pub struct ConfigPipe {
    path: PathBuf,
    /// Held so that `/proc/<pid>/fd/<n>` resolves for as long as the container is up.
    _reader: OwnedFd,
    writer: Option<OwnedFd>,
}

impl ConfigPipe {
    /// Puts the symlink to a new pipe at `dir/config.json` (in place of whatever was there).
    pub fn new(dir: &Path) -> Result<ConfigPipe> {
        let (reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let target = format!("/proc/{}/fd/{}", std::process::id(), reader.as_raw_fd());
        let path = dir.join(NAME);
        let staged = dir.join(format!(".{NAME}.{}", std::process::id()));
        let _ = std::fs::remove_file(&staged);
        std::os::unix::fs::symlink(&target, &staged)
            .and_then(|()| std::fs::rename(&staged, &path))
            .with_context(|| format!("cannot make {}", path.display()))?;
        Ok(ConfigPipe { path, _reader: reader, writer: Some(writer) })
    }

    /// Hands `config` to the runtime and leaves it in `config.json` as a regular file. Call
    /// only once the rootfs is mounted: the runtime goes on as soon as it has read it. Staged
    /// first, so that once the runtime has it, nothing is left to fail but a rename.
    pub fn deliver(&mut self, config: &[u8]) -> Result<()> {
        let staged = stage(&self.path, config)?;
        if let Some(w) = self.writer.take() {
            // Room for all of it, so the write never waits for the reader.
            let room = |w: &OwnedFd| fcntl(w.as_fd(), FcntlArg::F_GETPIPE_SZ).map_or(0, |n| n as usize);
            if room(&w) < config.len() {
                let _ = fcntl(w.as_fd(), FcntlArg::F_SETPIPE_SZ(config.len().try_into().unwrap_or(i32::MAX)));
            }
            if room(&w) >= config.len() {
                std::fs::File::from(w)
                    .write_all(config)
                    .with_context(|| format!("cannot write {} to the runtime", self.path.display()))?;
            } else {
                // Too big even so (a user's pipe-max-size): written as the runtime reads.
                let config = config.to_vec();
                std::thread::spawn(move || {
                    let _ = std::fs::File::from(w).write_all(&config);
                });
            }
        }
        std::fs::rename(&staged, &self.path).with_context(|| format!("cannot write {}", self.path.display()))
    }
}

impl Drop for ConfigPipe {
    fn drop(&mut self) {
        // Never delivered: no symlink into this process is left behind.
        if self.writer.is_some() && std::fs::read_link(&self.path).is_ok() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes `dir/config.json` as a regular file, replacing (never writing through) a symlink a
/// killed monitor may have left.
pub fn write(dir: &Path, config: &[u8]) -> Result<()> {
    write_regular(&dir.join(NAME), config)
}

fn write_regular(path: &Path, config: &[u8]) -> Result<()> {
    let staged = stage(path, config)?;
    std::fs::rename(&staged, path).with_context(|| format!("cannot write {}", path.display()))
}

/// `config` in a file next to `path`, to be renamed there.
fn stage(path: &Path, config: &[u8]) -> Result<PathBuf> {
    let staged = path.with_file_name(format!(".{NAME}.{}", std::process::id()));
    let _ = std::fs::remove_file(&staged);
    std::fs::write(&staged, config).with_context(|| format!("cannot write {}", staged.display()))?;
    Ok(staged)
}

/// Reads `dir/config.json`; a symlink (a runtime start cut short) is refused, never followed.
pub fn read(dir: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join(NAME))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the runtime reads through the symlink is the config, also when it opens it only
    /// after the regular file took its place; a pipe never delivered leaves no symlink.
    #[test]
    fn the_runtime_reads_the_config_before_and_after_it_is_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = ConfigPipe::new(dir.path()).unwrap();
        let early = std::fs::File::open(dir.path().join(NAME)).unwrap();
        let big = vec![b'x'; 200_000];
        p.deliver(&big).unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut { early }, &mut got).unwrap();
        assert_eq!(got.len(), big.len());
        assert_eq!(read(dir.path()).unwrap(), big);
        drop(p);
        assert_eq!(read(dir.path()).unwrap(), big);

        let p = ConfigPipe::new(dir.path()).unwrap();
        assert!(read(dir.path()).is_err(), "a pending config.json is not followed");
        drop(p);
        assert!(!dir.path().join(NAME).exists() && std::fs::read_link(dir.path().join(NAME)).is_err());
    }
}

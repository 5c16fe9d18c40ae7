//! Unmounting without waiting on a daemon under the store's lock: a busy mount is refused with
//! the processes that hold it (from /proc), or detached lazily on request (`-l`, fusermount3's
//! `-z`); waiting for the daemon to write everything and exit happens with the store given back.
//! The container's lock, held by its daemon until it exits, keeps a second daemon off the same
//! writable layer whatever happens to the `umount` meanwhile.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use nix::errno::Errno;
use nix::mount::{MntFlags, umount2};
use nix::unistd::Pid;

use crate::fs::mount::{absolute, is_mounted};
use crate::sys::daemon::ProcessHandle;

/// A process using something under a mountpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    pub command: String,
    /// cwd, root, exe, an open file, a mapped file.
    pub how: &'static str,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}: {})", self.pid, self.command, self.how)
    }
}

/// The processes whose cwd, root, executable, open files or mapped files are under
/// `mountpoint`, one entry per process (the first use found). Read from /proc links, which
/// never touch the mount itself (a frozen or dead daemon cannot hang this).
pub fn holders(mountpoint: &Path) -> Vec<Holder> {
    let me = std::process::id() as i32;
    // /proc shows resolved paths: resolve the parent (never the mountpoint itself, which a dead
    // or frozen daemon would answer slowly or not at all).
    let resolved = mountpoint
        .parent()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .zip(mountpoint.file_name())
        .map(|(p, n)| p.join(n))
        .unwrap_or_else(|| mountpoint.to_path_buf());
    let under = |p: &Path| p.starts_with(mountpoint) || p.starts_with(&resolved);
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return out };
    for e in procs.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let dir = e.path();
        let link = |name: &str| std::fs::read_link(dir.join(name)).ok();
        let mut how = None;
        for (name, what) in [("cwd", "cwd"), ("root", "root"), ("exe", "exe")] {
            if link(name).is_some_and(|p| under(&p)) {
                how = Some(what);
                break;
            }
        }
        if how.is_none()
            && let Ok(fds) = std::fs::read_dir(dir.join("fd"))
            && fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|p| under(&p)))
        {
            how = Some("open file");
        }
        if how.is_none()
            && let Ok(maps) = std::fs::read_to_string(dir.join("maps"))
            && maps.lines().filter_map(mapped_path).any(|p| under(Path::new(p)))
        {
            how = Some("mapped file");
        }
        if let Some(how) = how {
            let command = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_string();
            out.push(Holder { pid, command, how });
        }
    }
    out.sort_by_key(|h| h.pid);
    out
}

/// The path of a /proc/PID/maps line (its sixth field), if it maps a file.
fn mapped_path(line: &str) -> Option<&str> {
    let mut rest = line;
    for _ in 0..5 {
        rest = rest.trim_start().split_once(' ')?.1;
    }
    Some(rest.trim_start()).filter(|p| p.starts_with('/'))
}

/// The error for a busy mountpoint: who holds it, and what to do.
fn busy(mountpoint: &Path, what: &str) -> anyhow::Error {
    let hs = holders(mountpoint);
    let by = if hs.is_empty() {
        String::from("by a process strata cannot see (another mount namespace?)")
    } else {
        let list: Vec<String> = hs.iter().map(ToString::to_string).collect();
        format!("by pid {}", list.join(", "))
    };
    anyhow!(
        "{what} at {} is busy: used {by}; stop them, or detach it lazily with strata umount -l \
         (the mount then ends when they let go)",
        mountpoint.display()
    )
}

/// Unmounts `mountpoint` now, or refuses (busy, naming the holders); `lazy` detaches it even
/// when busy (MNT_DETACH, fusermount3 -z): it disappears from the tree at once and its daemon
/// serves the open files until the last one is closed. Never waits for the daemon.
pub fn detach(mountpoint: &Path, lazy: bool, what: &str) -> Result<()> {
    let mp = absolute(mountpoint)?;
    let flags = if lazy { MntFlags::MNT_DETACH } else { MntFlags::empty() };
    match umount2(&mp, flags) {
        Ok(()) => Ok(()),
        Err(Errno::EBUSY) => Err(busy(&mp, what)),
        Err(Errno::EPERM) if is_mounted(&mp)? => {
            let mut c = Command::new("fusermount3");
            c.arg("-u").arg("-q");
            if lazy {
                c.arg("-z");
            }
            let st = c.arg("--").arg(&mp).status().map_err(|e| anyhow!("running fusermount3: {e}"))?;
            if st.success() {
                Ok(())
            } else if !lazy && is_mounted(&mp)? {
                Err(busy(&mp, what))
            } else {
                bail!("fusermount3 -u {} failed", mp.display())
            }
        }
        Err(Errno::EPERM | Errno::EINVAL | Errno::ENOENT) => bail!("{} is not mounted", mp.display()),
        Err(e) => bail!("unmounting {}: {e}", mp.display()),
    }
}

/// Unmounts (refusing a busy mount unless `lazy`) and, unless lazy, waits for the daemon.
pub fn unmount_and_wait(
    mountpoint: &Path,
    pid: Option<Pid>,
    lazy: bool,
    what: &str,
    timeout: Duration,
) -> Result<()> {
    let handle = pid.map(|p| ProcessHandle::open(p.as_raw()));
    detach(mountpoint, lazy, what)?;
    match pid {
        Some(pid) if !lazy => crate::fs::mount::wait_daemon(pid, handle, timeout),
        _ => Ok(()),
    }
}

/// What `strata umount NAME` names.
#[derive(Debug)]
pub enum Target {
    Container(Box<crate::store::containers::ContainerRecord>),
    Image(crate::store::mounts::ImageMount),
    /// A FUSE mount strata has no record of.
    Path(PathBuf),
}

/// Reads `NAME` as a mountpoint strata recorded, a container, an image with one mount, or any
/// other mountpoint, in that order.
pub fn resolve(store: &crate::store::Store, name: &str) -> Result<Target> {
    let path = absolute(Path::new(name))?;
    let containers = store.containers()?;
    if let Some(c) = containers.iter().find(|c| c.mount.as_ref().is_some_and(|m| m.mountpoint == path)) {
        return Ok(Target::Container(Box::new(c.clone())));
    }
    let images = store.image_mounts()?;
    if let Some(m) = images.iter().find(|m| m.mountpoint == path) {
        return Ok(Target::Image(m.clone()));
    }
    if let Ok(c) = store.resolve_container(name) {
        return Ok(Target::Container(Box::new(c)));
    }
    if let Ok(image) = store.resolve_image(name) {
        let mut of: Vec<_> = images.into_iter().filter(|m| m.image == image.id).collect();
        return match of.len() {
            0 => bail!("image {name} is not mounted"),
            1 => Ok(Target::Image(of.remove(0))),
            _ => {
                let at: Vec<String> = of.iter().map(|m| m.mountpoint.display().to_string()).collect();
                bail!("image {name} is mounted at {}: say which one to unmount", at.join(", "))
            }
        };
    }
    if is_mounted(&path).unwrap_or(false) {
        return Ok(Target::Path(path));
    }
    bail!("{name:?} is not a mounted container, a mounted image or a mountpoint")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_paths() {
        let l = "7f0c1c000000-7f0c1c021000 r--p 00000000 00:2d 1234    /mnt/x/lib/a b.so";
        assert_eq!(mapped_path(l), Some("/mnt/x/lib/a b.so"));
        assert_eq!(mapped_path("7f0c-7f0d rw-p 00000000 00:00 0 "), None);
        assert_eq!(mapped_path("7ffd-7ffe rw-p 00000000 00:00 0    [stack]"), None);
    }

    #[test]
    fn our_cwd_is_seen_from_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("sleep").arg("30").current_dir(dir.path()).spawn().unwrap();
        let hs = holders(dir.path());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(hs.iter().any(|h| h.pid == child.id() as i32 && h.how == "cwd"), "{hs:?}");
    }
}

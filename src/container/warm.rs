//! Looking up, while the runtime starts, what it will look up in the container's fresh union
//! mount. The runtime's own start (its runtime, namespaces, cgroups) takes milliseconds before it
//! touches the rootfs; then each of its lookups on the fresh mount (mountpoints, `/etc/passwd`,
//! the command, the command's ELF interpreter and the symlinks on the way) would wait for a FUSE
//! round trip. Done first from here, the kernel has those entries cached when the runtime asks.
//!
//! Everything is found through the mount itself, while the runtime starts: the command through
//! `PATH`, its ELF interpreter from its header. None of it is on the way to starting the runtime
//! (searching the image's layers for them before the mount took hundreds of syscalls there).

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use crate::store::containers::RunConfig;

/// The paths (in the container) the runtime looks up for `cfg` before it runs the command: its
/// mountpoints, then the files it reads for the user's groups and home.
fn fixed_paths(cfg: &RunConfig) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        ["proc", "dev", "sys", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/passwd", "etc/group"]
            .iter()
            .map(PathBuf::from)
            .collect();
    if !cfg.working_dir.is_empty() {
        out.push(PathBuf::from(&cfg.working_dir));
    }
    out.extend(cfg.mounts.iter().map(|m| PathBuf::from(&m.destination)));
    out
}

/// Where the runtime may find the command, in its search order: itself when it has a `/`, else
/// that name in each directory of the container's `PATH`.
fn command_candidates(cfg: &RunConfig) -> Vec<PathBuf> {
    let Some(cmd) = cfg.args.first() else { return Vec::new() };
    if cmd.contains('/') {
        return vec![PathBuf::from(cmd)];
    }
    let default = super::oneshot::DEFAULT_PATH.trim_start_matches("PATH=");
    let path = cfg.env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(default);
    path.split(':').filter(|d| d.starts_with('/')).map(|d| Path::new(d).join(cmd)).collect()
}

/// The `PT_INTERP` of an ELF64 little-endian executable (the dynamic loader the kernel starts it
/// with) from the start of the file, `head`; `None` for anything else.
fn interpreter(head: &[u8]) -> Option<PathBuf> {
    let u16_at =
        |o: usize| Some(u16::from_le_bytes(head.get(o..o.checked_add(2)?)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(head.get(o..o.checked_add(4)?)?.try_into().ok()?));
    let u64_at =
        |o: usize| Some(u64::from_le_bytes(head.get(o..o.checked_add(8)?)?.try_into().ok()?) as usize);
    // ELF magic, 64-bit, little-endian.
    if head.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?);
    (0..phnum.min(64)).find_map(|i| {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != 3 {
            return None; // not PT_INTERP
        }
        let (off, size) = (u64_at(ph.checked_add(8)?)?, u64_at(ph.checked_add(32)?)?);
        let name = head.get(off..off.checked_add(size)?)?;
        let name = name.strip_suffix(b"\0").unwrap_or(name);
        let name = std::str::from_utf8(name).ok()?;
        name.starts_with('/').then(|| PathBuf::from(name))
    })
}

/// The warm-up running in a thread of its own at the lowest priority: the runtime's own start
/// needs both CPUs of a small machine far more than these lookups, which are only wanted once it
/// reaches the rootfs (milliseconds later). Stopped and joined by [`WarmUp::finish`] (or when
/// dropped): it holds the rootfs open, which an unmount must not find.
pub struct WarmUp {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WarmUp {
    pub fn start(rootfs: &Path, cfg: &RunConfig) -> WarmUp {
        let stop = Arc::new(AtomicBool::new(false));
        let (rootfs, cfg, flag) = (rootfs.to_path_buf(), cfg.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("warm-up".into())
            .spawn(move || {
                crate::sys::daemon::lowest_priority_for_this_thread();
                warm_up(&rootfs, &cfg, &flag);
            })
            .ok();
        WarmUp { stop, thread }
    }

    /// Stops the warm-up where it is and waits for its thread.
    pub fn finish(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WarmUp {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Looks up, through the mount at `rootfs`, what the runtime will look up to run `cfg`, as the
/// container sees it (symlinks resolved inside `rootfs`): `O_PATH` opens, only the command is
/// opened for reading (its first 4 KiB, for the interpreter). Ends early once `stop` is set.
fn warm_up(rootfs: &Path, cfg: &RunConfig, stop: &AtomicBool) {
    // Opened for reading and stat'ed as the runtime will (it opens the rootfs to pivot_root into
    // it): the kernel asks the daemon once per mount for an OPENDIR, which strata answers ENOSYS
    // so that no later one is sent, and for the root's attributes, then cached.
    let open =
        |how: OFlag| nix::fcntl::open(rootfs, how | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty());
    let Ok(root) = open(OFlag::O_RDONLY).or_else(|_| open(OFlag::O_PATH)) else { return };
    let _ = nix::sys::stat::fstat(root.as_fd());
    let lookup = |p: &Path, flags: OFlag| -> Option<OwnedFd> {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(&root, p.strip_prefix("/").unwrap_or(p), how).ok()
    };
    for p in fixed_paths(cfg) {
        let _ = lookup(&p, OFlag::O_PATH);
    }
    // The runtime's search: the first regular file of the name (misses are cached too).
    let regular = |fd: &OwnedFd| {
        nix::sys::stat::fstat(fd.as_fd()).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
    };
    let Some(cmd) =
        command_candidates(cfg).into_iter().find(|p| lookup(p, OFlag::O_PATH).is_some_and(|fd| regular(&fd)))
    else {
        return;
    };
    // Not a FIFO or a device (checked above); O_NONBLOCK all the same: this never waits.
    let Some(file) = lookup(&cmd, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW) else { return };
    // Likewise the one POLL a mount is asked (the runtime's Go runtime polls the files it opens).
    let _ = nix::poll::poll(
        &mut [nix::poll::PollFd::new(file.as_fd(), nix::poll::PollFlags::POLLIN)],
        nix::poll::PollTimeout::ZERO,
    );
    let mut head = Vec::new();
    if std::fs::File::from(file).take(4096).read_to_end(&mut head).is_err() {
        return;
    }
    if let Some(interp) = interpreter(&head) {
        let _ = lookup(&interp, OFlag::O_PATH);
        let _ = lookup(Path::new("etc/ld.so.cache"), OFlag::O_PATH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 header with one program header at `phoff` (`PT_INTERP` naming `interp`, stored at
    /// `off`).
    fn elf(phoff: u64, off: u64, interp: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..6].copy_from_slice(b"\x7fELF\x02\x01");
        h[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        h[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        h[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        if let Ok(p) = usize::try_from(phoff) {
            if p.checked_add(40).is_some_and(|end| end <= h.len()) {
                h[p..p + 4].copy_from_slice(&3u32.to_le_bytes());
                h[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
                h[p + 32..p + 40].copy_from_slice(&(interp.len() as u64).to_le_bytes());
            }
        }
        let o = off as usize;
        if o + interp.len() <= h.len() {
            h[o..o + interp.len()].copy_from_slice(interp);
        }
        h
    }

    #[test]
    fn the_interpreter_is_read_from_the_program_headers() {
        assert_eq!(
            interpreter(&elf(64, 300, b"/lib64/ld-linux-x86-64.so.2\0")),
            Some(PathBuf::from("/lib64/ld-linux-x86-64.so.2"))
        );
    }

    /// A hostile header (offsets near the end of the address space, past the file, garbage) gives
    /// no interpreter: never an overflow or a panic (the file comes from the image).
    #[test]
    fn a_hostile_header_gives_none_without_a_panic() {
        for phoff in [u64::MAX, u64::MAX - 7, u64::MAX - 40, 1 << 40, 4000] {
            assert_eq!(interpreter(&elf(phoff, 300, b"/x\0")), None, "phoff {phoff}");
        }
        let mut h = elf(64, 0, b"");
        h[64 + 8..64 + 16].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
        assert_eq!(interpreter(&h), None);
        assert_eq!(interpreter(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn the_command_is_searched_in_the_containers_path() {
        let cfg = RunConfig {
            args: vec!["true".into()],
            env: vec!["PATH=/usr/bin:relative:/bin".into()],
            ..RunConfig::default()
        };
        assert_eq!(command_candidates(&cfg), [PathBuf::from("/usr/bin/true"), PathBuf::from("/bin/true")]);
        let cfg = RunConfig { args: vec!["./x".into()], ..RunConfig::default() };
        assert_eq!(command_candidates(&cfg), [PathBuf::from("./x")]);
    }
}

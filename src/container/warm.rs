//! Looking up, while the runtime starts, what it will look up in the container's fresh union
//! mount. The runtime's own start (its runtime, namespaces, cgroups) takes milliseconds before it
//! touches the rootfs; then each of its lookups on the fresh mount (mountpoints, `/etc/passwd`,
//! the command, the command's ELF interpreter and the symlinks on the way) would wait for a FUSE
//! round trip. Done first from here, the kernel has those entries cached when the runtime asks.

use std::io::Read;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use crate::store::containers::RunConfig;
use crate::union::Stack;

/// The paths (in the container) the runtime and the start of `cfg`'s command look up, found with
/// the image's own layers (`stack`) where it takes a search: the command through `PATH`, its ELF
/// interpreter.
pub fn paths(stack: &Stack, cfg: &RunConfig) -> Vec<PathBuf> {
    // The runtime's mountpoints, then the files it reads for the user's groups and home.
    let mut out: Vec<PathBuf> =
        ["proc", "dev", "sys", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/passwd", "etc/group"]
            .iter()
            .map(PathBuf::from)
            .collect();
    if !cfg.working_dir.is_empty() {
        out.push(PathBuf::from(&cfg.working_dir));
    }
    out.extend(cfg.mounts.iter().map(|m| PathBuf::from(&m.destination)));
    if let Some(cmd) = command(stack, cfg) {
        if let Some(interp) = interpreter(stack, &cmd) {
            out.push(interp);
            out.push(PathBuf::from("etc/ld.so.cache"));
        }
        out.push(cmd);
    }
    out
}

/// Where the runtime will find the command: itself when it has a `/`, else the first regular
/// file of that name in the container's `PATH` (as the runtime's search).
fn command(stack: &Stack, cfg: &RunConfig) -> Option<PathBuf> {
    let cmd = cfg.args.first()?;
    if cmd.contains('/') {
        return Some(PathBuf::from(cmd));
    }
    let default = super::oneshot::DEFAULT_PATH.trim_start_matches("PATH=");
    let path = cfg.env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(default);
    path.split(':').filter(|d| d.starts_with('/')).map(|d| Path::new(d).join(cmd)).find(|p| {
        let rel = p.strip_prefix("/").unwrap_or(p);
        stack.resolve(rel, true).ok().flatten().is_some_and(|e| crate::inspect::node::is_reg(&e))
    })
}

/// The `PT_INTERP` of an ELF64 little-endian executable (the dynamic loader the kernel starts it
/// with), read from the image's layers; `None` for anything else.
fn interpreter(stack: &Stack, cmd: &Path) -> Option<PathBuf> {
    let rel = cmd.strip_prefix("/").unwrap_or(cmd);
    let e = stack.resolve(rel, true).ok()??;
    let mut head = Vec::new();
    stack.open_file(&e).ok()?.take(4096).read_to_end(&mut head).ok()?;
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

/// Looks up each path as the container would see it (symlinks resolved inside `rootfs`); an
/// `O_PATH` open, so nothing is opened through the filesystem, only looked up.
pub fn warm_up(rootfs: &Path, paths: &[PathBuf]) {
    let Ok(root) =
        nix::fcntl::open(rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
    else {
        return;
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    for p in paths {
        let _ = openat2(&root, p.strip_prefix("/").unwrap_or(p), how);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer holding one file, `bin/x`, with `bytes`.
    fn stack_with(bytes: &[u8]) -> (tempfile::TempDir, Stack) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/x"), bytes).unwrap();
        let stack = Stack::new(&[dir.path().to_path_buf()], None).unwrap();
        (dir, stack)
    }

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
        let (_d, stack) = stack_with(&elf(64, 300, b"/lib64/ld-linux-x86-64.so.2\0"));
        assert_eq!(
            interpreter(&stack, Path::new("/bin/x")),
            Some(PathBuf::from("/lib64/ld-linux-x86-64.so.2"))
        );
    }

    /// A hostile header (offsets near the end of the address space, past the file, garbage) gives
    /// no interpreter: never an overflow or a panic (`strata run` reads it from the image).
    #[test]
    fn a_hostile_header_gives_none_without_a_panic() {
        for phoff in [u64::MAX, u64::MAX - 7, u64::MAX - 40, 1 << 40, 4000] {
            let (_d, stack) = stack_with(&elf(phoff, 300, b"/x\0"));
            assert_eq!(interpreter(&stack, Path::new("/bin/x")), None, "phoff {phoff}");
        }
        let mut h = elf(64, 0, b"");
        h[64 + 8..64 + 16].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
        let (_d, stack) = stack_with(&h);
        assert_eq!(interpreter(&stack, Path::new("/bin/x")), None);
        let (_d, stack) = stack_with(b"#!/bin/sh\n");
        assert_eq!(interpreter(&stack, Path::new("/bin/x")), None);
    }
}

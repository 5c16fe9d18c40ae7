//! Looking up, while the runtime starts, what it will look up in the container's fresh union
//! mount. The runtime's own start (its runtime, namespaces, cgroups) takes milliseconds before it
//! touches the rootfs; then each of its lookups on the fresh mount (mountpoints, `/etc/passwd`,
//! the command through `PATH`) would wait for a FUSE round trip. Done first from here, the
//! kernel has those entries cached when the runtime asks.

use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use crate::store::containers::RunConfig;

/// The paths (relative to the rootfs) the runtime and the exec of `cfg`'s command look up.
fn paths(cfg: &RunConfig) -> Vec<PathBuf> {
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
    if let Some(cmd) = cfg.args.first() {
        if cmd.contains('/') {
            out.push(PathBuf::from(cmd));
        } else {
            let default = super::oneshot::DEFAULT_PATH.trim_start_matches("PATH=");
            let path = cfg.env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(default);
            out.extend(path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(cmd)));
        }
    }
    out
}

/// Looks up each path as the container would see it (symlinks resolved inside `rootfs`); an
/// `O_PATH` open, so nothing is opened through the filesystem, only looked up.
pub fn warm_up(rootfs: &Path, cfg: &RunConfig) {
    let Ok(root) =
        nix::fcntl::open(rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
    else {
        return;
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // The command's search ends where the runtime's will: at the first directory that has it.
    let cmd = cfg.args.first().map(String::as_str).unwrap_or_default();
    let mut found_command = false;
    for p in paths(cfg) {
        let candidate = !cmd.contains('/') && p.file_name().is_some_and(|n| n == cmd);
        if candidate && found_command {
            continue;
        }
        let rel = p.strip_prefix("/").unwrap_or(&p);
        found_command |= openat2(&root, rel, how).is_ok() && candidate;
    }
}

//! The OCI runtime bundle of a container: `config.json` in the container's directory, with the
//! union mount as its root and Docker's defaults (mounts, capabilities, masked and read-only
//! paths), plus the generated `hosts`, `hostname` and `resolv.conf` it bind-mounts.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::user::ResolvedUser;
use crate::store::containers::RunConfig;

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows, in the order of their numbers (for `--privileged` and
/// `--cap-add ALL`).
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's masked paths (hidden from the container) and read-only paths.
const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READ_ONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// `NET_ADMIN`, `cap_net_admin` or `CAP_NET_ADMIN` → `CAP_NET_ADMIN`; `ALL` stays.
fn cap_name(c: &str) -> Result<String> {
    let up = c.to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") { up } else { format!("CAP_{up}") };
    if !ALL_CAPS.contains(&full.as_str()) {
        bail!("unknown capability {c:?}");
    }
    Ok(full)
}

/// The capability set: Docker's defaults, plus `--cap-add`, minus `--cap-drop` (ALL on either side).
pub fn capabilities(cfg: &RunConfig) -> Result<Vec<String>> {
    let add: Vec<String> = cfg.cap_add.iter().map(|c| cap_name(c)).collect::<Result<_>>()?;
    let drop: Vec<String> = cfg.cap_drop.iter().map(|c| cap_name(c)).collect::<Result<_>>()?;
    let all = cfg.privileged || add.iter().any(|c| c == "ALL");
    let mut caps: Vec<String> = if all {
        // Every capability this process may pass on (its bounding set), as Docker does.
        let bounding = bounding_set();
        ALL_CAPS
            .iter()
            .enumerate()
            .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
            .map(|(_, c)| c.to_string())
            .collect()
    } else {
        DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
    };
    caps.extend(add.into_iter().filter(|c| c != "ALL"));
    if drop.iter().any(|c| c == "ALL") {
        caps.retain(|c| cfg.cap_add.iter().any(|a| cap_name(a).ok().as_deref() == Some(c.as_str())));
    } else {
        caps.retain(|c| !drop.contains(c));
    }
    caps.sort();
    caps.dedup();
    Ok(caps)
}

/// This process's capability bounding set (`CapBnd` of /proc/self/status; all when unreadable).
fn bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string())))
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(u64::MAX)
}

/// The files a container sees at /etc/hosts, /etc/hostname and /etc/resolv.conf, written in its
/// directory (bind-mounted, never in the upper).
pub fn write_host_files(dir: &Path, cfg: &RunConfig) -> Result<()> {
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if cfg.network == "host" {
        // As Docker with --network host: the host's own entries too.
        if let Ok(h) = std::fs::read_to_string("/etc/hosts") {
            hosts.push_str(&h);
        }
    } else {
        hosts.push_str(&format!("127.0.1.1\t{}\n", cfg.hostname));
    }
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for (name, text) in
        [("hosts", hosts), ("hostname", format!("{}\n", cfg.hostname)), ("resolv.conf", resolv)]
    {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

fn opts(o: &[&str]) -> Value {
    json!(o)
}

/// `config.json` for `cfg` run as `user`, with `rootfs` as root.
pub fn runtime_config(
    cfg: &RunConfig,
    user: &ResolvedUser,
    rootfs: &Path,
    dir: &Path,
    id: &str,
) -> Result<Value> {
    let caps = capabilities(cfg)?;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": opts(&["nosuid", "noexec", "nodev"])}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": opts(&["nosuid", "strictatime", "mode=755", "size=65536k"])}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": opts(&["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"])}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": opts(&["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": opts(&["nosuid", "noexec", "nodev"])}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": opts(&["nosuid", "noexec", "nodev", if cfg.privileged { "rw" } else { "ro" }])}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": opts(&["nosuid", "noexec", "nodev", "relatime", if cfg.privileged { "rw" } else { "ro" }])}),
    ];
    for name in ["hosts", "hostname", "resolv.conf"] {
        mounts.push(json!({"destination": format!("/etc/{name}"), "type": "bind", "source": dir.join(name), "options": opts(&["rbind", "rprivate"])}));
    }
    for m in &cfg.mounts {
        let rw = if m.rw { "rw" } else { "ro" };
        if m.kind == "tmpfs" {
            mounts.push(json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": opts(&["nosuid", "nodev", "noexec", rw])}));
        } else {
            mounts.push(json!({"destination": m.destination, "type": "bind", "source": m.source, "options": opts(&["rbind", "rprivate", rw])}));
        }
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if cfg.network == "none" {
        namespaces.push(json!({"type": "network"}));
    }
    let mut resources = json!({"devices": [{"allow": cfg.privileged, "access": "rwm"}]});
    if cfg.memory > 0 {
        resources["memory"] = json!({"limit": cfg.memory});
    }
    if cfg.pids_limit > 0 {
        resources["pids"] = json!({"limit": cfg.pids_limit});
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": format!("strata-{}", &id[..12.min(id.len())]),
    });
    if !cfg.privileged {
        linux["maskedPaths"] = json!(MASKED);
        linux["readonlyPaths"] = json!(READ_ONLY);
    }
    let mut env = cfg.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    if cfg.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let mut process = json!({
            "terminal": cfg.tty,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
            "args": cfg.args,
            "env": env,
            "cwd": if cfg.working_dir.is_empty() { "/" } else { cfg.working_dir.as_str() },
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": false,
    });
    if let Some(size) = console_size().filter(|_| cfg.tty) {
        process["consoleSize"] = size;
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": cfg.read_only},
        "hostname": cfg.hostname,
        "mounts": mounts,
        "linux": linux,
    }))
}

/// The size of this process's terminal (stdout's, else stdin's) as a process's `consoleSize`:
/// the container's terminal has it from the start (the runtime's own resize comes a moment late).
pub fn console_size() -> Option<Value> {
    use std::os::fd::AsFd;
    let ws = crate::sys::tty::window_size(std::io::stdout().as_fd())
        .or_else(|| crate::sys::tty::window_size(std::io::stdin().as_fd()))
        .filter(|ws| ws.ws_row > 0 && ws.ws_col > 0)?;
    Some(json!({"height": ws.ws_row, "width": ws.ws_col}))
}

/// Where `--init` puts its init in the container (Docker's path).
pub const INIT_PATH: &str = "/sbin/docker-init";

/// The init `--init` runs as the container's first process: the host's static tini, bind-mounted
/// (a static binary runs in any image).
pub fn init_binary() -> Result<std::path::PathBuf> {
    ["/usr/bin/tini-static", "/usr/local/bin/tini-static"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
        .context("--init needs a static tini on the host: install the Debian package tini (it provides /usr/bin/tini-static)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_follow_docker_rules() {
        let mut cfg = RunConfig::default();
        assert_eq!(capabilities(&cfg).unwrap().len(), DEFAULT_CAPS.len());
        cfg.cap_add = vec!["net_admin".into()];
        cfg.cap_drop = vec!["CHOWN".into()];
        let caps = capabilities(&cfg).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()) && !caps.contains(&"CAP_CHOWN".to_string()));
        cfg.cap_drop = vec!["ALL".into()];
        assert_eq!(capabilities(&cfg).unwrap(), vec!["CAP_NET_ADMIN"]);
        cfg.cap_add = vec!["BOGUS".into()];
        assert!(capabilities(&cfg).is_err());
    }
}

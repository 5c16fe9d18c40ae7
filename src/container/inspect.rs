//! A container as `inspect` shows it: Docker's field names for what strata records (the state
//! the monitor wrote, checked against the living processes; the config; the mounts).

use serde_json::{Value, json};

use super::status::{self, Status};
use crate::store::Store;
use crate::store::containers::ContainerRecord;

/// Unix milliseconds as Docker prints times (`0001-01-01T00:00:00Z` for never).
fn time(ms: i64) -> String {
    if ms <= 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    super::logs::rfc3339_nanos(t)
}

/// Docker's `State` object.
pub fn state(c: &ContainerRecord) -> Value {
    let st = c.state.clone().unwrap_or_default();
    let s = status::status(c);
    let running = s == Status::Running;
    json!({
        "Status": s.word(),
        "Running": running,
        "Paused": false,
        "Restarting": false,
        "OOMKilled": false,
        "Dead": s == Status::Dead,
        "Pid": if running { st.pid } else { 0 },
        "ExitCode": if matches!(s, Status::Exited { .. } | Status::Dead) { st.exit_code } else { 0 },
        "Error": st.error,
        "StartedAt": time(st.started_at),
        "FinishedAt": time(if running { 0 } else { st.finished_at }),
    })
}

/// The whole container object of `strata inspect CONTAINER`.
pub fn describe(store: &Store, c: &ContainerRecord) -> Value {
    let cfg = c.config.clone().unwrap_or_default();
    let dir = store.container_dir(&c.id);
    let image = store.image(&c.image).ok();
    let lowers: Vec<String> = image
        .as_ref()
        .map(|i| {
            super::mounting::container_lowers(store, c, i).iter().map(|p| p.display().to_string()).collect()
        })
        .unwrap_or_default();
    let mounts: Vec<Value> = cfg
        .mounts
        .iter()
        .map(|m| {
            json!({
                "Type": m.kind,
                "Source": m.source,
                "Destination": m.destination,
                "Mode": if m.rw { "" } else { "ro" },
                "RW": m.rw,
                "Propagation": if m.kind == "bind" { "rprivate" } else { "" },
            })
        })
        .collect();
    let merged = c.mount.as_ref().map(|m| m.mountpoint.display().to_string()).unwrap_or_default();
    json!({
        "Id": c.id,
        "Created": crate::oci::time::format_rfc3339(c.created),
        "Path": cfg.args.first().cloned().unwrap_or_default(),
        "Args": cfg.args.iter().skip(1).collect::<Vec<_>>(),
        "State": state(c),
        "Image": c.image.to_string(),
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": super::logs::path(&dir),
        "Name": format!("/{}", c.name),
        "Driver": "strata",
        "Platform": "linux",
        "HostConfig": {
            "Binds": cfg.mounts.iter().filter(|m| m.kind == "bind").map(|m| {
                format!("{}:{}{}", m.source.display(), m.destination, if m.rw { "" } else { ":ro" })
            }).collect::<Vec<_>>(),
            "NetworkMode": cfg.network,
            "AutoRemove": cfg.auto_remove,
            "Privileged": cfg.privileged,
            "CapAdd": cfg.cap_add,
            "CapDrop": cfg.cap_drop,
            "ReadonlyRootfs": cfg.read_only,
            "Memory": cfg.memory,
            "PidsLimit": cfg.pids_limit,
            "Init": cfg.init,
            "Runtime": cfg.runtime,
            "Tmpfs": cfg.mounts.iter().filter(|m| m.kind == "tmpfs").map(|m| (m.destination.clone(), Value::from(""))).collect::<serde_json::Map<_, _>>(),
        },
        "GraphDriver": {
            "Name": "strata",
            "Data": {
                "LowerDir": lowers.join(":"),
                "UpperDir": store.container_upper(&c.id),
                "WorkDir": store.container_work(&c.id),
                "MergedDir": merged,
            },
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": cfg.hostname,
            "User": cfg.user,
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
            "Env": cfg.env,
            "Cmd": cfg.cmd,
            "Entrypoint": if cfg.entrypoint.is_empty() { Value::Null } else { json!(cfg.entrypoint) },
            "Image": c.image_name,
            "WorkingDir": cfg.working_dir,
            "StopSignal": cfg.stop_signal,
        },
    })
}

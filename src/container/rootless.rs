//! What a container run by an ordinary user needs on top of the bundle root would get: the
//! runtime (runc or crun, rootless) makes a user namespace mapping 0 to the user and 1…N to the
//! user's subordinate ranges (what the layers were unpacked with), `/sys` is bound instead of
//! mounted, and cgroup limits apply only where a delegated cgroup v2 subtree is writable.
//!
//! A user without a subordinate range gets what rootless Podman gives one: only 0 → the user is
//! mapped (the layers record their other owners in the override xattr), so the process runs as
//! root with no supplementary groups, other owners show as nobody and a chown to them fails.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::sys::userns::IdMaps;

/// Whether containers run rootless here: not root in the initial user namespace.
pub fn rootless() -> bool {
    !crate::sys::userns::privileged()
}

/// Whether fusermount3 lets this user mount with `allow_other` (`user_allow_other` in
/// /etc/fuse.conf). Without it only the container's root (the user outside) can use its rootfs.
pub fn allow_other_permitted() -> bool {
    std::fs::read_to_string("/etc/fuse.conf")
        .is_ok_and(|t| t.lines().any(|l| l.split('#').next().unwrap_or("").trim() == "user_allow_other"))
}

/// The ids a user's containers map: 0 → the user, then the subordinate ranges; without a range
/// (in /etc/subuid or /etc/subgid) only 0 → the user.
pub fn id_maps() -> Result<IdMaps> {
    let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
    Ok(IdMaps::for_current_user()?.unwrap_or(IdMaps { uid, gid, uids: Vec::new(), gids: Vec::new() }))
}

/// Whether `maps` maps root alone (a user without a subordinate range).
pub fn root_only(maps: &IdMaps) -> bool {
    maps.uids.is_empty() || maps.gids.is_empty()
}

/// A process spec for a namespace that maps root alone: it must run as root, and it gets no
/// supplementary groups (setgroups(2) is denied in a namespace mapped without newgidmap).
pub fn root_only_process(process: &mut Value) -> Result<()> {
    let user = &mut process["user"];
    let (uid, gid) = (user["uid"].as_u64().unwrap_or(0), user["gid"].as_u64().unwrap_or(0));
    if uid != 0 || gid != 0 {
        let me = nix::unistd::getuid();
        let name = nix::unistd::User::from_uid(me).ok().flatten().map_or_else(|| me.to_string(), |u| u.name);
        bail!(
            "cannot run as uid {uid} gid {gid}: you have no subordinate ids (/etc/subuid, /etc/subgid), so \
             the container maps root alone (add a range as root, e.g. `usermod --add-subuids \
             100000-165535 --add-subgids 100000-165535 {name}`)"
        );
    }
    user["additionalGids"] = json!([]);
    Ok(())
}

/// Turns root's `config.json` into a rootless one for the user with `maps`; `in_namespace`: the
/// runtime runs in strata's user namespace already (`Runtime::in_user_namespace`), so the
/// container makes none.
pub fn adapt(config: &mut Value, maps: &IdMaps, in_namespace: bool) -> Result<()> {
    if let Some(mounts) = config["mounts"].as_array_mut() {
        // sysfs can't be mounted in a user namespace without its own network namespace; a
        // cgroup mount needs a cgroup namespace the user owns: /sys is bound read-only instead.
        mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
        for m in mounts.iter_mut().filter(|m| m["type"] == "sysfs") {
            *m = json!({"destination": "/sys", "type": "bind", "source": "/sys",
                        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
        }
    }
    if root_only(maps) {
        root_only_process(&mut config["process"])?;
        // devpts' `gid=5` (tty) is unmapped: the mount would fail.
        for m in config["mounts"].as_array_mut().into_iter().flatten().filter(|m| m["type"] == "devpts") {
            if let Some(o) = m["options"].as_array_mut() {
                o.retain(|o| o != "gid=5");
            }
        }
    }
    let linux = &mut config["linux"];
    if !in_namespace {
        if let Some(ns) = linux["namespaces"].as_array_mut() {
            ns.push(json!({"type": "user"}));
        }
        linux["uidMappings"] = mappings(maps.uid, &maps.uids);
        linux["gidMappings"] = mappings(maps.gid, &maps.gids);
    }
    let limits =
        ["memory", "pids"].into_iter().filter(|k| !linux["resources"][k].is_null()).collect::<Vec<_>>();
    match delegated_cgroup() {
        Some(parent) => {
            let name = linux["cgroupsPath"].as_str().unwrap_or("strata").to_string();
            linux["cgroupsPath"] = json!(parent.join(name));
            // Device rules are the kernel's in a user namespace (no device cgroup for a user).
            linux["resources"].as_object_mut().map(|r| r.remove("devices"));
        }
        None => {
            if !limits.is_empty() {
                eprintln!(
                    "strata: warning: rootless: no delegated cgroup v2 subtree is writable by you; \
                     the {} limit is ignored",
                    limits.join(" and ")
                );
            }
            let obj = linux.as_object_mut().expect("linux is an object");
            obj.remove("resources");
            obj.remove("cgroupsPath");
        }
    }
    Ok(())
}

/// Whether a delegated cgroup v2 subtree takes this user's containers (see `delegated_cgroup`).
pub fn cgroup_delegated() -> bool {
    delegated_cgroup().is_some()
}

/// `[{containerID: 0, hostID: own, size: 1}, {containerID: 1, hostID: start, size: count}, …]`.
fn mappings(own: u32, ranges: &[crate::sys::userns::SubRange]) -> Value {
    let mut out = vec![json!({"containerID": 0, "hostID": own, "size": 1})];
    let mut next = 1u64;
    for r in ranges {
        out.push(json!({"containerID": next, "hostID": r.start, "size": r.count}));
        next += r.count;
    }
    json!(out)
}

/// The cgroup (relative to the cgroup v2 root) under which a container's cgroup can be made with
/// the memory and pids controllers: this process's own cgroup's parent chain is systemd's
/// business, so only a cgroup v2 subtree delegated to the user counts: this process's cgroup,
/// writable, with both controllers enabled for its children.
fn delegated_cgroup() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim().to_string();
    let dir = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    let subtree = std::fs::read_to_string(dir.join("cgroup.subtree_control")).ok()?;
    let enabled = ["memory", "pids"].iter().all(|c| subtree.split_whitespace().any(|x| x == *c));
    let writable = nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok();
    (enabled && writable).then(|| PathBuf::from(rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::userns::SubRange;

    #[test]
    fn the_user_is_root_and_the_ranges_follow() {
        let maps = IdMaps {
            uid: 1001,
            gid: 1002,
            uids: vec![SubRange { start: 300000, count: 65536 }],
            gids: vec![SubRange { start: 400000, count: 10 }],
        };
        let mut config = json!({
            "mounts": [
                {"destination": "/proc", "type": "proc"},
                {"destination": "/sys", "type": "sysfs"},
                {"destination": "/sys/fs/cgroup", "type": "cgroup"},
            ],
            "linux": {"namespaces": [{"type": "pid"}], "resources": {"devices": []}, "cgroupsPath": "strata-x"},
        });
        adapt(&mut config, &maps, false).unwrap();
        assert_eq!(
            config["linux"]["uidMappings"],
            json!([{"containerID": 0, "hostID": 1001, "size": 1}, {"containerID": 1, "hostID": 300000, "size": 65536}])
        );
        assert_eq!(
            config["linux"]["gidMappings"][1],
            json!({"containerID": 1, "hostID": 400000, "size": 10})
        );
        assert!(config["linux"]["namespaces"].as_array().unwrap().contains(&json!({"type": "user"})));
        let mounts = config["mounts"].as_array().unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[1]["type"], "bind");
    }

    #[test]
    fn without_a_range_root_alone_is_mapped() {
        let maps = IdMaps { uid: 1002, gid: 1003, uids: vec![], gids: vec![] };
        let mut config = json!({
            "process": {"user": {"uid": 0, "gid": 0, "additionalGids": [0, 10]}},
            "mounts": [{"destination": "/dev/pts", "type": "devpts", "options": ["newinstance", "gid=5"]}],
            "linux": {"namespaces": [{"type": "pid"}]},
        });
        adapt(&mut config, &maps, false).unwrap();
        assert_eq!(config["linux"]["uidMappings"], json!([{"containerID": 0, "hostID": 1002, "size": 1}]));
        assert_eq!(config["linux"]["gidMappings"], json!([{"containerID": 0, "hostID": 1003, "size": 1}]));
        assert_eq!(config["process"]["user"]["additionalGids"], json!([]));
        assert_eq!(config["mounts"][0]["options"], json!(["newinstance"]));
        let mut other = json!({"user": {"uid": 33, "gid": 33}});
        let err = root_only_process(&mut other).unwrap_err().to_string();
        assert!(err.contains("uid 33") && err.contains("/etc/subuid"), "{err}");
    }
}

//! `-u USER[:GROUP]` resolved the way Docker does, against the image's own `/etc/passwd` and
//! `/etc/group`, read through the union (never the host's files, never following a link out).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::union::Stack;

/// Who the process runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Groups of /etc/group that list the user by name.
    pub additional_gids: Vec<u32>,
    /// From passwd (`/` when the user has no entry), for `HOME`.
    pub home: String,
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Reads a file of the union (symlinks followed inside it only); empty when absent.
fn read_in(stack: &Stack, path: &str) -> Result<String> {
    let Some(e) = stack.resolve(Path::new(path), true)? else { return Ok(String::new()) };
    if !crate::inspect::node::is_reg(&e) {
        return Ok(String::new());
    }
    let mut bytes = Vec::new();
    // At most 4 MiB: these are small files; a huge one is not worth reading whole.
    stack
        .open_file(&e)
        .and_then(|f| f.take(4 << 20).read_to_end(&mut bytes))
        .with_context(|| format!("reading the image's {path}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7).then(|| {
                Some(Passwd {
                    name: f[0].into(),
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                    home: f[5].into(),
                })
            })?
        })
        .collect()
}

fn groups(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4).then(|| {
                Some(Group {
                    name: f[0].into(),
                    gid: f[2].parse().ok()?,
                    members: f[3].split(',').filter(|m| !m.is_empty()).map(String::from).collect(),
                })
            })?
        })
        .collect()
}

/// Resolves `spec` (`""` = root, `name`, `uid`, with `:group` or `:gid`) in the image.
pub fn resolve(stack: &Stack, spec: &str) -> Result<ResolvedUser> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users = passwd(&read_in(stack, "/etc/passwd")?);
    let user = if user.is_empty() { "0" } else { user };
    let entry = match user.parse::<u32>() {
        Ok(uid) => users.iter().find(|p| p.uid == uid),
        Err(_) => match users.iter().find(|p| p.name == user) {
            Some(p) => Some(p),
            None => bail!("unable to find user {user}: no matching entries in the image's /etc/passwd"),
        },
    };
    let uid = entry.map_or_else(|| user.parse::<u32>().unwrap_or(0), |p| p.uid);
    let home = entry.map_or_else(|| "/".to_string(), |p| p.home.clone());
    let name = entry.map(|p| p.name.clone());
    let all_groups = groups(&read_in(stack, "/etc/group")?);
    let gid = match group {
        None | Some("") => entry.map_or(0, |p| p.gid),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => match all_groups.iter().find(|x| x.name == g) {
                Some(x) => x.gid,
                None => bail!("unable to find group {g}: no matching entries in the image's /etc/group"),
            },
        },
    };
    // As Docker: supplementary groups only when the group was not given explicitly.
    let mut additional_gids: Vec<u32> = match (&name, group) {
        (Some(n), None) => {
            all_groups.iter().filter(|g| g.members.iter().any(|m| m == n)).map(|g| g.gid).collect()
        }
        _ => Vec::new(),
    };
    additional_gids.retain(|g| *g != gid);
    additional_gids.dedup();
    Ok(ResolvedUser { uid, gid, additional_gids, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_and_group_lines() {
        let p = passwd("root:x:0:0:root:/root:/bin/sh\nbad line\napp:x:1000:100::/home/app:/bin/sh\n");
        assert_eq!(p.len(), 2);
        assert_eq!((p[1].uid, p[1].gid, p[1].home.as_str()), (1000, 100, "/home/app"));
        let g = groups("users:x:100:\nwheel:x:10:app,root\n");
        assert_eq!(g[1].members, vec!["app", "root"]);
    }
}

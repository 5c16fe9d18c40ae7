//! The store is closed to other users whatever the umask (issue 11, CVE-2021-41091 in Docker):
//! another user can reach no path in it, so a stored setuid-root binary can't be run through
//! `layers/<id>/fs`. An existing store with wide directories is narrowed on first open.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::strata::Strata;

/// Runs `args` as nobody (65534), with no supplementary groups; returns (success, stdout).
/// Through `sh`: setpriv itself may resolve the program's path before it drops root.
fn as_nobody(args: &[&str]) -> (bool, String) {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", r#"exec "$@""#, "sh"])
        .args(args)
        .output()
        .expect("setpriv (util-linux) must be installed");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A layer holding `/usr/bin/id` as a setuid-root binary (mode 4755, uid 0).
fn setuid_tar(path: &Path) {
    let id = std::fs::read("/usr/bin/id").expect("/usr/bin/id");
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_path("id").unwrap();
    h.set_mode(0o4755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(id.len() as u64);
    h.set_cksum();
    b.append(&h, &id[..]).unwrap();
    b.finish().unwrap();
}

/// Every path under the store root (found as root), deepest included.
fn all_paths(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            all_paths(&p, out);
        }
    }
}

/// Asserts that nobody can reach anything in the store and can't run the stored `id` as root.
fn assert_closed(s: &Strata, id_path: &Path) {
    let root = s.root();
    let (listed, _) = as_nobody(&["ls", root.to_str().unwrap()]);
    assert!(!listed, "another user can list the store root");
    let mut paths = Vec::new();
    all_paths(&root, &mut paths);
    assert!(paths.contains(&id_path.to_path_buf()), "{} not in the store", id_path.display());
    let mut script =
        vec!["sh", "-c", r#"for p in "$@"; do [ -e "$p" ] || [ -L "$p" ] && echo "$p"; done; true"#, "sh"];
    script.extend(paths.iter().map(|p| p.to_str().unwrap()));
    let (_, reachable) = as_nobody(&script);
    assert!(reachable.is_empty(), "another user reaches store paths:\n{reachable}");
    let (ran, out) = as_nobody(&[id_path.to_str().unwrap(), "-u"]);
    assert!(!ran && !out.contains('0'), "the stored setuid binary ran as another user: {out:?}");
}

fn world_traversable(s: &Strata) {
    // The test's temp dir is 0700; open it up so that only the store's own modes protect it.
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn layer_id_path(s: &Strata) -> PathBuf {
    let layers: Vec<_> =
        std::fs::read_dir(s.root().join("layers")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(layers.len(), 1, "{layers:?}");
    let id = layers[0].join("fs/id");
    let meta = std::fs::symlink_metadata(&id).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o4755, "the tar's setuid bit is kept in the layer");
    id
}

#[test]
fn store_made_with_umask_000_is_closed_to_other_users() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (it runs a command as nobody)");
    let s = Strata::new();
    world_traversable(&s);
    let tar = s.path("evil.tar");
    setuid_tar(&tar);
    std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cmd = s.command(&["import", tar.to_str().unwrap(), "evil:1"]);
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"umask 000; exec "$@""#)
        .arg("sh")
        .arg(program)
        .args(args)
        .env_remove("STRATA_ROOT")
        .status()
        .unwrap();
    assert!(status.success());
    let id = layer_id_path(&s);
    // Without the store's protection the repro works: prove the test can tell.
    let (ran, out) = as_nobody(&["sh", "-c", &format!("cp {} /dev/null", id.display())]);
    assert!(!ran, "nobody could read the stored binary: {out}");
    assert_closed(&s, &id);
    // A second command (and its staging) keeps everything closed.
    s.ok(&["tag", "evil:1", "evil:2"]);
    assert_closed(&s, &id);
}

#[test]
fn an_existing_wide_store_is_narrowed_on_first_open() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (it runs a command as nobody)");
    let s = Strata::new();
    world_traversable(&s);
    let tar = s.path("evil.tar");
    setuid_tar(&tar);
    s.ok(&["import", tar.to_str().unwrap(), "evil:1"]);
    let id = layer_id_path(&s);
    // What an older strata under umask 022 (or 000) left: every directory open to all.
    let mut paths = vec![s.root()];
    all_paths(&s.root(), &mut paths);
    for p in paths.iter().filter(|p| p.is_dir() && !p.is_symlink()) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let (ran, out) = as_nobody(&[id.to_str().unwrap(), "-u"]);
    assert!(ran && out.trim() == "0", "the repro should work on a wide store: {ran} {out:?}");
    // A read-only command is the first open.
    s.ok(&["images"]);
    assert_closed(&s, &id);
    let mode = std::fs::metadata(s.root()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

//! Containers through the real binary and a real FUSE mount: create/ps/rm/mount/umount, a dead
//! daemon, diff, commit round trips, reproducible layers, and a real runc container on the mount.

mod common;
#[path = "common/tar_fixtures.rs"]
mod tar_fixtures;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::images::fixture;
use common::strata::{Strata, busybox_rootfs, tar_dir};
use tar_fixtures::{SnapOpts, assert_same, snapshot_with};

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted<'a> {
    s: &'a Strata,
    at: PathBuf,
}

impl<'a> Mounted<'a> {
    fn new(s: &'a Strata, what: &str, name: &str) -> Mounted<'a> {
        require_fuse();
        let at = s.path(name);
        std::fs::create_dir_all(&at).unwrap();
        s.ok(&["mount", what, at.to_str().unwrap()]);
        Mounted { s, at }
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = self.s.run(&["umount", self.at.to_str().unwrap()]);
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// FUSE tests need /dev/fuse and root; under CI=true their absence is a failure, never a skip.
fn require_fuse() {
    assert!(common::mount::fuse_ready(), "these tests need /dev/fuse and root");
}

fn sh(dir: &Path, script: &str) {
    let st = Command::new("sh").arg("-ec").arg(script).current_dir(dir).status().unwrap();
    assert!(st.success(), "script failed in {}: {script}", dir.display());
}

fn busybox_image(s: &Strata, tag: &str) {
    let rootfs = s.path("bb-rootfs");
    if !rootfs.exists() {
        busybox_rootfs(&rootfs);
    }
    let tar = s.path("bb.tar");
    tar_dir(&rootfs, &tar, "gzip");
    s.ok(&["import", tar.to_str().unwrap(), tag]);
}

fn load_fixture(s: &Strata) {
    s.ok(&["load", "--oci", &fixture().image()]);
    s.ok(&["tag", &format!("sha256:{}", image_id(s)), "fixture:1"]);
}

fn image_id(s: &Strata) -> String {
    let ids = s.ok(&["images", "-q", "--no-trunc"]);
    ids.lines().next().unwrap().trim_start_matches("sha256:").to_string()
}

#[test]
fn create_ps_mount_umount_rm_and_rmi_protection() {
    let s = Strata::new();
    busybox_image(&s, "bb:1");
    let id = s.ok(&["create", "--name", "web", "bb:1"]).trim().to_string();
    assert_eq!(id.len(), 64);
    assert_eq!(s.ok(&["ps", "-q"]), "", "nothing mounted yet");
    assert!(s.ok(&["ps", "-a"]).contains("web"));
    let err = s.fails(&["create", "--name", "web", "bb:1"]);
    assert!(err.contains("already in use"), "{err}");
    let err = s.fails(&["rmi", "bb:1"]);
    assert!(err.contains("in use by container"), "{err}");

    let m = Mounted::new(&s, "web", "mnt");
    let ps = s.ok(&["ps"]);
    assert!(ps.contains("Mounted") && ps.contains(m.at.to_str().unwrap()), "{ps}");
    std::fs::write(m.at.join("etc/new"), "written through the mount\n").unwrap();
    let err = s.fails(&["rm", "web"]);
    assert!(err.contains("is mounted"), "{err}");
    let err = s.fails(&["mount", "web", s.path("mnt2").to_str().unwrap()]);
    assert!(err.contains("already mounted"), "{err}");
    s.ok(&["umount", "web"]);
    assert!(!common::mount::is_mounted(&m.at));
    // The write is in the writable layer after unmount.
    let upper = s.root().join("containers").join(&id).join("upper/etc/new");
    assert_eq!(std::fs::read_to_string(upper).unwrap(), "written through the mount\n");

    // rm -f unmounts first.
    let m2 = Mounted::new(&s, "web", "mnt3");
    assert_eq!(std::fs::read_to_string(m2.at.join("etc/new")).unwrap(), "written through the mount\n");
    assert_eq!(s.ok(&["rm", "-f", "web"]).trim(), "web");
    assert!(!common::mount::is_mounted(&m2.at));
    assert!(!s.root().join("containers").join(&id).exists());
    s.ok(&["rmi", "bb:1"]);
}

#[test]
fn image_mounts_are_read_only_and_block_rmi() {
    let s = Strata::new();
    busybox_image(&s, "bb:1");
    let m = Mounted::new(&s, "bb:1", "ro");
    assert_eq!(std::fs::read_to_string(m.at.join("etc/motd")).unwrap(), "hello from strata\n");
    let err = std::fs::write(m.at.join("etc/x"), "no").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = s.fails(&["rmi", "bb:1"]);
    assert!(err.contains("in use by the mount"), "{err}");
    s.ok(&["umount", m.at.to_str().unwrap()]);
    assert!(!common::mount::is_mounted(&m.at));
    s.ok(&["rmi", "bb:1"]);
}

#[test]
fn a_killed_daemon_leaves_the_writable_layer_and_umount_clears_it() {
    let s = Strata::new();
    busybox_image(&s, "bb:1");
    let id = s.ok(&["create", "--name", "victim", "bb:1"]).trim().to_string();
    let m = Mounted::new(&s, "victim", "mnt");
    std::fs::write(m.at.join("kept"), "data").unwrap();
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.root().join("containers").join(&id).join("mount.json")).unwrap(),
    )
    .unwrap();
    let pid = record["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ps = s.ok(&["ps", "-a"]);
    assert!(ps.contains("Dead"), "{ps}");
    assert_eq!(
        std::fs::read_to_string(s.root().join("containers").join(&id).join("upper/kept")).unwrap(),
        "data"
    );
    s.ok(&["umount", "victim"]);
    assert!(!common::mount::is_mounted(&m.at));
    assert!(s.ok(&["ps", "-a"]).contains("Created"));
    // And it mounts again with its data.
    let m2 = Mounted::new(&s, "victim", "again");
    assert_eq!(std::fs::read_to_string(m2.at.join("kept")).unwrap(), "data");
}

/// Every kind of change the issue lists, applied through the mount.
const CHANGES: &[&str] = &[
    "echo new > new-file && ln new-file new-file-hard", // new file and a new hard link to it
    "echo more >> etc/hello",                           // modify a hard-linked lower file
    "rm new.txt",                                       // delete a lower file
    "rm -rf deep && mkdir -p deep/again && echo x > deep/again/x", // delete and recreate a dir
    "mv opq renamed-opq",                               // rename a lower directory
    "chmod 600 etc/changed",                            // chmod only
    "chown 5:6 bin/sgid",                               // chown only
    "setfattr -n user.added -v 1 etc/hello && setfattr -x user.dir etc", // xattrs
    "ln bin/random bin/random-hard",                    // new hard link to a lower file
    "ln -s /etc/hello abs-link",                        // symlink
    "mkfifo pipe",                                      // fifo
    "mknod dev-null c 1 3",                             // device
    "echo s > suid && chmod 4755 suid",                 // setuid
];

/// Directory mtimes change with every entry made in them; the round trip keeps them, but they are
/// compared only where the test controls them.
fn tree(p: &Path) -> std::collections::BTreeMap<String, tar_fixtures::Info> {
    snapshot_with(p, &SnapOpts { mtimes: true, dir_mtimes: false })
}

#[test]
fn commit_round_trip_gives_the_same_merged_tree() {
    let s = Strata::new();
    load_fixture(&s);
    s.ok(&["create", "--name", "c", "fixture:1"]);
    let before;
    {
        let m = Mounted::new(&s, "c", "work");
        for c in CHANGES {
            sh(&m.at, c);
        }
        before = tree(&m.at);
        // Committing while mounted: everything written before the command is in the layer.
        s.ok(&["commit", "-m", "all kinds", "-a", "Tester <t@example.com>", "c", "committed:1"]);
    }
    let diff = s.ok(&["diff", "c"]);
    for want in [
        "A /new-file",
        "C /etc/hello",
        "D /new.txt",
        "C /deep",
        "D /deep/a",
        "A /deep/again",
        "D /opq",
        "A /renamed-opq",
        "C /etc/changed",
        "A /pipe",
    ] {
        assert!(diff.lines().any(|l| l == want), "missing {want:?} in diff:\n{diff}");
    }
    let mut sorted: Vec<&str> = diff.lines().collect();
    sorted.sort_by(|a, b| a.as_bytes()[2..].cmp(&b.as_bytes()[2..]));
    assert_eq!(sorted, diff.lines().collect::<Vec<_>>(), "sorted by path");

    let fresh = Mounted::new(&s, "committed:1", "fresh");
    assert_same(&before, &tree(&fresh.at));
    drop(fresh);

    let hist = s.ok(&["history", "committed:1"]);
    assert!(hist.lines().nth(1).unwrap().contains("all kinds"), "{hist}");
    let inspect: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", "committed:1"])).unwrap();
    assert_eq!(inspect[0]["Author"], "Tester <t@example.com>");
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 4);

    // The committed image as an OCI archive: skopeo accepts it, umoci unpacks the same tree.
    let archive = s.path("committed.oci.tar");
    s.ok(&["save", "--format", "oci-archive", "-o", archive.to_str().unwrap(), "committed:1"]);
    let out = Command::new("skopeo")
        .args(["inspect", &format!("oci-archive:{}", archive.display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let layout = s.path("layout");
    s.ok(&["save", "--format", "oci-dir", "-o", layout.to_str().unwrap(), "committed:1"]);
    let bundle = s.path("bundle");
    let st = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:1", layout.display())])
        .arg(&bundle)
        .status()
        .unwrap();
    assert!(st.success());
    assert_same(&before, &tree(&bundle.join("rootfs")));
    // The upper's whiteouts are hard links of one file; the layer has them as plain entries.
    let mut listing = String::new();
    for blob in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let out = Command::new("tar").arg("-tvf").arg(blob.unwrap().path()).output().unwrap();
        listing.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let whiteouts: Vec<&str> = listing.lines().filter(|l| l.contains(".wh.")).collect();
    for name in [" .wh.new.txt", " .wh.opq"] {
        assert!(whiteouts.iter().any(|l| l.ends_with(name)), "no {name} in\n{listing}");
    }
    assert!(whiteouts.iter().all(|l| l.starts_with('-') && !l.contains(" link to ")), "{whiteouts:?}");

    // The container goes on and commits again; like Docker, a container keeps its image, so the
    // second commit is the image plus one layer holding every change so far.
    let m = Mounted::new(&s, "c", "work2");
    std::fs::write(m.at.join("second"), "2").unwrap();
    let after = tree(&m.at);
    drop(m);
    s.ok(&["commit", "-m", "second", "c", "committed:2"]);
    let h2 = s.ok(&["history", "committed:2"]);
    assert_eq!(h2.lines().count(), 5, "header + 3 fixture layers + the commit:\n{h2}");
    assert!(h2.lines().nth(1).unwrap().ends_with("second"), "{h2}");
    let fresh = Mounted::new(&s, "committed:2", "fresh2");
    assert_same(&after, &tree(&fresh.at));
}

#[test]
fn the_same_changes_in_another_order_give_the_same_layer() {
    let s = Strata::new();
    load_fixture(&s);
    let mut ids = Vec::new();
    for (name, order) in [("fwd", CHANGES.to_vec()), ("rev", CHANGES.iter().rev().copied().collect())] {
        s.ok(&["create", "--name", name, "fixture:1"]);
        {
            let m = Mounted::new(&s, name, &format!("m-{name}"));
            for c in order {
                sh(&m.at, c);
            }
        }
        let mut cmd = s.command(&["commit", "-m", "same", name, &format!("repro:{name}")]);
        let out = cmd.env("SOURCE_DATE_EPOCH", "1700000000").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        ids.push(String::from_utf8(out.stdout).unwrap());
    }
    let layers = |tag: &str| {
        let v: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", tag])).unwrap();
        v[0]["RootFS"]["Layers"].clone()
    };
    assert_eq!(layers("repro:fwd"), layers("repro:rev"), "same diff_ids");
    assert_eq!(ids[0], ids[1], "same image id with SOURCE_DATE_EPOCH");
}

#[test]
fn runc_runs_a_container_on_the_mount() {
    let s = Strata::new();
    busybox_image(&s, "bb:1");
    let id = s.ok(&["create", "--name", "run", "bb:1"]).trim().to_string();
    let bundle = s.path("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let m = Mounted::new(&s, "run", "bundle/rootfs");
    let st = Command::new("runc").args(["spec", "--bundle"]).arg(&bundle).status().unwrap();
    assert!(st.success());
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["process"]["terminal"] = false.into();
    cfg["process"]["args"] =
        serde_json::json!(["/bin/sh", "-c", "echo made-by-runc > /created && rm /etc/motd"]);
    cfg["root"]["path"] = m.at.to_str().unwrap().into();
    cfg["root"]["readonly"] = false.into();
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let name = format!("strata-test-{}", &id[..12]);
    let out = Command::new("runc").args(["run", "--bundle"]).arg(&bundle).arg(&name).output().unwrap();
    let _ = Command::new("runc").args(["delete", "-f", &name]).status();
    assert!(
        out.status.success(),
        "runc failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(m);
    let upper = s.root().join("containers").join(&id).join("upper");
    assert_eq!(std::fs::read_to_string(upper.join("created")).unwrap(), "made-by-runc\n");
    assert!(upper.join("etc/.wh.motd").exists(), "deletion recorded as a whiteout");
    let diff = s.ok(&["diff", "run"]);
    assert!(diff.contains("A /created") && diff.contains("D /etc/motd"), "{diff}");
}

#[test]
fn commit_of_a_mounted_container_includes_unsynced_mmap_writes() {
    let s = Strata::new();
    busybox_image(&s, "bb:1");
    s.ok(&["create", "--name", "mm", "bb:1"]);
    let m = Mounted::new(&s, "mm", "mnt");
    let file = m.at.join("etc/motd");
    // Keep a shared writable mapping dirty (no msync) while committing.
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(
            "import mmap,sys,time\nf=open(sys.argv[1],'r+b')\nm=mmap.mmap(f.fileno(),0)\nm[0:5]=b'HELLO'\n\
             print('dirty',flush=True)\ntime.sleep(30)",
        )
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line)
        .unwrap();
    assert_eq!(line.trim(), "dirty");
    s.ok(&["commit", "mm", "mm:1"]);
    let _ = child.kill();
    let _ = child.wait();
    drop(m);
    let fresh = Mounted::new(&s, "mm:1", "fresh");
    assert_eq!(std::fs::read_to_string(fresh.at.join("etc/motd")).unwrap(), "HELLO from strata\n");
}

#[test]
fn rm_f_of_a_mounted_container_waits_for_its_daemon_without_the_store_lock() {
    let s = Strata::new();
    busybox_image(&s, "bb:1");
    let id = s.ok(&["create", "--name", "m", "bb:1"]).trim().to_string();
    let m = Mounted::new(&s, "m", "mnt");
    std::fs::write(m.at.join("written"), "data").unwrap();
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.root().join("containers").join(&id).join("mount.json")).unwrap(),
    )
    .unwrap();
    let daemon = nix::unistd::Pid::from_raw(record["pid"].as_i64().unwrap() as i32);
    // A daemon slow to write everything and exit: stopped, it can't exit at all.
    nix::sys::signal::kill(daemon, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let resume = || nix::sys::signal::kill(daemon, nix::sys::signal::Signal::SIGCONT);
    let mut rm = s.command(&["rm", "-f", "m"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    common::run::eventually("the unmount", || !common::mount::is_mounted(&m.at));
    // Meanwhile other commands take the store: `ps` answers while rm still waits.
    let mut ps = s.command(&["ps", "-a", "-q"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let start = std::time::Instant::now();
    let answered = loop {
        if ps.try_wait().unwrap().is_some() {
            break true;
        }
        if start.elapsed() > std::time::Duration::from_secs(5) {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let still_waiting = rm.try_wait().unwrap().is_none();
    resume().unwrap();
    if !answered {
        let _ = ps.kill();
    }
    assert!(answered, "ps waited for the store lock rm -f held while its daemon was stopped");
    assert!(still_waiting, "rm -f did not wait for the stopped daemon");
    // Once the daemon has exited, the container is gone.
    let out = rm.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "m\n");
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    assert!(!s.root().join("containers").join(&id).exists());
}

//! `strata system check [--repair]` and the work a killed writer leaves to the next one
//! (issue 11 items 3 and 4).

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use common::images::{Member, config_for, docker_archive, oci_layout, sha256_hex, tar_of};
use common::strata::{Strata, store_with_image};

fn check(s: &Strata, args: &[&str]) -> (bool, String) {
    let mut all = vec!["system", "check"];
    all.extend(args);
    let out = s.run(&all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.is_empty(), "system check printed nothing: {}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn blobs(s: &Strata) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(s.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn layer_dirs(s: &Strata) -> Vec<PathBuf> {
    std::fs::read_dir(s.root().join("layers")).unwrap().map(|e| e.unwrap().path()).collect()
}

#[test]
fn check_finds_damage_and_repair_rederives_and_removes() {
    let s = Strata::new();
    store_with_image(&s);
    let (ok, out) = check(&s, &[]);
    assert!(ok && out.contains("The store is sound."), "{out}");

    // A second image whose tree lost a file (imported first: a writer collects garbage).
    let other = s.path("other");
    std::fs::create_dir_all(other.join("d")).unwrap();
    std::fs::write(other.join("d/kept"), "k").unwrap();
    std::fs::write(other.join("d/lost"), "gone soon").unwrap();
    let other_tar = s.path("other.tar");
    common::strata::tar_dir(&other, &other_tar, "gzip");
    s.ok(&["import", other_tar.to_str().unwrap(), "other:1"]);
    let damaged = layer_dirs(&s).into_iter().find(|l| l.join("fs/d/lost").exists()).unwrap();
    std::fs::remove_file(damaged.join("fs/d/lost")).unwrap();
    // A lost layer tree, an unreferenced blob, a dangling tag.
    let layer = layer_dirs(&s).into_iter().find(|l| l.join("fs/etc/motd").exists()).unwrap();
    std::fs::remove_dir_all(layer.join("fs")).unwrap();
    let orphan = b"nobody uses me";
    std::fs::write(s.root().join("blobs/sha256").join(sha256_hex(orphan)), orphan).unwrap();
    let tags_path = s.root().join("images/tags.json");
    let mut tags: serde_json::Value = serde_json::from_slice(&std::fs::read(&tags_path).unwrap()).unwrap();
    tags["docker.io/library/ghost:1"] = format!("sha256:{}", "ab".repeat(32)).into();
    std::fs::write(&tags_path, serde_json::to_vec(&tags).unwrap()).unwrap();
    // A corrupt blob nobody needs.
    std::fs::write(s.root().join("blobs/sha256").join("cd".repeat(32)), b"junk").unwrap();

    let (ok, out) = check(&s, &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("its tree (fs/) is missing"), "{out}");
    assert!(out.contains("ghost:1") && out.contains("which is missing"), "{out}");
    assert!(out.contains(&sha256_hex(orphan)) && out.contains("14B"), "{out}");
    assert!(out.contains(&format!("blob sha256:{}: corrupt", "cd".repeat(32))), "{out}");
    assert!(out.contains("bytes of files") && out.contains("when stored"), "{out}");

    let (ok, out) = check(&s, &["--repair"]);
    assert!(ok, "{out}");
    assert!(out.contains("unpacked again from blob"), "{out}");
    assert_eq!(std::fs::read_to_string(layer.join("fs/etc/motd")).unwrap(), "hello\n");
    assert_eq!(std::fs::read_to_string(damaged.join("fs/d/lost")).unwrap(), "gone soon");
    assert!(!s.root().join("blobs/sha256").join(sha256_hex(orphan)).exists());
    let (ok, out) = check(&s, &[]);
    assert!(ok && !out.contains("Errors") && !out.contains("Leftovers"), "{out}");
    let mut names: Vec<String> =
        s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).lines().map(String::from).collect();
    names.sort();
    assert_eq!(names, ["foo:1", "other:1"]);
}

#[test]
fn a_killed_writers_garbage_is_collected_by_the_next_writer() {
    let s = Strata::new();
    store_with_image(&s);
    let before = blobs(&s);
    // What a kill between storing a layer and recording its image leaves: an unreferenced blob
    // and the mark written before it was staged.
    let orphan = b"half an import";
    std::fs::write(s.root().join("blobs/sha256").join(sha256_hex(orphan)), orphan).unwrap();
    std::fs::write(s.root().join("tmp/gc-pending"), b"").unwrap();
    let (ok, out) = check(&s, &[]);
    assert!(ok && out.contains("next writer removes"), "{out}");
    s.ok(&["tag", "foo:1", "foo:2"]);
    assert_eq!(blobs(&s), before);
    let (ok, out) = check(&s, &[]);
    assert!(ok && !out.contains("Leftovers"), "{out}");
}

#[test]
fn a_killed_rmi_is_finished_by_its_retry() {
    let s = Strata::new();
    let id = store_with_image(&s);
    s.ok(&["tag", "foo:1", "bar:1"]);
    // The state a kill leaves right after the record went: the intent, the tags, the blobs.
    let intent = serde_json::json!({
        "id": format!("sha256:{id}"),
        "tags": ["docker.io/library/bar:1", "docker.io/library/foo:1"],
        "repo_digests": [],
    });
    std::fs::write(s.root().join("tmp/removing.json"), serde_json::to_vec(&intent).unwrap()).unwrap();
    std::fs::remove_file(s.root().join(format!("images/{id}.json"))).unwrap();
    let (ok, out) = check(&s, &[]);
    assert!(out.contains("interrupted rmi"), "{out}");
    let _ = ok;
    let out = s.ok(&["rmi", "foo:1"]);
    assert!(out.contains("Untagged: foo:1") && out.contains(&format!("Deleted: sha256:{id}")), "{out}");
    assert!(blobs(&s).is_empty(), "{:?}", blobs(&s));
    assert!(layer_dirs(&s).is_empty());
    let (ok, out) = check(&s, &[]);
    assert!(ok && !out.contains("Leftovers"), "{out}");
}

#[test]
fn reloading_an_image_with_another_manifest_leaves_no_old_manifest() {
    let s = Strata::new();
    let layer = tar_of(&[Member::File("a", b"1")]);
    let config = config_for(std::slice::from_ref(&layer));
    let archive = s.path("img.tar");
    docker_archive(&archive, std::slice::from_ref(&layer), Some(config.clone()), &["re:1"]);
    s.ok(&["load", "-i", archive.to_str().unwrap()]);
    let first = blobs(&s);
    let layout = s.path("layout");
    oci_layout(&layout, std::slice::from_ref(&layer), Some(config.clone()), "1", |m| {
        m["annotations"] = serde_json::json!({"org.example": "another manifest"});
    });
    s.ok(&["load", "--oci", layout.to_str().unwrap()]);
    let second = blobs(&s);
    assert_ne!(first, second, "the second load brings another manifest");
    assert_eq!(second.len(), 3, "config, layer and one manifest: {second:?} (first load: {first:?})");
    let (ok, out) = check(&s, &[]);
    assert!(ok && !out.contains("Leftovers"), "{out}");
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted<'a>(&'a Strata, PathBuf);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["umount", self.1.to_str().unwrap()]);
        if common::mount::is_mounted(&self.1) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.1).status();
        }
    }
}

#[test]
fn containers_runtime_state_build_cache_and_mounts_are_not_damage() {
    // `run` and `build` need a runtime and FUSE; under CI=true their absence fails (runtime_ready).
    if !common::run::runtime_ready("runc") {
        return;
    }
    assert!(common::mount::fuse_ready(), "this test needs /dev/fuse and root");
    let s = Strata::new();
    let _c = common::run::Cleanup(&s);
    common::run::busybox_image(&s, "bb:1", &[]);
    s.ok(&["create", "--name", "made", "bb:1", "true"]);
    let id = common::run::run_code(&s, &["run", "-d", "--name", "up", "bb:1", "sleep", "100"], 0);
    let id = id.trim().to_string();
    common::run::run_code(&s, &["run", "--name", "done", "bb:1", "true"], 0);
    let ctx = common::build::context(
        &s,
        "ctx",
        &[(
            "Dockerfile",
            "FROM bb:1\nRUN --mount=type=cache,target=/c echo hi > /c/x && echo built > /built\n",
        )],
    );
    common::build::build_ok(&s, &["-t", "built:1", ctx.to_str().unwrap()]);
    let at = s.path("mnt");
    std::fs::create_dir_all(&at).unwrap();
    s.ok(&["mount", "made", at.to_str().unwrap()]);
    let _m = Mounted(&s, at.clone());

    // What these commands leave must be there, or this test checks nothing.
    let root = s.root();
    for p in ["runtime/runc", "builder/cache", "builder/mounts"] {
        assert!(root.join(p).is_dir(), "{p} is missing: the layout changed under this test");
    }
    let dir = root.join("containers").join(&id);
    for f in ["rootfs", "config.json", "hosts", "hostname", "resolv.conf", "log", "state.json"] {
        assert!(dir.join(f).exists(), "containers/<id>/{f} is missing: the layout changed under this test");
    }
    let (ok, out) = check(&s, &[]);
    assert!(ok && out.contains("The store is sound."), "{out}");
    assert!(!out.contains("Leftovers") && !out.contains("Errors"), "{out}");
    assert!(out.contains("3 containers") && out.contains("2 mounts"), "{out}");

    // A monitor killed with -9: the container is Dead, which is a state, not damage.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    let pid = state["monitor_pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    common::run::eventually("the monitor gone", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |st| st.contains(") Z"))
    });
    assert!(s.ok(&["ps", "-a"]).contains("Dead"));
    let (ok, out) = check(&s, &[]);
    assert!(ok && out.contains("The store is sound."), "{out}");
    assert!(!out.contains("Errors"), "{out}");
    assert!(out.contains("Dead containers") && out.contains(&format!("up ({})", &id[..12])), "{out}");
}

#[test]
fn a_0_0_device_in_a_layer_tree_is_only_a_long_name_whiteout() {
    // A layer deleting a 252-byte name: unpack can only write that whiteout as a 0/0 device.
    let long = "x".repeat(252);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    };
    add("d/", tar::EntryType::Directory, 0o755);
    add("d/empty", tar::EntryType::Regular, 0o644);
    add(&format!("d/.wh.{long}"), tar::EntryType::Regular, 0o644);
    let layer = b.into_inner().unwrap();
    let s = Strata::new();
    let archive = s.path("img.tar");
    docker_archive(&archive, &[layer], None, &["wh:1"]);
    s.ok(&["load", "-i", archive.to_str().unwrap()]);
    let fs = layer_dirs(&s).into_iter().find(|l| l.join("fs/d/empty").exists()).unwrap().join("fs");
    let device = std::fs::symlink_metadata(fs.join("d").join(&long)).unwrap();
    assert!(device.file_type().is_char_device() && device.rdev() == 0, "{device:?}");
    let (ok, out) = check(&s, &[]);
    assert!(ok && !out.contains("Errors"), "{out}");

    // The same device under a short name (in place of an empty file: names and bytes still
    // match the record) hides a lower file by accident: damage, re-derived by --repair.
    std::fs::remove_file(fs.join("d/empty")).unwrap();
    nix::sys::stat::mknod(
        &fs.join("d/empty"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        0,
    )
    .unwrap();
    let (ok, out) = check(&s, &[]);
    assert!(!ok && out.contains("/d/empty is a character device 0/0"), "{out}");
    let (ok, out) = check(&s, &["--repair"]);
    assert!(ok && out.contains("unpacked again from blob"), "{out}");
    assert!(std::fs::symlink_metadata(fs.join("d/empty")).unwrap().is_file());
    let (ok, out) = check(&s, &[]);
    assert!(ok && !out.contains("Errors"), "{out}");
}

/// A layer's record of its directories (`layers/<id>/names`, which a mount trusts instead of
/// reading the tree) that disagrees with its sound tree is damage: `check` names it and
/// `--repair` writes it again from the tree.
#[test]
fn a_layer_record_that_disagrees_with_its_tree_is_damage() {
    let s = Strata::new();
    store_with_image(&s);
    let layer = layer_dirs(&s).into_iter().find(|l| l.join("fs/etc/motd").exists()).unwrap();
    let record = layer.join("names");
    let good = std::fs::read(&record).expect("a stored layer has its record");
    // `motd` recorded as a whiteout instead of a file: a mount would hide it, and /etc/motd below.
    // Each name: its type (S_IFMT >> 12, 0 for a whiteout), inode number, length and bytes.
    let at = good.windows(6).position(|w| w == b"\x04\x00motd").expect("motd in the record") - 9;
    assert_eq!(good[at], (libc::S_IFREG >> 12) as u8);
    let mut bad = good.clone();
    bad[at] = 0;
    std::fs::write(&record, &bad).unwrap();
    let (ok, out) = check(&s, &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("its record of names (names) is not what its tree holds"), "{out}");
    let (ok, out) = check(&s, &["--repair"]);
    assert!(ok && out.contains("written again from the tree"), "{out}");
    assert_eq!(std::fs::read(&record).unwrap(), good);
    let (ok, out) = check(&s, &[]);
    assert!(ok && out.contains("The store is sound."), "{out}");
}

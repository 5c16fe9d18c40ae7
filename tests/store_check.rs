//! `strata system check [--repair]` and the work a killed writer leaves to the next one
//! (issue 11 items 3 and 4).

mod common;

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

//! A damaged store (someone edited or lost files under `--root`) gives a one-line error naming what
//! is wrong, never a panic, and a failing command leaves the store as it was.

mod common;

use std::path::PathBuf;

use common::images::sha256_hex;
use common::strata::{Strata, store_with_image};

/// Fails with exactly one `strata: error:` line that contains every `needles`.
fn fails_naming(s: &Strata, args: &[&str], needles: &[&str]) -> String {
    let err = s.fails(args);
    assert!(err.starts_with("strata: error: "), "strata {args:?}: {err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "strata {args:?}: one line expected, got {err:?}");
    for n in needles {
        assert!(err.contains(n), "strata {args:?}: {n:?} expected in {err:?}");
    }
    err
}

fn config_blob(s: &Strata, id: &str) -> PathBuf {
    s.root().join("blobs/sha256").join(id)
}

/// Gives image `id` the config `bytes`, consistently: the blob named by its digest, the image record
/// and tags moved to the new id (as if such an image had been loaded). Returns the new id.
fn replace_config(s: &Strata, id: &str, bytes: &[u8]) -> String {
    let new = sha256_hex(bytes);
    std::fs::write(config_blob(s, &new), bytes).unwrap();
    let images = s.root().join("images");
    let record = std::fs::read_to_string(images.join(format!("{id}.json"))).unwrap();
    std::fs::write(images.join(format!("{new}.json")), record.replace(id, &new)).unwrap();
    std::fs::remove_file(images.join(format!("{id}.json"))).unwrap();
    let tags = std::fs::read_to_string(images.join("tags.json")).unwrap();
    std::fs::write(images.join("tags.json"), tags.replace(id, &new)).unwrap();
    new
}

fn layer_dirs(s: &Strata) -> Vec<PathBuf> {
    std::fs::read_dir(s.root().join("layers")).unwrap().map(|e| e.unwrap().path()).collect()
}

#[test]
fn corrupt_tag_file_is_named_and_nothing_changes() {
    let s = Strata::new();
    let id = store_with_image(&s);
    std::fs::write(s.root().join("images/tags.json"), "{\"docker.io/library/foo:1\": ").unwrap();
    let before = s.snapshot();
    for args in [
        vec!["images"],
        vec!["tag", &id, "bar:2"],
        vec!["rmi", "foo:1"],
        vec!["rmi", &id],
        vec!["inspect", "foo:1"],
        vec!["history", "foo:1"],
        vec!["image", "prune", "-a", "-f"],
    ] {
        fails_naming(&s, &args, &["images/tags.json"]);
        assert_eq!(s.snapshot(), before, "strata {args:?} changed the store");
    }
}

#[test]
fn dangling_tag_is_named() {
    let s = Strata::new();
    store_with_image(&s);
    let missing = "b".repeat(64);
    let tags = format!("{{\"docker.io/library/foo:1\": \"sha256:{missing}\"}}");
    std::fs::write(s.root().join("images/tags.json"), tags).unwrap();
    let before = s.snapshot();
    for cmd in ["inspect", "history", "create"] {
        fails_naming(&s, &[cmd, "foo:1"], &["docker.io/library/foo:1", &missing]);
    }
    assert_eq!(s.snapshot(), before);
    // rmi is the way out: it removes the dangling tag and nothing else.
    assert_eq!(s.ok(&["rmi", "foo:1"]).trim(), "Untagged: foo:1");
    let tags: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.root().join("images/tags.json")).unwrap()).unwrap();
    assert_eq!(tags, serde_json::json!({}));
    assert_eq!(s.ok(&["images", "-q"]).lines().count(), 1, "the real image is untouched");
}

#[test]
fn image_record_naming_another_image_is_corrupt() {
    let s = Strata::new();
    let id = store_with_image(&s);
    let record = s.root().join("images").join(format!("{id}.json"));
    let text = std::fs::read_to_string(&record).unwrap();
    let other = "c".repeat(64);
    std::fs::write(
        &record,
        text.replace(&format!("\"id\": \"sha256:{id}\""), &format!("\"id\": \"sha256:{other}\"")),
    )
    .unwrap();
    let before = s.snapshot();
    for args in [vec!["images"], vec!["rmi", "foo:1"], vec!["inspect", &id]] {
        fails_naming(&s, &args, &[&format!("{id}.json"), &other]);
    }
    assert_eq!(s.snapshot(), before);
}

#[test]
fn image_record_that_is_not_json_is_named() {
    let s = Strata::new();
    let id = store_with_image(&s);
    std::fs::write(s.root().join("images").join(format!("{id}.json")), b"\xff\x00 not json").unwrap();
    let before = s.snapshot();
    fails_naming(&s, &["images"], &[&format!("{id}.json"), "corrupt"]);
    fails_naming(&s, &["rmi", "foo:1"], &[&format!("{id}.json")]);
    assert_eq!(s.snapshot(), before);
}

#[test]
fn image_with_a_missing_layer_cannot_be_used_but_can_be_listed() {
    let s = Strata::new();
    let id = store_with_image(&s);
    let container = s.ok(&["create", "foo:1"]).trim().to_string();
    for dir in layer_dirs(&s) {
        std::fs::remove_dir_all(dir).unwrap();
    }
    let before = s.snapshot();
    let listing = s.ok(&["images"]);
    assert!(listing.contains(&id[..12]), "{listing}");
    s.ok(&["history", "foo:1"]);
    s.ok(&["inspect", "foo:1"]);
    fails_naming(&s, &["create", "foo:1"], &[&id[..12], "missing"]);
    fails_naming(&s, &["save", "-o", s.path("out.tar").to_str().unwrap(), "foo:1"], &["missing"]);
    assert_eq!(s.snapshot(), before);
    // Commit packs the upper first: only images/ and containers/ are compared.
    fails_naming(&s, &["commit", &container, "bar:1"], &[&id[..12], "missing"]);
    assert_eq!(records(&s), records_of(&before));
}

/// The image and container records of a snapshot: what a failing commit must not touch.
fn records_of(snap: &std::collections::BTreeMap<PathBuf, (u32, u64)>) -> Vec<PathBuf> {
    snap.keys().filter(|p| p.starts_with("images") || p.starts_with("containers")).cloned().collect()
}

fn records(s: &Strata) -> Vec<PathBuf> {
    records_of(&s.snapshot())
}

#[test]
fn config_changed_in_place_is_named_as_corrupt() {
    let s = Strata::new();
    let id = store_with_image(&s);
    let container = s.ok(&["create", "foo:1"]).trim().to_string();
    std::fs::write(config_blob(&s, &id), "{}").unwrap();
    let before = s.snapshot();
    for args in [vec!["inspect", "foo:1"], vec!["history", "foo:1"]] {
        fails_naming(&s, &args, &[&id, "corrupt in the store"]);
    }
    fails_naming(&s, &["save", "-o", s.path("out.tar").to_str().unwrap(), "foo:1"], &[&id, "corrupt"]);
    assert_eq!(s.snapshot(), before);
    fails_naming(&s, &["commit", &container, "bar:1"], &[&id, "corrupt in the store"]);
    assert_eq!(records(&s), records_of(&before));
}

#[test]
fn config_that_is_not_json_is_named() {
    let s = Strata::new();
    let old = store_with_image(&s);
    let container = s.ok(&["create", "foo:1"]).trim().to_string();
    let id = replace_config(&s, &old, b"this is not json");
    std::fs::rename(s.root().join("containers").join(&container).join("meta.json"), s.path("meta")).unwrap();
    let meta = std::fs::read_to_string(s.path("meta")).unwrap().replace(&old, &id);
    std::fs::write(s.root().join("containers").join(&container).join("meta.json"), meta).unwrap();
    let before = s.snapshot();
    for args in [vec!["inspect", "foo:1"], vec!["history", "foo:1"]] {
        fails_naming(&s, &args, &[&id[..12], "corrupt config"]);
    }
    assert_eq!(s.snapshot(), before);
    fails_naming(&s, &["commit", &container, "bar:1"], &[&id[..12], "corrupt config"]);
    assert_eq!(records(&s), records_of(&before));
}

#[test]
fn config_that_is_not_an_object_or_lacks_rootfs_cannot_be_extended() {
    for (config, problem) in [("[1, 2]", "not a JSON object"), ("{\"os\": \"linux\"}", "rootfs.diff_ids")] {
        let s = Strata::new();
        let old = store_with_image(&s);
        let id = replace_config(&s, &old, config.as_bytes());
        let before = s.snapshot();
        // Reading is lenient: fields that are not there are shown empty.
        s.ok(&["inspect", "foo:1"]);
        s.ok(&["history", "foo:1"]);
        s.ok(&["images"]);
        assert_eq!(s.snapshot(), before);
        // Extending such a config (it once panicked) is an error naming the image.
        let container = s.ok(&["create", "foo:1"]).trim().to_string();
        let before = s.snapshot();
        fails_naming(&s, &["commit", &container, "bar:1"], &[&id[..12], problem]);
        assert_eq!(records(&s), records_of(&before));
    }
}

#[test]
fn config_whose_diff_ids_disagree_with_the_layers_cannot_be_extended() {
    let s = Strata::new();
    let old = store_with_image(&s);
    let config = format!(
        "{{\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"sha256:{0}\",\"sha256:{0}\"]}}}}",
        "d".repeat(64)
    );
    let id = replace_config(&s, &old, config.as_bytes());
    let container = s.ok(&["create", "foo:1"]).trim().to_string();
    let before = s.snapshot();
    fails_naming(&s, &["commit", &container, "bar:1"], &[&id[..12], "2 diff_ids", "1 layers"]);
    assert_eq!(records(&s), records_of(&before));
}

#[test]
fn history_entries_of_the_wrong_type_do_not_break_history_or_inspect() {
    let s = Strata::new();
    let id = store_with_image(&s);
    let layer = s.ok(&["inspect", "--", "foo:1"]);
    let diff_id = serde_json::from_str::<serde_json::Value>(&layer).unwrap()[0]["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()
        .to_string();
    let config = serde_json::json!({
        "os": "linux",
        "created": 12,
        "author": ["x"],
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [1, "x", null, {"created": 5, "created_by": [], "empty_layer": "yes", "comment": {}}],
    });
    replace_config(&s, &id, config.to_string().as_bytes());
    let history = s.ok(&["history", "foo:1"]);
    assert!(history.contains("<missing>"), "{history}");
    s.ok(&["history", "--no-trunc", "-q", "foo:1"]);
    s.ok(&["inspect", "foo:1"]);
    s.ok(&["images", "--format", "{{.ID}} {{.CreatedAt}}"]);
}

#[test]
fn container_record_with_a_short_id_is_named_not_a_panic() {
    let s = Strata::new();
    store_with_image(&s);
    let id = s.ok(&["create", "--name", "box", "foo:1"]).trim().to_string();
    let meta = s.root().join("containers").join(&id).join("meta.json");
    let mut rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    rec["id"] = "abc".into();
    std::fs::write(&meta, rec.to_string()).unwrap();
    let before = s.snapshot();
    for args in [vec!["ps", "-a"], vec!["system", "df", "-v"], vec!["rm", "box"], vec!["rmi", "foo:1"]] {
        fails_naming(&s, &args, &[&format!("{id}/meta.json"), "\"abc\""]);
    }
    assert_eq!(s.snapshot(), before);
}

#[test]
fn container_record_that_is_not_json_is_named() {
    let s = Strata::new();
    store_with_image(&s);
    let id = s.ok(&["create", "foo:1"]).trim().to_string();
    std::fs::write(s.root().join("containers").join(&id).join("meta.json"), "{").unwrap();
    let before = s.snapshot();
    fails_naming(&s, &["ps", "-a"], &[&format!("{id}/meta.json"), "corrupt"]);
    assert_eq!(s.snapshot(), before);
}

#[test]
fn a_mount_record_a_crash_left_unreadable_counts_as_not_mounted() {
    let s = Strata::new();
    store_with_image(&s);
    let id = s.ok(&["create", "--name", "box", "foo:1"]).trim().to_string();
    // Mount records are written without fsync: after a crash one may be empty.
    std::fs::write(s.root().join("containers").join(&id).join("mount.json"), "").unwrap();
    let ps = s.ok(&["ps", "-a"]);
    assert!(ps.contains("box") && !ps.contains("Dead"), "{ps}");
    let err = s.fails(&["umount", "box"]);
    assert!(err.contains("not mounted"), "{err}");
    s.ok(&["rm", "box"]);
}

#[test]
fn oci_layout_whose_manifest_and_config_disagree_on_layer_count_loads_nothing() {
    let s = Strata::new();
    store_with_image(&s);
    let layout = s.path("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (hex, bytes.len())
    };
    let (layer, layer_size) = put(&std::fs::read(s.path("rootfs.tar")).unwrap());
    let config = format!(
        "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"sha256:{layer}\",\"sha256:{layer}\"]}}}}"
    );
    let (config, config_size) = put(config.as_bytes());
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
         \"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:{config}\",\"size\":{config_size}}},\
         \"layers\":[{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:{layer}\",\"size\":{layer_size}}}]}}"
    );
    let (manifest, manifest_size) = put(manifest.as_bytes());
    let index = format!(
        "{{\"schemaVersion\":2,\"manifests\":[{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
         \"digest\":\"sha256:{manifest}\",\"size\":{manifest_size},\"annotations\":{{\"org.opencontainers.image.ref.name\":\"x\"}}}}]}}"
    );
    std::fs::write(layout.join("index.json"), index).unwrap();
    std::fs::write(layout.join("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}").unwrap();
    let before = s.snapshot();
    fails_naming(&s, &["load", "--oci", layout.to_str().unwrap()], &[&manifest, "1 layers", "2 diff_ids"]);
    assert_eq!(s.snapshot(), before);
}

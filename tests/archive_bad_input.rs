//! Bad input to `load`: each case fails with one line naming the input and the problem, and leaves
//! the store exactly as it was (no new layer, blob, image or tag; nothing left in tmp/), and nothing
//! outside the store is touched.

mod common;

use std::path::{Path, PathBuf};

use common::images::{self, Member, docker_archive, oci_layout, store_snapshot, tar_of};
use strata::archive::{self, LoadSource};
use strata::store::{LockMode, Store};

struct Case {
    tmp: tempfile::TempDir,
    store: Store,
}

impl Case {
    /// A store that already holds one image, so "unchanged" means more than "empty".
    fn new() -> Case {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store"), LockMode::Exclusive).unwrap();
        let good = tmp.path().join("good.tar");
        docker_archive(&good, &[base_layer()], None, &["good:1"]);
        archive::load(&store, LoadSource::File(good)).unwrap();
        Case { tmp, store }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Loads `source`, expecting failure; checks the store and the message; returns the message.
    fn fails(&self, source: LoadSource, named: &Path, wants: &[&str]) -> String {
        let before = store_snapshot(self.store.root());
        let err = archive::load(&self.store, source).expect_err("load should fail");
        let msg = format!("{err:#}");
        assert!(!msg.contains('\n'), "one line expected: {msg}");
        assert!(msg.contains(&named.display().to_string()), "the input is not named: {msg}");
        for w in wants {
            assert!(msg.contains(w), "{w:?} not in: {msg}");
        }
        assert_eq!(before, store_snapshot(self.store.root()), "the store changed: {msg}");
        assert_eq!(
            images::tmp_leftovers(self.store.root()),
            Vec::<std::ffi::OsString>::new(),
            "tmp/ not empty"
        );
        msg
    }
}

fn base_layer() -> Vec<u8> {
    tar_of(&[Member::Dir("etc/"), Member::File("etc/base", b"base\n")])
}

fn other_layer() -> Vec<u8> {
    tar_of(&[Member::Dir("srv/"), Member::File("srv/data", &[7u8; 5000])])
}

#[test]
fn truncated_gzip_archive() {
    let c = Case::new();
    let plain = c.path("img.tar");
    docker_archive(&plain, &[other_layer()], None, &["x:1"]);
    images::run("gzip", &[plain.to_str().unwrap()]);
    let gz = c.path("img.tar.gz");
    let bytes = std::fs::read(&gz).unwrap();
    std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
    c.fails(LoadSource::File(gz.clone()), &gz, &["gzip"]);
}

#[test]
fn corrupt_zstd_archive() {
    let c = Case::new();
    let plain = c.path("img.tar");
    docker_archive(&plain, &[other_layer()], None, &["x:1"]);
    images::run("zstd", &["-q", "--rm", plain.to_str().unwrap()]);
    let zst = c.path("img.tar.zst");
    let mut bytes = std::fs::read(&zst).unwrap();
    let truncated = c.path("truncated.tar.zst");
    std::fs::write(&truncated, &bytes[..bytes.len() - 7]).unwrap();
    c.fails(LoadSource::File(truncated.clone()), &truncated, &["zstd"]);
    let n = bytes.len();
    for b in &mut bytes[n / 2..n / 2 + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&zst, &bytes).unwrap();
    c.fails(LoadSource::File(zst.clone()), &zst, &["zstd"]);
}

#[test]
fn layer_blob_digest_mismatch() {
    let c = Case::new();
    let dir = c.path("layout");
    let layer = other_layer();
    oci_layout(&dir, std::slice::from_ref(&layer), None, "v1", |_| {});
    // Same size, other bytes, under the old name.
    let evil = tar_of(&[Member::Dir("srv/"), Member::File("srv/data", &[8u8; 5000])]);
    assert_eq!(evil.len(), layer.len());
    std::fs::write(dir.join("blobs/sha256").join(images::sha256_hex(&layer)), evil).unwrap();
    c.fails(LoadSource::OciDir { dir: dir.clone(), tag: None }, &dir, &["digest mismatch"]);
}

#[test]
fn layer_blob_size_mismatch() {
    let c = Case::new();
    let dir = c.path("layout");
    oci_layout(&dir, &[other_layer()], None, "v1", |m| {
        let size = m["layers"][0]["size"].as_u64().unwrap();
        m["layers"][0]["size"] = (size - 512).into();
    });
    c.fails(LoadSource::OciDir { dir: dir.clone(), tag: None }, &dir, &["size"]);
}

#[test]
fn manifest_names_a_missing_blob() {
    let c = Case::new();
    let dir = c.path("layout");
    let layer = other_layer();
    oci_layout(&dir, &[base_layer(), layer.clone()], None, "v1", |_| {});
    std::fs::remove_file(dir.join("blobs/sha256").join(images::sha256_hex(&layer))).unwrap();
    c.fails(
        LoadSource::OciDir { dir: dir.clone(), tag: None },
        &dir,
        &["missing", &images::sha256_hex(&layer)],
    );
}

#[test]
fn unknown_tag_in_oci_layout() {
    let c = Case::new();
    let dir = c.path("layout");
    oci_layout(&dir, &[other_layer()], None, "v1", |_| {});
    c.fails(LoadSource::OciDir { dir: dir.clone(), tag: Some("nope".into()) }, &dir, &["nope", "v1"]);
}

/// The first layer is stored before the second fails: the load must take it out again.
#[test]
fn a_late_failure_removes_the_layers_already_stored() {
    let c = Case::new();
    let dir = c.path("layout");
    let (good, bad) = (other_layer(), tar_of(&[Member::File("x", b"x")]));
    let mut config = images::config_for(&[good.clone(), bad.clone()]);
    config =
        String::from_utf8(config).unwrap().replace(&images::sha256_hex(&bad), &"0".repeat(64)).into_bytes();
    oci_layout(&dir, &[good, bad], Some(config), "v1", |_| {});
    c.fails(LoadSource::OciDir { dir: dir.clone(), tag: None }, &dir, &["diff_id"]);
}

#[test]
fn diff_id_mismatch_in_docker_archive() {
    let c = Case::new();
    let path = c.path("img.tar");
    let layer = other_layer();
    let config = String::from_utf8(images::config_for(std::slice::from_ref(&layer)))
        .unwrap()
        .replace(&images::sha256_hex(&layer), &"1".repeat(64))
        .into_bytes();
    docker_archive(&path, &[layer], Some(config), &["x:1"]);
    c.fails(LoadSource::File(path.clone()), &path, &["diff_id", "layer0/layer.tar"]);
}

#[test]
fn manifest_json_lists_a_missing_config() {
    let c = Case::new();
    let path = c.path("img.tar");
    let manifest = serde_json::json!([{"Config": "nope.json", "RepoTags": ["x:1"], "Layers": []}]);
    images::write_tar(&path, &[("manifest.json".into(), serde_json::to_vec(&manifest).unwrap())]);
    c.fails(LoadSource::File(path.clone()), &path, &["config nope.json"]);
}

#[test]
fn invalid_tag_in_manifest_json() {
    let c = Case::new();
    let path = c.path("img.tar");
    docker_archive(&path, &[other_layer()], None, &["Not A Name:1"]);
    c.fails(LoadSource::File(path.clone()), &path, &["invalid", "Not A Name"]);
}

#[test]
fn not_a_tar_file() {
    let c = Case::new();
    let path = c.path("random.bin");
    std::fs::write(&path, (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>()).unwrap();
    c.fails(LoadSource::File(path.clone()), &path, &["not an image archive"]);
    let empty = c.path("empty");
    std::fs::write(&empty, b"").unwrap();
    c.fails(LoadSource::File(empty.clone()), &empty, &["empty"]);
}

#[test]
fn tar_that_is_no_image() {
    let c = Case::new();
    let path = c.path("plain.tar");
    images::write_tar(&path, &[("hello.txt".into(), b"hi".to_vec())]);
    c.fails(LoadSource::File(path.clone()), &path, &["not an image archive"]);
}

/// Evil layers: `..` escapes and hard links out are refused (the message names the archive and the
/// layer), and so are writes through a symlink; absolute names are confined to the layer (leading
/// `/` dropped, as GNU tar does) and load. Either way nothing outside the layer is touched.
#[test]
fn path_traversal_and_link_escapes_in_a_layer() {
    let c = Case::new();
    let outside = c.tmp.path().join("evil");
    let tmp = c.tmp.path().to_str().unwrap().to_string();
    let refused: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", tar_of(&[Member::File("../../../../evil", b"pwned")])),
        ("hardlink-out", tar_of(&[Member::HardLink("passwd", "../../../../../../etc/passwd")])),
        ("symlink-parent", tar_of(&[Member::Symlink("esc", &tmp), Member::File("esc/evil", b"pwned")])),
    ];
    for (name, layer) in refused {
        let path = c.path(&format!("{name}.tar"));
        docker_archive(&path, &[base_layer(), layer], None, &["evil:1"]);
        c.fails(LoadSource::File(path.clone()), &path, &["layer1/layer.tar"]);
        assert!(!outside.exists(), "{name}: a file was written outside the layer");
    }
    let confined: Vec<(&str, Vec<u8>)> =
        vec![("absolute", tar_of(&[Member::File(&format!("{tmp}/evil"), b"pwned")]))];
    for (name, layer) in confined {
        let path = c.path(&format!("{name}.tar"));
        docker_archive(&path, &[base_layer(), layer], None, &[&format!("{name}:1")]);
        let loaded = archive::load(&c.store, LoadSource::File(path)).unwrap();
        assert!(!outside.exists(), "{name}: a file was written outside the layer");
        let rec = c.store.image(&loaded[0].id).unwrap();
        let fs = c.store.layer_fs(&rec.layers[1].diff_id);
        assert!(fs.join(tmp.trim_start_matches('/')).join("evil").is_file(), "{name}: not confined");
    }
    // Nothing appeared beside the store either.
    let mut names: Vec<String> = std::fs::read_dir(c.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    names.sort();
    assert!(names.iter().all(|n| n == "store" || n.ends_with(".tar")), "{names:?}");
}

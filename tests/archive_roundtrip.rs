//! Round trips with the real peers: umoci/skopeo → strata load → strata save (each format) →
//! skopeo inspect/copy and umoci unpack, compared entry by entry with umoci's unpack of the original.

mod common;

use std::path::Path;

use common::images::{self, Fixture, Member, fixture, skopeo, tar_of, umoci_unpack};
use common::tree::assert_same_tree;
use strata::archive::{self, LoadSource, SaveFormat, SaveTarget};
use strata::oci::{Digest, Reference};
use strata::store::{LockMode, Store};

fn open(tmp: &Path) -> Store {
    Store::open(&tmp.join("store"), LockMode::Exclusive).unwrap()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

fn file_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The digest of the fixture's manifest and config, as umoci wrote them.
fn original_digests(f: &Fixture) -> (Digest, Digest) {
    let index = file_json(&f.layout.join("index.json"));
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == Fixture::TAG)
        .unwrap();
    let manifest = Digest::parse(m["digest"].as_str().unwrap()).unwrap();
    let body = file_json(&f.layout.join("blobs/sha256").join(manifest.hex()));
    (manifest, Digest::parse(body["config"]["digest"].as_str().unwrap()).unwrap())
}

/// Saves `name` in all three formats and checks each with skopeo and umoci against the fixture tree.
fn save_everywhere_and_compare(store: &Store, name: &str, tag: &str, tmp: &Path) {
    let f = fixture();
    let images = [name.to_string()];

    let d = tmp.join("out-docker.tar");
    archive::save(store, &images, SaveFormat::DockerArchive, SaveTarget::File(d.clone())).unwrap();
    let info = json(&skopeo(&["inspect", &format!("docker-archive:{}", d.display())]));
    assert_eq!(info["Layers"].as_array().unwrap().len(), 3, "{info}");
    let back = tmp.join("back-docker");
    skopeo(&["copy", &format!("docker-archive:{}", d.display()), &format!("oci:{}:x", back.display())]);
    assert_same_tree(&f.rootfs, &umoci_unpack(&format!("{}:x", back.display()), tmp, "bundle-docker"));

    let o = tmp.join("out-oci.tar");
    archive::save(store, &images, SaveFormat::OciArchive, SaveTarget::File(o.clone())).unwrap();
    let info = json(&skopeo(&["inspect", &format!("oci-archive:{}:{tag}", o.display())]));
    assert_eq!(info["Layers"].as_array().unwrap().len(), 3, "{info}");
    let back = tmp.join("back-oci");
    skopeo(&["copy", &format!("oci-archive:{}:{tag}", o.display()), &format!("oci:{}:x", back.display())]);
    assert_same_tree(&f.rootfs, &umoci_unpack(&format!("{}:x", back.display()), tmp, "bundle-oci"));

    let dir = tmp.join("out-dir");
    archive::save(store, &images, SaveFormat::OciDir, SaveTarget::Dir(dir.clone())).unwrap();
    skopeo(&["inspect", &format!("oci:{}:{tag}", dir.display())]);
    assert_same_tree(&f.rootfs, &umoci_unpack(&format!("{}:{tag}", dir.display()), tmp, "bundle-dir"));
}

#[test]
fn oci_layout_round_trips_through_every_format_byte_exact() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let loaded = archive::load(&store, LoadSource::parse(&format!("oci:{}", f.image()))).unwrap();
    let (manifest, config) = original_digests(f);
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, config);
    // ref.name "t1" alone is a bare tag: the layout directory's name is the repository.
    assert_eq!(loaded[0].tags, vec![Reference::parse("oci:t1").unwrap()]);
    let rec = store.image(&config).unwrap();
    assert_eq!(rec.manifest, manifest);
    assert_eq!(rec.layers.len(), 3);

    store.tag(&config, &Reference::parse("example.com/fx:v1").unwrap()).unwrap();
    save_everywhere_and_compare(&store, "example.com/fx:v1", "v1", tmp.path());

    // The OCI outputs carry the original manifest byte for byte, named both ways.
    let index = file_json(&tmp.path().join("out-dir/index.json"));
    let entry = &index["manifests"][0];
    assert_eq!(entry["digest"], manifest.to_string());
    assert_eq!(entry["annotations"]["io.containerd.image.name"], "example.com/fx:v1");
    assert_eq!(entry["annotations"]["org.opencontainers.image.ref.name"], "v1");
}

#[test]
fn skopeo_docker_archive_loads_tagged_and_round_trips() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.tar");
    f.convert(&format!("docker-archive:{}:example.com/fx:v2", input.display()));
    let store = open(tmp.path());
    let loaded = archive::load(&store, LoadSource::File(input)).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].tags, vec![Reference::parse("example.com/fx:v2").unwrap()]);
    assert_eq!(loaded[0].id, original_digests(f).1, "the config survives byte for byte");
    save_everywhere_and_compare(&store, "example.com/fx:v2", "v2", tmp.path());

    // docker save's own layout: RepoTags in familiar form, repositories, uncompressed layer.tar.
    let out = tmp.path().join("out-docker.tar");
    let list = images::run("tar", &["-tf", out.to_str().unwrap()]);
    assert!(
        list.lines().any(|l| l == "manifest.json") && list.lines().any(|l| l == "repositories"),
        "{list}"
    );
    assert_eq!(list.lines().filter(|l| l.ends_with("/layer.tar")).count(), 3, "{list}");
    assert_eq!(list.lines().filter(|l| l.ends_with("/VERSION")).count(), 3, "{list}");
}

#[test]
fn docker_archive_save_is_deterministic_and_familiar() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let loaded = archive::load(&store, LoadSource::parse(&format!("oci:{}", f.image()))).unwrap();
    store.tag(&loaded[0].id, &Reference::parse("busybox").unwrap()).unwrap();
    let (a, b) = (tmp.path().join("a.tar"), tmp.path().join("b.tar"));
    archive::save(&store, &["busybox".into()], SaveFormat::DockerArchive, SaveTarget::File(a.clone()))
        .unwrap();
    archive::save(&store, &["busybox:latest".into()], SaveFormat::DockerArchive, SaveTarget::File(b.clone()))
        .unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "same image, same bytes");
    let x = tmp.path().join("x");
    std::fs::create_dir(&x).unwrap();
    images::run("tar", &["-C", x.to_str().unwrap(), "-xf", a.to_str().unwrap()]);
    let manifest = file_json(&x.join("manifest.json"));
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["busybox:latest"]));
    let repos = file_json(&x.join("repositories"));
    assert!(repos["busybox"]["latest"].is_string(), "{repos}");

    // By id: no names, as docker save does.
    let id = loaded[0].id.to_string();
    let c = tmp.path().join("c.tar");
    archive::save(&store, &[id], SaveFormat::DockerArchive, SaveTarget::File(c.clone())).unwrap();
    let y = tmp.path().join("y");
    std::fs::create_dir(&y).unwrap();
    images::run("tar", &["-C", y.to_str().unwrap(), "-xf", c.to_str().unwrap()]);
    assert!(file_json(&y.join("manifest.json"))[0]["RepoTags"].is_null());
    skopeo(&["inspect", &format!("docker-archive:{}", c.display())]);
}

#[test]
fn oci_archive_with_full_ref_name_loads_tagged_and_byte_exact() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in-oci.tar");
    f.convert(&format!("oci-archive:{}:example.com/fx:v3", input.display()));
    let store = open(tmp.path());
    let loaded = archive::load(&store, LoadSource::File(input)).unwrap();
    assert_eq!(loaded[0].tags, vec![Reference::parse("example.com/fx:v3").unwrap()]);
    let (manifest, config) = original_digests(f);
    assert_eq!(loaded[0].id, config);
    assert_eq!(store.image(&config).unwrap().manifest, manifest);
}

#[test]
fn compressed_archives_load_like_plain_ones() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("in.tar");
    f.convert(&format!("docker-archive:{}:example.com/fx:gz", plain.display()));
    images::run("gzip", &["-k", plain.to_str().unwrap()]);
    images::run("zstd", &["-q", "-k", plain.to_str().unwrap()]);
    for (i, name) in ["in.tar.gz", "in.tar.zst"].iter().enumerate() {
        let store = Store::open(&tmp.path().join(format!("store{i}")), LockMode::Exclusive).unwrap();
        let loaded = archive::load(&store, LoadSource::File(tmp.path().join(name))).unwrap();
        assert_eq!(loaded[0].tags, vec![Reference::parse("example.com/fx:gz").unwrap()], "{name}");
        assert_eq!(loaded[0].id, original_digests(f).1, "{name}");
        // The spooled copy is gone.
        assert_eq!(images::tmp_leftovers(store.root()), Vec::<std::ffi::OsString>::new(), "{name}");
    }
}

#[test]
fn loading_the_same_image_twice_adds_nothing() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let archive_file = tmp.path().join("in.tar");
    f.convert(&format!("oci-archive:{}:example.com/fx:twice", archive_file.display()));
    let layout = LoadSource::parse(&format!("oci:{}", f.image()));
    archive::load(&store, LoadSource::File(archive_file.clone())).unwrap();
    archive::load(&store, layout.clone()).unwrap();
    let before = images::store_snapshot(store.root());
    archive::load(&store, LoadSource::File(archive_file)).unwrap();
    archive::load(&store, layout).unwrap();
    assert_eq!(before, images::store_snapshot(store.root()));

    // The docker-archive form has other (uncompressed) blobs but the very same layers.
    let layers = std::fs::read_dir(store.root().join("layers")).unwrap().count();
    let docker = tmp.path().join("in-docker.tar");
    f.convert(&format!("docker-archive:{}:example.com/fx:twice", docker.display()));
    archive::load(&store, LoadSource::File(docker)).unwrap();
    assert_eq!(std::fs::read_dir(store.root().join("layers")).unwrap().count(), layers);
}

/// Docker ≥ 25 saves blobs at `blobs/sha256/…` and writes both manifest.json and an OCI index.
#[test]
fn docker_25_layouts_load_both_ways() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let (manifest, config) = original_digests(f);
    let body = file_json(&f.layout.join("blobs/sha256").join(manifest.hex()));
    let layers: Vec<String> = body["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("blobs/sha256/{}", &l["digest"].as_str().unwrap()[7..]))
        .collect();
    let mj = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", config.hex()),
        "RepoTags": ["docker25:latest"],
        "Layers": layers,
    }]);
    for (i, with_index) in [true, false].into_iter().enumerate() {
        let dir = tmp.path().join(format!("d25-{i}"));
        images::run("cp", &["-a", f.layout.to_str().unwrap(), dir.to_str().unwrap()]);
        std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&mj).unwrap()).unwrap();
        if !with_index {
            std::fs::remove_file(dir.join("index.json")).unwrap();
            std::fs::remove_file(dir.join("oci-layout")).unwrap();
        }
        let t = tmp.path().join(format!("d25-{i}.tar"));
        images::tar_dir(&dir, &t);
        let store = Store::open(&tmp.path().join(format!("store{i}")), LockMode::Exclusive).unwrap();
        let loaded = archive::load(&store, LoadSource::File(t)).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].id, config);
        let rec = store.image(&config).unwrap();
        if with_index {
            assert_eq!(rec.manifest, manifest, "the index's manifest is kept byte-exact");
        } else {
            assert_eq!(loaded[0].tags, vec![Reference::parse("docker25").unwrap().with_default_tag()]);
            // The blobs are gzip here: the synthesised manifest says so.
            assert!(rec.layers.iter().all(|l| l.media_type.ends_with("+gzip")), "{:?}", rec.layers);
        }
    }
}

#[test]
fn legacy_docker_archive_loads_with_parent_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let l0 = tar_of(&[Member::Dir("etc/"), Member::File("etc/base", b"base\n")]);
    let l1 = tar_of(&[Member::File("etc/top", b"top\n"), Member::File("etc/.wh.base", b"")]);
    let (id0, id1) = ("a".repeat(64), "b".repeat(64));
    let j0 = serde_json::json!({"id": id0, "created": "2015-01-01T00:00:00Z",
        "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ADD base"]}, "os": "linux", "architecture": "amd64"});
    let j1 = serde_json::json!({"id": id1, "parent": id0, "created": "2015-01-02T00:00:00Z",
        "container_config": {"Cmd": ["/bin/sh", "-c", "echo top"]}, "config": {"Cmd": ["sh"]},
        "os": "linux", "architecture": "amd64", "Size": 4});
    let repos = serde_json::json!({"legacy": {"v0": id1}});
    let v = |j: &serde_json::Value| serde_json::to_vec(j).unwrap();
    let path = tmp.path().join("legacy.tar");
    images::write_tar(
        &path,
        &[
            (format!("{id0}/VERSION"), b"1.0".to_vec()),
            (format!("{id0}/json"), v(&j0)),
            (format!("{id0}/layer.tar"), l0.clone()),
            (format!("{id1}/VERSION"), b"1.0".to_vec()),
            (format!("{id1}/json"), v(&j1)),
            (format!("{id1}/layer.tar"), l1.clone()),
            ("repositories".into(), v(&repos)),
        ],
    );
    let store = open(tmp.path());
    let loaded = archive::load(&store, LoadSource::File(path)).unwrap();
    assert_eq!(loaded[0].tags, vec![Reference::parse("legacy:v0").unwrap()]);
    let rec = store.image(&loaded[0].id).unwrap();
    let diff_ids: Vec<String> = rec.layers.iter().map(|l| l.diff_id.hex().to_string()).collect();
    assert_eq!(diff_ids, vec![images::sha256_hex(&l0), images::sha256_hex(&l1)]);
    let cfg = store.image_config(&rec).unwrap();
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(cfg["history"][1]["created_by"], "/bin/sh -c echo top");
    assert!(cfg.get("id").is_none() && cfg.get("parent").is_none() && cfg.get("Size").is_none());

    // And out again, readable by skopeo.
    let out = tmp.path().join("out.tar");
    archive::save(&store, &["legacy:v0".into()], SaveFormat::DockerArchive, SaveTarget::File(out.clone()))
        .unwrap();
    let info = json(&skopeo(&["inspect", &format!("docker-archive:{}", out.display())]));
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2);
}

/// An index whose entry is itself a per-platform index: the host's manifest is the one loaded.
#[test]
fn per_platform_index_loads_the_host_entry() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("multi");
    images::run("cp", &["-a", f.layout.to_str().unwrap(), dir.to_str().unwrap()]);
    let (manifest, config) = original_digests(f);
    let size = std::fs::metadata(f.layout.join("blobs/sha256").join(manifest.hex())).unwrap().len();
    let host = strata::oci::image::Platform::host();
    let missing = Digest::of_bytes(b"another platform, never read");
    let nested = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": missing.to_string(), "size": 10,
         "platform": {"architecture": "s390x", "os": "linux"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest.to_string(), "size": size,
         "platform": {"architecture": host.architecture, "os": "linux"}},
    ]});
    let nested = serde_json::to_vec(&nested).unwrap();
    let nd = Digest::of_bytes(&nested);
    std::fs::write(dir.join("blobs/sha256").join(nd.hex()), &nested).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": nd.to_string(), "size": nested.len(),
         "annotations": {"io.containerd.image.name": "example.com/multi:1"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let store = open(tmp.path());
    let loaded = archive::load(&store, LoadSource::parse(&format!("oci:{}", dir.display()))).unwrap();
    assert_eq!(loaded[0].id, config);
    assert_eq!(loaded[0].tags, vec![Reference::parse("example.com/multi:1").unwrap()]);
}

/// index.json itself listing one image per platform: only the host's is loaded.
#[test]
fn top_level_platform_entries_keep_the_host_one() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plat");
    images::run("cp", &["-a", f.layout.to_str().unwrap(), dir.to_str().unwrap()]);
    let (manifest, config) = original_digests(f);
    let size = std::fs::metadata(f.layout.join("blobs/sha256").join(manifest.hex())).unwrap().len();
    let host = strata::oci::image::Platform::host();
    let missing = Digest::of_bytes(b"s390x image, never read");
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": missing.to_string(), "size": 10,
         "platform": {"architecture": "s390x", "os": "linux"},
         "annotations": {"io.containerd.image.name": "example.com/plat:1"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest.to_string(), "size": size,
         "platform": {"architecture": host.architecture, "os": "linux"},
         "annotations": {"io.containerd.image.name": "example.com/plat:1"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let store = open(tmp.path());
    let loaded = archive::load(&store, LoadSource::parse(&format!("oci:{}", dir.display()))).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, config);
}

//! `save` beyond the single-image round trip: several images sharing layers, a layer repeated in
//! one image, saving into an existing layout, Docker-typed manifests converted for umoci, zstd
//! layers, writers, and the errors a user can cause.

mod common;

use std::path::Path;

use common::images::{self, Fixture, Member, fixture, oci_layout, skopeo, tar_of, umoci_unpack};
use common::tree::assert_same_tree;
use strata::archive::{self, LoadSource, SaveFormat, SaveTarget};
use strata::oci::{Digest, Reference};
use strata::store::{LockMode, Store};

fn open(dir: &Path) -> Store {
    Store::open(&dir.join("store"), LockMode::Exclusive).unwrap()
}

fn file_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn layer(name: &str, body: &[u8]) -> Vec<u8> {
    tar_of(&[Member::Dir("data/"), Member::File(&format!("data/{name}"), body)])
}

/// Loads a hand-made single-image layout and names it.
fn load_layout(store: &Store, dir: &Path, layers: &[Vec<u8>], name: &str) -> Digest {
    oci_layout(dir, layers, None, "x", |_| {});
    let loaded = archive::load(store, LoadSource::OciDir { dir: dir.to_path_buf(), tag: None }).unwrap();
    store.tag(&loaded[0].id, &Reference::parse(name).unwrap()).unwrap();
    loaded[0].id.clone()
}

#[test]
fn several_images_sharing_layers_in_one_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let base = layer("base", b"base");
    let a = load_layout(&store, &tmp.path().join("a"), &[base.clone(), layer("a", b"a")], "example.com/a:1");
    let b = load_layout(&store, &tmp.path().join("b"), &[base, layer("b", b"b")], "example.com/b:1");
    let names = ["example.com/a:1".to_string(), "example.com/b:1".to_string()];

    let d = tmp.path().join("two.tar");
    archive::save(&store, &names, SaveFormat::DockerArchive, SaveTarget::File(d.clone())).unwrap();
    let list = images::run("tar", &["-tf", d.to_str().unwrap()]);
    assert_eq!(list.lines().filter(|l| l.ends_with("layer.tar")).count(), 3, "shared base once: {list}");
    for n in &names {
        skopeo(&["inspect", &format!("docker-archive:{}:{n}", d.display())]);
    }
    let o = tmp.path().join("two-oci.tar");
    archive::save(&store, &names, SaveFormat::OciArchive, SaveTarget::File(o.clone())).unwrap();

    // Both come back, with their names, into a fresh store.
    for (i, f) in [d, o].iter().enumerate() {
        let again = Store::open(&tmp.path().join(format!("again{i}")), LockMode::Exclusive).unwrap();
        let loaded = archive::load(&again, LoadSource::File(f.clone())).unwrap();
        let mut got: Vec<(Digest, String)> =
            loaded.iter().map(|l| (l.id.clone(), l.tags[0].familiar())).collect();
        got.sort();
        let mut want =
            vec![(a.clone(), "example.com/a:1".to_string()), (b.clone(), "example.com/b:1".to_string())];
        want.sort();
        assert_eq!(got, want, "{}", f.display());
        assert_eq!(again.list_layers().unwrap().len(), 3);
    }
}

/// One diff_id twice in a stack: the second layer directory links to the first's tar.
#[test]
fn a_layer_repeated_in_one_image() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let l = layer("same", b"same");
    let id = load_layout(&store, &tmp.path().join("l"), &[l.clone(), layer("mid", b"m"), l], "rep:1");
    let out = tmp.path().join("rep.tar");
    archive::save(&store, &["rep:1".into()], SaveFormat::DockerArchive, SaveTarget::File(out.clone()))
        .unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", &format!("docker-archive:{}", out.display())])).unwrap();
    assert_eq!(info["Layers"].as_array().unwrap().len(), 3);
    let again = Store::open(&tmp.path().join("again"), LockMode::Exclusive).unwrap();
    let loaded = archive::load(&again, LoadSource::File(out)).unwrap();
    assert_eq!(loaded[0].id, id);
    assert_eq!(again.image(&id).unwrap().layers.len(), 3);
}

#[test]
fn saving_into_an_existing_layout_adds_to_its_index() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    load_layout(&store, &tmp.path().join("a"), &[layer("a", b"a")], "example.com/a:one");
    let dir = tmp.path().join("layout");
    images::run("cp", &["-a", f.layout.to_str().unwrap(), dir.to_str().unwrap()]);
    archive::save(&store, &["example.com/a:one".into()], SaveFormat::OciDir, SaveTarget::Dir(dir.clone()))
        .unwrap();
    let index = file_json(&dir.join("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    // umoci reads both: the old image untouched, the new one by its tag.
    assert_same_tree(
        &f.rootfs,
        &umoci_unpack(&format!("{}:{}", dir.display(), Fixture::TAG), tmp.path(), "old"),
    );
    let new = umoci_unpack(&format!("{}:one", dir.display()), tmp.path(), "new");
    assert_eq!(std::fs::read(new.join("data/a")).unwrap(), b"a");
    // Saving the same name again replaces its entry.
    archive::save(&store, &["example.com/a:one".into()], SaveFormat::OciDir, SaveTarget::Dir(dir.clone()))
        .unwrap();
    assert_eq!(file_json(&dir.join("index.json"))["manifests"].as_array().unwrap().len(), 2);
}

/// Docker ≥ 25 OCI layouts hold Docker-typed manifests; umoci wants OCI ones, so save converts.
#[test]
fn docker_typed_manifest_is_converted_for_oci_output() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dockerish");
    images::run("cp", &["-a", f.layout.to_str().unwrap(), dir.to_str().unwrap()]);
    let index = file_json(&dir.join("index.json"));
    let old = Digest::parse(index["manifests"][0]["digest"].as_str().unwrap()).unwrap();
    let mut m = file_json(&dir.join("blobs/sha256").join(old.hex()));
    m["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json".into();
    m["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json".into();
    for l in m["layers"].as_array_mut().unwrap() {
        l["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip".into();
    }
    let bytes = serde_json::to_vec(&m).unwrap();
    let new = Digest::of_bytes(&bytes);
    std::fs::write(dir.join("blobs/sha256").join(new.hex()), &bytes).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": new.to_string(),
        "size": bytes.len(), "annotations": {"io.containerd.image.name": "docker.io/library/dockerish:latest",
        "org.opencontainers.image.ref.name": "latest"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();

    let store = open(tmp.path());
    let loaded = archive::load(&store, LoadSource::File(dir)).unwrap();
    assert_eq!(loaded[0].tags[0].familiar(), "dockerish:latest");
    let rec = store.image(&loaded[0].id).unwrap();
    assert_eq!(rec.manifest, new, "stored byte-exact");
    assert_eq!(rec.manifest_media_type, "application/vnd.docker.distribution.manifest.v2+json");

    let out = tmp.path().join("out");
    archive::save(&store, &["dockerish".into()], SaveFormat::OciDir, SaveTarget::Dir(out.clone())).unwrap();
    let entry = &file_json(&out.join("index.json"))["manifests"][0];
    assert_eq!(entry["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let written = file_json(&out.join("blobs/sha256").join(&entry["digest"].as_str().unwrap()[7..]));
    assert_eq!(written["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
    assert_same_tree(&f.rootfs, &umoci_unpack(&format!("{}:latest", out.display()), tmp.path(), "b"));
}

/// A zstd layer is stored as is and decompressed on the way into a docker-archive.
#[test]
fn zstd_layers_load_and_save() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let plain = layer("z", &[3u8; 100_000]);
    let src = tmp.path().join("l.tar");
    std::fs::write(&src, &plain).unwrap();
    images::run("zstd", &["-q", src.to_str().unwrap()]);
    let zst = std::fs::read(tmp.path().join("l.tar.zst")).unwrap();
    let dir = tmp.path().join("z");
    let config = images::config_for(std::slice::from_ref(&plain));
    oci_layout(&dir, std::slice::from_ref(&zst), Some(config), "z", |m| {
        m["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd".into();
    });
    let loaded = archive::load(&store, LoadSource::OciDir { dir, tag: Some("z".into()) }).unwrap();
    let rec = store.image(&loaded[0].id).unwrap();
    assert_eq!(rec.layers[0].blob, Digest::of_bytes(&zst));
    assert_eq!(rec.layers[0].diff_id, Digest::of_bytes(&plain));
    let out = tmp.path().join("out.tar");
    let id = loaded[0].id.to_string();
    archive::save(&store, &[id], SaveFormat::DockerArchive, SaveTarget::File(out.clone())).unwrap();
    let x = tmp.path().join("x");
    std::fs::create_dir(&x).unwrap();
    images::run("tar", &["-C", x.to_str().unwrap(), "-xf", out.to_str().unwrap()]);
    let m = file_json(&x.join("manifest.json"));
    let tar = std::fs::read(x.join(m[0]["Layers"][0].as_str().unwrap())).unwrap();
    assert_eq!(tar, plain, "layer.tar is the uncompressed layer");
}

#[test]
fn save_to_a_writer_matches_save_to_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    load_layout(&store, &tmp.path().join("a"), &[layer("a", b"a")], "w:1");
    let file = tmp.path().join("f.tar");
    archive::save(&store, &["w:1".into()], SaveFormat::OciArchive, SaveTarget::File(file.clone())).unwrap();
    let via_writer = tmp.path().join("w.tar");
    let w = Box::new(std::fs::File::create(&via_writer).unwrap());
    archive::save(&store, &["w:1".into()], SaveFormat::OciArchive, SaveTarget::Writer(w)).unwrap();
    assert_eq!(std::fs::read(file).unwrap(), std::fs::read(via_writer).unwrap());
}

#[test]
fn save_errors_name_the_problem_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    load_layout(&store, &tmp.path().join("a"), &[layer("a", b"a")], "e:1");
    let out = tmp.path().join("out.tar");
    let err = archive::save(
        &store,
        &["e:1".into(), "nothere:2".into()],
        SaveFormat::DockerArchive,
        SaveTarget::File(out.clone()),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("nothere:2"), "{err:#}");
    let err =
        archive::save(&store, &["Bad Name".into()], SaveFormat::OciArchive, SaveTarget::File(out.clone()))
            .unwrap_err();
    assert!(format!("{err:#}").contains("invalid reference"), "{err:#}");
    let err = archive::save(&store, &["e:1".into()], SaveFormat::OciDir, SaveTarget::File(out.clone()))
        .unwrap_err();
    assert!(format!("{err:#}").contains("directory"), "{err:#}");
    assert!(!out.exists());

    // A layer blob damaged in the store: the save fails and leaves no half-written file.
    let rec = store.resolve_image("e:1").unwrap();
    std::fs::write(store.blob_path(&rec.layers[0].blob), b"garbage").unwrap();
    let err =
        archive::save(&store, &["e:1".into()], SaveFormat::DockerArchive, SaveTarget::File(out.clone()))
            .unwrap_err();
    assert!(format!("{err:#}").contains(&rec.layers[0].diff_id.to_string()), "{err:#}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2, "only the store and the layout remain");
}

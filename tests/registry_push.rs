//! `strata push` against a real registry: what skopeo and umoci read back is what the store holds;
//! blobs the registry has are skipped, blobs of a sibling repository are mounted, large blobs go in
//! chunks; a pulled image keeps its digest wherever it is pushed.

mod common;

use std::path::PathBuf;

use common::registry::{Auth, Layout, Registry, fails, merge_layers, noise, ok, skopeo_raw, tree};
use common::strata::{Strata, busybox_rootfs, tar_dir};

fn digest_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn layer_dirs(s: &Strata, image: &str) -> Vec<PathBuf> {
    let inspect: serde_json::Value = serde_json::from_str(&ok(s, &["inspect", image])).unwrap();
    inspect[0]["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| s.root().join("layers").join(d.as_str().unwrap().trim_start_matches("sha256:")).join("fs"))
        .collect()
}

#[test]
fn pushed_image_reads_back_through_skopeo_and_umoci() {
    let reg = Registry::start(Auth::None);
    let s = Strata::new();
    let rootfs = s.path("rootfs");
    busybox_rootfs(&rootfs);
    tar_dir(&rootfs, &s.path("rootfs.tgz"), "gzip");
    let name = format!("{}/pushed:v1", reg.host());
    ok(&s, &["import", s.path("rootfs.tgz").to_str().unwrap(), &name]);
    let out = ok(&s, &["push", &name]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("The push refers to repository [{}/pushed]", reg.host()));
    assert!(lines.iter().any(|l| l.ends_with(": Pushed")), "{out}");
    let last = lines.last().unwrap();
    assert!(last.starts_with("v1: digest: sha256:") && last.contains(" size: "), "{out}");

    // The registry serves exactly the stored manifest.
    let raw = skopeo_raw(&name, None);
    let inspect: serde_json::Value = serde_json::from_str(&ok(&s, &["inspect", &name])).unwrap();
    let stored_digest = inspect[0]["Manifest"]["Digest"].as_str().unwrap().to_string();
    assert_eq!(digest_of(&raw), stored_digest);
    assert_eq!(*last, format!("v1: digest: {stored_digest} size: {}", raw.len()));
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{name}")])
        .output()
        .unwrap();
    let skopeo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(skopeo["Digest"], stored_digest.as_str());
    assert_eq!(skopeo["RepoTags"], serde_json::json!(["v1"]));
    assert_eq!(skopeo["Layers"].as_array().unwrap().len(), 1);
    assert!(
        inspect[0]["RepoDigests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == &format!("{}/pushed@{stored_digest}", reg.host())),
        "{inspect}"
    );

    // skopeo copies it back into an OCI layout; umoci unpacks the same tree.
    let back = s.path("back");
    let st = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{name}"),
            &format!("oci:{}:v1", back.display()),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let unpacked = Layout { path: back }.unpack("v1", &s.path("bundle"));
    assert_eq!(tree(&unpacked), merge_layers(&layer_dirs(&s, &name)));

    // A second push finds every blob there.
    let again = ok(&s, &["push", &name]);
    assert!(again.contains(": Layer already exists") && !again.contains(": Pushed"), "{again}");
}

#[test]
fn pulled_image_keeps_its_digest_and_mounts_blobs_across_repositories() {
    let reg = Registry::start(Auth::None);
    let other = Registry::start(Auth::None);
    let s = Strata::new();
    let l = Layout::init(&s.path("layout"));
    l.new_image("t");
    l.add_layer("t", |root| std::fs::write(root.join("a.txt"), "a\n").unwrap());
    l.add_layer("t", |root| std::fs::write(root.join("b.txt"), "b\n").unwrap());
    let src = format!("{}/src/app:t", reg.host());
    l.push("t", &src, "oci");
    let raw = skopeo_raw(&src, None);
    ok(&s, &["pull", &src]);

    // Same registry, other repository: blobs are mounted, not uploaded.
    let dst = format!("{}/dst:t", reg.host());
    ok(&s, &["tag", &src, &dst]);
    let before = reg.requests().len();
    let out = ok(&s, &["push", &dst]);
    assert_eq!(out.matches(": Mounted from src/app").count(), 2, "{out}");
    let reqs = reg.requests()[before..].to_vec();
    assert_eq!(
        reqs.iter()
            .filter(|r| r.contains("?mount=") && r.contains("from=src%2Fapp") && r.ends_with(" 201"))
            .count(),
        2,
        "{reqs:?}"
    );
    assert!(
        !reqs.iter().any(|r| r.starts_with("PATCH ")
            || (r.starts_with("PUT ") && r.contains("/blobs/uploads/") && !r.contains("sha256%3A"))),
        "{reqs:?}"
    );
    assert_eq!(skopeo_raw(&dst, None), raw, "the manifest changed on the way");

    // Another registry: uploaded, same digest.
    let far = format!("{}/far:t", other.host());
    ok(&s, &["tag", &src, &far]);
    let out = ok(&s, &["push", &far]);
    assert_eq!(out.matches(": Pushed").count(), 2, "{out}");
    assert!(out.ends_with(&format!("t: digest: {} size: {}\n", digest_of(&raw), raw.len())), "{out}");
    assert_eq!(skopeo_raw(&far, None), raw);
}

#[test]
fn large_blob_goes_up_in_chunks() {
    let reg = Registry::start(Auth::None);
    let s = Strata::new();
    let rootfs = s.path("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("noise"), noise(40 << 20, 3)).unwrap();
    tar_dir(&rootfs, &s.path("big.tar"), "plain");
    let name = format!("{}/big:1", reg.host());
    ok(&s, &["import", s.path("big.tar").to_str().unwrap(), &name]);
    let before = reg.requests().len();
    ok(&s, &["push", &name]);
    let reqs = reg.requests()[before..].to_vec();
    assert_eq!(reqs.iter().filter(|r| r.starts_with("PATCH ") && r.ends_with(" 202")).count(), 2, "{reqs:?}");
    // And it pulls back into a fresh store with the same tree.
    let fresh = Strata::new();
    ok(&fresh, &["pull", &name]);
    assert_eq!(merge_layers(&layer_dirs(&fresh, &name)), merge_layers(&layer_dirs(&s, &name)));
}

#[test]
fn push_of_an_unknown_image_or_a_digest_is_refused() {
    let reg = Registry::start(Auth::None);
    let s = Strata::new();
    let err = fails(&s, &["push", &format!("{}/nothing:here", reg.host())]);
    assert!(err.contains(&format!("push {}/nothing:here: no such image", reg.host())), "{err}");
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let err = fails(&s, &["push", &format!("{}/x@{d}", reg.host())]);
    assert!(err.contains("cannot push a digest reference"), "{err}");
}

/// A two-layer docker-archive (layers stored uncompressed, as `docker save` writes them), loaded.
fn load_uncompressed(s: &Strata, name: &str) -> Vec<Vec<u8>> {
    use common::images::{Member, docker_archive, tar_of};
    let text = "compressible line of text\n".repeat(4000);
    let layers = vec![
        tar_of(&[Member::Dir("etc/"), Member::File("etc/a.txt", text.as_bytes())]),
        tar_of(&[Member::Dir("usr/"), Member::File("usr/b.txt", text.to_uppercase().as_bytes())]),
    ];
    let archive = s.path("uncompressed.tar");
    docker_archive(&archive, &layers, None, &[name]);
    ok(s, &["load", "-i", archive.to_str().unwrap()]);
    layers
}

/// Pushes `name` and returns the registry's manifest.
fn push_and_read(s: &Strata, name: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["push"];
    args.extend_from_slice(extra);
    args.push(name);
    ok(s, &args);
    serde_json::from_slice(&skopeo_raw(name, None)).unwrap()
}

#[test]
fn uncompressed_layers_are_pushed_compressed_once() {
    let reg = Registry::start(Auth::None);
    let s = Strata::new();
    let name = format!("{}/loaded:gz", reg.host());
    let layers = load_uncompressed(&s, &name);
    let manifest = push_and_read(&s, &name, &[]);
    let pushed = manifest["layers"].as_array().unwrap();
    assert_eq!(pushed.len(), 2, "{manifest}");
    for (desc, tar) in pushed.iter().zip(&layers) {
        assert_eq!(desc["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip", "{manifest}");
        let blob = std::fs::read(reg.blob_data(desc["digest"].as_str().unwrap())).unwrap();
        assert_eq!(&blob[..2], &[0x1f, 0x8b], "a gzip stream");
        assert!(blob.len() < tar.len() / 10, "{} bytes for a {}-byte tar", blob.len(), tar.len());
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut plain).unwrap();
        assert!(plain == *tar, "the layer decompresses to the loaded tar");
    }
    // The store keeps the compressed form: the local manifest is the pushed one, and a second push
    // (another tag) sends the same digests.
    let raw = skopeo_raw(&name, None);
    let inspect: serde_json::Value = serde_json::from_str(&ok(&s, &["inspect", &name])).unwrap();
    assert_eq!(inspect[0]["Manifest"]["Digest"], digest_of(&raw).as_str());
    let again = format!("{}/loaded:again", reg.host());
    ok(&s, &["tag", &name, &again]);
    assert_eq!(push_and_read(&s, &again, &[]), manifest);
    assert_eq!(digest_of(&skopeo_raw(&again, None)), digest_of(&raw));

    // What was pushed pulls back into a fresh store as the same image.
    let fresh = Strata::new();
    ok(&fresh, &["pull", &name]);
    let pulled: serde_json::Value = serde_json::from_str(&ok(&fresh, &["inspect", &name])).unwrap();
    assert_eq!(pulled[0]["Id"], inspect[0]["Id"]);
    assert_eq!(ok(&fresh, &["cat", &name, "/usr/b.txt"]), "COMPRESSIBLE LINE OF TEXT\n".repeat(4000));
}

#[test]
fn push_compression_zstd() {
    let reg = Registry::start(Auth::None);
    let s = Strata::new();
    let name = format!("{}/loaded:zst", reg.host());
    load_uncompressed(&s, &name);
    let manifest = push_and_read(&s, &name, &["--compression", "zstd"]);
    for desc in manifest["layers"].as_array().unwrap() {
        assert_eq!(desc["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd", "{manifest}");
        let blob = std::fs::read(reg.blob_data(desc["digest"].as_str().unwrap())).unwrap();
        assert_eq!(&blob[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a zstd stream");
    }
    let err = fails(&s, &["push", "--compression", "lz4", &name]);
    assert!(err.contains("lz4"), "{err}");
}

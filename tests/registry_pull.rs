//! `strata pull` against a real distribution registry on 127.0.0.1: digests and trees match what
//! skopeo pushed and umoci unpacks; layers the store has are not fetched; failures (registry down,
//! unknown tag, tampered blob, a killed pull) leave the store as it was.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::registry::{Auth, Layout, Registry, fails, free_port, merge_layers, noise, ok, skopeo_raw};
use common::strata::Strata;

/// An image `t` with two layers: files, a symlink, modes, a deletion (whiteout) in the second.
fn two_layer_layout(dir: &Path) -> Layout {
    let l = Layout::init(&dir.join("layout"));
    l.new_image("t");
    l.add_layer("t", |root| {
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("etc/motd"), "first\n").unwrap();
        std::fs::write(root.join("etc/old"), "to be deleted\n").unwrap();
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        std::fs::create_dir_all(root.join("srv/private")).unwrap();
        std::fs::set_permissions(
            root.join("srv/private"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
    });
    l.add_layer("t", |root| {
        std::fs::write(root.join("etc/motd"), "second\n").unwrap();
        std::fs::remove_file(root.join("etc/old")).unwrap();
        std::fs::create_dir_all(root.join("usr/share")).unwrap();
        std::fs::write(root.join("usr/share/hello"), "hello, strata\n").unwrap();
    });
    l
}

/// The unpacked layer trees of a stored image, bottom first.
fn layer_dirs(s: &Strata, image: &str) -> Vec<PathBuf> {
    let inspect: serde_json::Value = serde_json::from_str(&ok(s, &["inspect", image])).unwrap();
    inspect[0]["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| s.root().join("layers").join(d.as_str().unwrap().trim_start_matches("sha256:")).join("fs"))
        .collect()
}

fn digest_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[test]
fn pull_keeps_the_pushed_digest_and_gives_the_umoci_tree() {
    let reg = Registry::start(Auth::None);
    let s = Strata::new();
    let layout = two_layer_layout(s.dir.path());
    let expected = merge_layers(&[layout.unpack("t", &s.path("bundle"))]);
    for (repo, format) in [("oci/app", "oci"), ("docker/app", "v2s2")] {
        let name = format!("{}/{repo}:t", reg.host());
        layout.push("t", &name, format);
        let digest = digest_of(&skopeo_raw(&name, None));
        let out = ok(&s, &["pull", &name]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], format!("t: Pulling from {repo}"), "{out}");
        // The Docker-format copy has the same layer blobs: they are not fetched again.
        let wanted = if format == "oci" { ": Pull complete" } else { ": Already exists" };
        assert_eq!(lines.iter().filter(|l| l.ends_with(wanted)).count(), 2, "{out}");
        assert!(lines.contains(&format!("Digest: {digest}").as_str()), "{out}");
        assert!(lines.contains(&format!("Status: Downloaded newer image for {name}").as_str()), "{out}");
        assert_eq!(lines.last().unwrap(), &name);
        let inspect: serde_json::Value = serde_json::from_str(&ok(&s, &["inspect", &name])).unwrap();
        assert_eq!(inspect[0]["RepoDigests"][0], format!("{}/{repo}@{digest}", reg.host()), "{inspect}");
        // The manifest is stored byte for byte.
        let hex = digest.trim_start_matches("sha256:");
        assert_eq!(std::fs::read(s.root().join("blobs/sha256").join(hex)).unwrap(), skopeo_raw(&name, None));
        let got = merge_layers(&layer_dirs(&s, &name));
        assert_eq!(got, expected, "{format}: the pulled tree differs from umoci unpack's");
    }
    // Same layers in OCI and Docker form: the second pull shared them.
    assert_eq!(std::fs::read_dir(s.root().join("layers")).unwrap().count(), 2);
}

#[test]
fn second_pull_fetches_no_blob_and_is_up_to_date() {
    let reg = Registry::start(Auth::None);
    let s = Strata::new();
    let layout = two_layer_layout(s.dir.path());
    let name = format!("{}/twice:t", reg.host());
    layout.push("t", &name, "oci");
    ok(&s, &["pull", &name]);
    let before = reg.requests().len();
    let out = ok(&s, &["pull", &name]);
    let second = reg.requests()[before..].to_vec();
    assert!(Registry::blob_gets(&second).is_empty(), "second pull fetched blobs: {second:?}");
    assert!(out.contains(&format!("Status: Image is up to date for {name}")), "{out}");
    assert_eq!(out.matches(": Already exists").count(), 2, "{out}");
    // -q prints only the reference.
    assert_eq!(ok(&s, &["pull", "-q", &name]), format!("{name}\n"));
}

#[test]
fn layers_shared_with_a_stored_image_are_not_fetched() {
    let reg = Registry::start(Auth::None);
    let s = Strata::new();
    let l = Layout::init(&s.path("layout"));
    l.new_image("base");
    l.add_layer("base", |root| std::fs::write(root.join("base.txt"), "base\n").unwrap());
    l.tag("base", "app");
    l.add_layer("app", |root| std::fs::write(root.join("app.txt"), "app\n").unwrap());
    let (base, app) = (format!("{}/base:1", reg.host()), format!("{}/app:1", reg.host()));
    l.push("base", &base, "oci");
    l.push("app", &app, "oci");
    ok(&s, &["pull", &base]);
    let app_manifest: serde_json::Value = serde_json::from_slice(&skopeo_raw(&app, None)).unwrap();
    let base_blob = app_manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    let app_blob = app_manifest["layers"][1]["digest"].as_str().unwrap().to_string();
    let before = reg.requests().len();
    let out = ok(&s, &["pull", &app]);
    let gets = Registry::blob_gets(&reg.requests()[before..]);
    assert!(out.contains(&format!("{}: Already exists", &base_blob[7..19])), "{out}");
    assert!(out.contains(&format!("{}: Pull complete", &app_blob[7..19])), "{out}");
    assert!(!gets.iter().any(|g| g.contains(&base_blob)), "base layer fetched again: {gets:?}");
    assert!(gets.iter().any(|g| g.contains(&app_blob)), "{gets:?}");
    let tree_app = merge_layers(&layer_dirs(&s, &app));
    assert!(tree_app.contains_key(Path::new("base.txt")) && tree_app.contains_key(Path::new("app.txt")));
}

#[test]
fn registry_down_is_a_clear_error() {
    let s = Strata::new();
    ok(&s, &["images"]);
    let before = s.snapshot();
    let name = format!("127.0.0.1:{}/gone:t", free_port());
    let start = Instant::now();
    let err = fails(&s, &["pull", &name]);
    assert!(err.contains(&format!("pull {name}: cannot reach registry 127.0.0.1:")), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    assert_eq!(s.snapshot(), before);
}

#[test]
fn unknown_tag_is_manifest_unknown() {
    let reg = Registry::start(Auth::None);
    let s = Strata::new();
    let layout = two_layer_layout(s.dir.path());
    layout.push("t", &format!("{}/known:t", reg.host()), "oci");
    let err = fails(&s, &["pull", &format!("{}/known:nope", reg.host())]);
    assert!(err.contains(&format!("pull {}/known:nope: manifest unknown (404)", reg.host())), "{err}");
    let err = fails(&s, &["pull", &format!("{}/nobody:t", reg.host())]);
    assert!(err.contains("(404)"), "{err}");
    let err = fails(&s, &["pull", &format!("{}/known:t", reg.host()), "--platform", "linux/s390x"]);
    assert!(err.contains("linux/s390x"), "{err}");
}

#[test]
fn tampered_blob_fails_with_a_digest_error_and_changes_nothing() {
    let reg = Registry::start(Auth::None);
    let s = Strata::new();
    // An uncompressed layer (import keeps the plain tar), so a flipped byte is caught by the digest.
    let rootfs = s.path("rootfs");
    common::strata::busybox_rootfs(&rootfs);
    common::strata::tar_dir(&rootfs, &s.path("rootfs.tar"), "plain");
    let name = format!("{}/tamper:t", reg.host());
    ok(&s, &["import", s.path("rootfs.tar").to_str().unwrap(), &name]);
    ok(&s, &["push", &name]);
    let manifest: serde_json::Value = serde_json::from_slice(&skopeo_raw(&name, None)).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let data = reg.blob_data(layer);
    let mut bytes = std::fs::read(&data).unwrap();
    // Inside busybox's bytes, well past the first tar headers.
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let fresh = Strata::new();
    ok(&fresh, &["images"]);
    let before = fresh.snapshot();
    let err = fails(&fresh, &["pull", &name]);
    assert!(err.contains(&format!("pull {name}: layer {layer}")), "{err}");
    assert!(err.contains("digest mismatch"), "{err}");
    assert_eq!(fresh.snapshot(), before, "the store changed");
    assert_eq!(std::fs::read_dir(fresh.root().join("tmp")).unwrap().count(), 0, "half a layer left in tmp/");
}

#[test]
fn killed_pull_leaves_nothing_and_the_next_pull_completes() {
    let reg = Registry::start(Auth::None);
    let s = Strata::new();
    let l = Layout::init(&s.path("layout"));
    l.new_image("big");
    l.add_layer("big", |root| std::fs::write(root.join("noise"), noise(48 << 20, 7)).unwrap());
    let name = format!("{}/big:1", reg.host());
    l.push("big", &name, "oci");
    ok(&s, &["images"]);
    let before = s.snapshot();

    let mut child = common::registry::strata_cmd(&s, &["pull", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tmp = s.root().join("tmp");
    let deadline = Instant::now() + Duration::from_secs(30);
    let staged = |p: &Path| {
        std::fs::read_dir(p)
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("layer-")))
            .unwrap_or(false)
    };
    while !staged(&tmp) {
        assert!(Instant::now() < deadline, "the pull never started staging a layer");
        assert!(child.try_wait().unwrap().is_none(), "the pull ended before it could be killed");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert_eq!(s.snapshot(), before, "a killed pull left something outside tmp/");
    assert_eq!(ok(&s, &["images", "-q"]), "");
    let out = ok(&s, &["pull", &name]);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "leftovers in tmp/ were not cleared");
    let layers = layer_dirs(&s, &name);
    assert_eq!(std::fs::read(layers[0].join("noise")).unwrap().len(), 48 << 20);
}

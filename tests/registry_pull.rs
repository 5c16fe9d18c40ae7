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
    // Docker's shape: nothing per layer when the image is already there.
    let digest = digest_of(&skopeo_raw(&name, None));
    assert_eq!(
        out,
        format!("t: Pulling from twice\nDigest: {digest}\nStatus: Image is up to date for {name}\n{name}\n")
    );
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
    // An uncompressed layer (import keeps the plain tar, push sends it as stored), so a flipped byte
    // is caught by the digest.
    let rootfs = s.path("rootfs");
    common::strata::busybox_rootfs(&rootfs);
    common::strata::tar_dir(&rootfs, &s.path("rootfs.tar"), "plain");
    let name = format!("{}/tamper:t", reg.host());
    ok(&s, &["import", s.path("rootfs.tar").to_str().unwrap(), &name]);
    ok(&s, &["push", "--compression", "none", &name]);
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

/// Adds an OCI index over `entries` (tag, platform) to the layout as tag `name`.
fn add_index(l: &Layout, name: &str, entries: &[(&str, &str, &str)]) {
    let index_path = l.path.join("index.json");
    let mut top: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let mut manifests = Vec::new();
    for (tag, arch, variant) in entries {
        let mut d = top["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == *tag)
            .unwrap()
            .clone();
        d.as_object_mut().unwrap().remove("annotations");
        let mut platform = serde_json::json!({"architecture": arch, "os": "linux"});
        if !variant.is_empty() {
            platform["variant"] = (*variant).into();
        }
        d["platform"] = platform;
        manifests.push(d);
    }
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    let digest = digest_of(&bytes);
    std::fs::write(l.path.join("blobs/sha256").join(&digest[7..]), &bytes).unwrap();
    top["manifests"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": name}
    }));
    std::fs::write(index_path, serde_json::to_vec(&top).unwrap()).unwrap();
}

#[test]
fn index_pull_picks_the_platform_and_records_the_index_digest() {
    let reg = Registry::start(Auth::None);
    let s = Strata::new();
    let l = Layout::init(&s.path("layout"));
    for (tag, arch) in [("amd", "amd64"), ("arm", "arm64")] {
        l.new_image(tag);
        let st = std::process::Command::new("umoci")
            .args(["config", "--image", &format!("{}:{tag}", l.path.display()), "--architecture", arch])
            .status()
            .unwrap();
        assert!(st.success());
        l.add_layer(tag, |root| std::fs::write(root.join("arch"), arch).unwrap());
    }
    add_index(&l, "multi", &[("amd", "amd64", ""), ("arm", "arm64", "v8")]);
    let name = format!("{}/multi:1", reg.host());
    let st = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:multi", l.path.display()))
        .arg(format!("docker://{name}"))
        .status()
        .unwrap();
    assert!(st.success());
    let index_digest = digest_of(&skopeo_raw(&name, None));

    let arm = ok(&s, &["pull", "--platform", "linux/arm64", &name]);
    assert!(arm.contains(&format!("Digest: {index_digest}")), "{arm}");
    let inspect: serde_json::Value = serde_json::from_str(&ok(&s, &["inspect", &name])).unwrap();
    assert_eq!(inspect[0]["Architecture"], "arm64");
    assert_eq!(inspect[0]["RepoDigests"][0], format!("{}/multi@{index_digest}", reg.host()));

    // By digest, default platform (this test machine's): no tag is set, the other image arrives.
    let by_digest = format!("{}/multi@{index_digest}", reg.host());
    let out = ok(&s, &["pull", &by_digest]);
    assert!(out.contains(&format!("Status: Downloaded newer image for {by_digest}")), "{out}");
    let host_arch = if cfg!(target_arch = "x86_64") { "amd64" } else { "arm64" };
    let listing = ok(&s, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(listing.lines().count(), if host_arch == "arm64" { 1 } else { 2 }, "{listing}");
    let err = fails(&s, &["pull", "--platform", "linux/riscv64", &name]);
    assert!(
        err.contains("no matching manifest for linux/riscv64") && err.contains("linux/arm64/v8"),
        "{err}"
    );
}

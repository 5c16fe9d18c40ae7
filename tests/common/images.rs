//! Test fixtures: images built with the real peers (umoci, skopeo) and hand-made archives (tar crate)
//! for the cases the peers refuse to produce; plus a store snapshot to prove a failed load changed
//! nothing.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// Runs a program, panicking with its output on failure; returns stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell script in `dir`.
pub fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh").arg("-euc").arg(script).current_dir(dir).output().expect("sh");
    assert!(out.status.success(), "script failed: {}\n{script}", String::from_utf8_lossy(&out.stderr));
}

pub fn skopeo(args: &[&str]) -> String {
    let mut all = vec!["--insecure-policy"];
    all.extend_from_slice(args);
    run("skopeo", &all)
}

/// `umoci unpack --image IMAGE` into a fresh bundle under `work`; returns its rootfs.
pub fn umoci_unpack(image: &str, work: &Path, name: &str) -> PathBuf {
    let bundle = work.join(name);
    run("umoci", &["unpack", "--image", image, bundle.to_str().unwrap()]);
    bundle.join("rootfs")
}

/// A multi-layer OCI layout made by umoci, and its tree as umoci unpacks it.
pub struct Fixture {
    /// The OCI layout directory; the image is tagged [`Fixture::TAG`].
    pub layout: PathBuf,
    /// `umoci unpack` of the image: what every round trip must reproduce.
    pub rootfs: PathBuf,
    pub work: PathBuf,
}

impl Fixture {
    pub const TAG: &'static str = "t1";

    pub fn image(&self) -> String {
        format!("{}:{}", self.layout.display(), Self::TAG)
    }

    /// `skopeo copy` of the image to another transport, e.g. `docker-archive:F:name:tag`.
    pub fn convert(&self, dest: &str) {
        skopeo(&["copy", &format!("oci:{}", self.image()), dest]);
    }
}

/// Built once per test binary (it takes a few seconds) and shared read-only.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // Statics are never dropped: keep it under cargo's target tmp dir and clear old runs' copies.
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_stale(base, "archive-fixture-");
        let work = tempfile::Builder::new().prefix("archive-fixture-").tempdir_in(base).unwrap().keep();
        sh(&work, FIXTURE_SCRIPT);
        let layout = work.join("oci");
        let rootfs = umoci_unpack(&format!("{}:{}", layout.display(), Fixture::TAG), &work, "expected");
        Fixture { layout, rootfs, work }
    })
}

/// Removes fixture directories older than an hour (left by earlier test runs).
fn remove_stale(base: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 3600);
        if old && e.file_name().to_string_lossy().starts_with(prefix) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Three layers: a rich first one (setuid, sticky, devices, fifo, hard and symbolic links, xattrs on
/// files and directories, owners, a long and a non-ASCII name), a second that deletes and changes
/// things (`.wh.` whiteouts), and a hand-made third with an opaque directory.
const FIXTURE_SCRIPT: &str = r#"
umoci init --layout oci
umoci new --image oci:t1
umoci unpack --image oci:t1 b
R=b/rootfs
mkdir -p $R/etc $R/bin $R/gone/sub $R/opq/keep $R/deep/a/b/c $R/tmp
echo hello > $R/etc/hello
head -c 200000 /dev/urandom > $R/bin/random
cp /bin/busybox $R/bin/busybox
chmod 4755 $R/bin/busybox
echo sg > $R/bin/sgid && chmod 2711 $R/bin/sgid
chmod 1777 $R/tmp
ln $R/etc/hello $R/etc/hello-hard
ln -s ../etc/hello $R/bin/hello-link
ln -s /nonexistent/abs $R/bin/dangling
mknod $R/etc/null c 1 3
mknod $R/etc/loop b 7 0
mkfifo $R/etc/fifo
setfattr -n user.test -v value $R/etc/hello
setfattr -n trusted.strata -v x $R/bin/random
setfattr -n user.dir -v d $R/etc
LONG=$(printf 'n%.0s' $(seq 1 200))
echo long > "$R/deep/a/b/c/$LONG"
echo unicode > "$R/ünïcødé-文件 name.txt"
chown 1000:1000 $R/etc/hello
chown -h 7:8 $R/bin/hello-link
chown 123:456 $R/opq
echo del > $R/del.txt
touch $R/gone/sub/f $R/opq/keep/a $R/opq/old
umoci repack --refresh-bundle --image oci:t1 b
rm $R/del.txt
rm -rf $R/gone
echo changed > $R/etc/changed
chmod 640 $R/bin/random
echo new > $R/new.txt
umoci repack --image oci:t1 b
mkdir -p l3/opq
: > l3/opq/.wh..wh..opq
echo fresh > l3/opq/fresh
tar -C l3 --numeric-owner --owner=0 --group=0 -cf l3.tar opq
umoci raw add-layer --image oci:t1 l3.tar
umoci gc --layout oci
"#;

/// Every file under a store root with its size and content hash (directories as "dir"): two
/// snapshots are equal exactly when the store did not change.
pub fn store_snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.insert(rel, "dir".into());
                stack.push(path);
            } else if meta.is_file() {
                let hash = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
                out.insert(rel, format!("{} {hash}", meta.len()));
            } else {
                out.insert(rel, format!("{:?}", meta.file_type()));
            }
        }
    }
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One member of a hand-made tar.
pub enum Member<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

/// A tar built member by member; names are written raw so that evil ones (`../x`) survive.
pub fn tar_of(members: &[Member<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let (name, data): (&str, &[u8]) = match m {
            Member::File(n, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                (n, d)
            }
            Member::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (n, &[])
            }
            Member::Symlink(n, t) | Member::HardLink(n, t) => {
                let kind = if matches!(m, Member::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                h.set_entry_type(kind);
                h.set_link_name_literal(t).unwrap();
                (n, &[])
            }
        };
        let raw = &mut h.as_old_mut().name;
        raw.fill(0);
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A minimal image config for the given layers (uncompressed tars).
pub fn config_for(layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("sha256:{}", sha256_hex(l))).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": diff_ids.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// A docker-archive (`docker save` < 25 layout) of the given layer tars, written to `path`.
/// `config` overrides the config (e.g. with a wrong diff_id); `tags` become RepoTags.
pub fn docker_archive(path: &Path, layers: &[Vec<u8>], config: Option<Vec<u8>>, tags: &[&str]) {
    let config = config.unwrap_or_else(|| config_for(layers));
    let config_name = format!("{}.json", sha256_hex(&config));
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let name = format!("layer{i}/layer.tar");
        files.push((name.clone(), l.clone()));
        names.push(name);
    }
    files.push((config_name.clone(), config));
    let manifest = serde_json::json!([{"Config": config_name, "RepoTags": tags, "Layers": names}]);
    files.push(("manifest.json".into(), serde_json::to_vec(&manifest).unwrap()));
    write_tar(path, &files);
}

/// A tar of plain files (names are ordinary here).
pub fn write_tar(path: &Path, files: &[(String, Vec<u8>)]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap();
}

/// A tar of a directory tree (GNU tar), e.g. an OCI layout turned into an OCI archive by hand.
pub fn tar_dir(dir: &Path, out: &Path) {
    run("tar", &["-C", dir.to_str().unwrap(), "-cf", out.to_str().unwrap(), "."]);
}

/// A hand-made OCI layout in `dir` with uncompressed layers, tagged `ref_name`. `tweak` may edit
/// the manifest JSON before it is written (wrong sizes, extra layers).
pub fn oci_layout(
    dir: &Path,
    layers: &[Vec<u8>],
    config: Option<Vec<u8>>,
    ref_name: &str,
    tweak: impl FnOnce(&mut serde_json::Value),
) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        serde_json::json!({"digest": format!("sha256:{hex}"), "size": bytes.len()})
    };
    let config = config.unwrap_or_else(|| config_for(layers));
    let mut cdesc = put(&config);
    cdesc["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let ldescs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            let mut d = put(l);
            d["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
            d
        })
        .collect();
    let mut manifest = serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cdesc, "layers": ldescs});
    tweak(&mut manifest);
    let mut mdesc = put(&serde_json::to_vec(&manifest).unwrap());
    mdesc["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    mdesc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": ref_name});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [mdesc]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// What a store's `tmp/` holds besides `gc-pending`, the mark an open writer keeps there until its
/// handle closes (the store collects its garbage then): staging a command should have removed.
pub fn tmp_leftovers(store_root: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(store_root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "gc-pending")
        .collect()
}

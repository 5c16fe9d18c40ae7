//! Layers written by umoci (a real peer): unpacked by us, they must equal umoci's own unpack.

#[path = "common/tar_fixtures.rs"]
mod tar_fixtures;

use std::path::Path;

use strata::layer::{Compression, PackOptions, pack_dir, unpack};
use tar_fixtures::*;

/// Layer blob hexes of the manifest tagged `tag` in an OCI layout.
fn manifest_layers(layout: &Path, tag: &str) -> Vec<String> {
    let read =
        |p: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let index = read(&layout.join("index.json"));
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()
        .clone();
    let hex = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
    let manifest = read(&layout.join("blobs/sha256").join(hex));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string())
        .collect()
}

const POPULATE: &str = r#"set -e; r=bundle/rootfs
mkdir -p $r/etc $r/usr/bin $r/dev $r/tmp $r/var/lib/gone-dir/sub $r/opt/recreated
printf 'root:x:0:0\n' > $r/etc/passwd; chmod 0644 $r/etc/passwd
printf 'elf' > $r/usr/bin/su; chown 0:0 $r/usr/bin/su; chmod 4755 $r/usr/bin/su
printf 'w' > $r/usr/bin/wall; chown 0:5 $r/usr/bin/wall; chmod 2755 $r/usr/bin/wall
chmod 1777 $r/tmp; ln $r/usr/bin/su $r/usr/bin/su-hard; ln -s /usr/bin/su $r/usr/bin/su-sym
mknod $r/dev/null c 1 3; mknod $r/dev/loop0 b 7 0; mkfifo $r/dev/initctl
setfattr -n user.mime -v text/plain $r/etc/passwd; setfattr -n user.dir -v 1 $r/etc
printf g > $r/var/lib/gone-dir/sub/f; printf o > $r/opt/recreated/old; printf d > $r/etc/deleted
chown -R 1000:1000 $r/var/lib; printf u > "$r/etc/ünïcødé-ファイル"
long=$(printf 'n%.0s' $(seq 1 150)); mkdir -p $r/deep/$long; printf l > $r/deep/$long/$long
ln -s $long/$long $r/deep/longlink"#;

const CHANGE: &str = r#"set -e; r=bundle2/rootfs
rm $r/etc/deleted; rm -r $r/var/lib/gone-dir; rm -r $r/opt/recreated; mkdir $r/opt/recreated
printf n > $r/opt/recreated/new; printf changed > $r/etc/passwd"#;

#[test]
fn umoci_layers_unpack_like_umoci_unpacks_them() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().display();
    sh(&format!(
        "cd {dir} && umoci init --layout img && umoci new --image img:base && \
         umoci unpack --image img:base bundle && ({POPULATE}) && umoci repack --image img:v1 bundle && \
         umoci unpack --image img:v1 ref1 && umoci unpack --image img:v1 bundle2 && \
         ({CHANGE}) && umoci repack --image img:v2 bundle2"
    ));
    let layers = manifest_layers(&t.path().join("img"), "v2");
    assert_eq!(layers.len(), 2, "{layers:?}");
    let blob = |hex: &str| std::fs::read(t.path().join("img/blobs/sha256").join(hex)).unwrap();

    // Layer 1 alone equals umoci's unpack of v1, entry by entry.
    let d1 = t.path().join("d1");
    std::fs::create_dir(&d1).unwrap();
    let u = unpack(&blob(&layers[0])[..], &d1, None).unwrap();
    assert_eq!(u.compression, Compression::Gzip);
    assert_eq!(u.blob.hex(), layers[0]);
    let want = snapshot(&t.path().join("ref1/rootfs"));
    assert_same(&want, &snapshot(&d1));
    let long = "n".repeat(150);
    assert_eq!(want[&format!("deep/{long}/{long}")].size, 1);
    assert_eq!(want["usr/bin/su"].mode, 0o4755);
    assert_eq!(want["dev/null"].rdev, (1, 3));
    assert_eq!(want["usr/bin/su-hard"].link_group.as_deref(), Some("usr/bin/su"));
    assert_eq!(want["etc/passwd"].xattrs, vec![("user.mime".into(), b"text/plain".to_vec())]);

    // Layer 2 carries the deletions as OCI whiteout files, kept as such.
    let d2 = t.path().join("d2");
    std::fs::create_dir(&d2).unwrap();
    unpack(&blob(&layers[1])[..], &d2, None).unwrap();
    let s2 = snapshot(&d2);
    assert_eq!(s2["etc/.wh.deleted"].kind, 'f');
    assert!(s2.contains_key("var/lib/.wh.gone-dir"), "{:?}", s2.keys().collect::<Vec<_>>());
    assert_eq!(s2["opt/recreated/new"].content, sha256_hex(b"n"));
    assert_eq!(s2["etc/passwd"].content, sha256_hex(b"changed"));

    // Our pack of umoci's tree unpacks to the same tree again.
    let mut out = Vec::new();
    pack_dir(&d1, &mut out, &PackOptions { compression: Compression::Zstd, clamp_mtime: None }).unwrap();
    let d3 = t.path().join("d3");
    std::fs::create_dir(&d3).unwrap();
    unpack(&out[..], &d3, None).unwrap();
    assert_same(&want, &snapshot(&d3));
}

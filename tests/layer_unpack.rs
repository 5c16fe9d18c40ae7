//! unpack: every entry type and attribute, digests, compression, odd streams.

#[path = "common/tar_fixtures.rs"]
mod tar_fixtures;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use strata::layer::{Compression, unpack};
use tar_fixtures::*;

/// A tar exercising every type and attribute, built with the tar crate.
fn rich_tar() -> Vec<u8> {
    type B = tar::Builder<Vec<u8>>;
    let mut b: B = tar::Builder::new(Vec::new());
    let add = |b: &mut B,
               path: &str,
               kind: tar::EntryType,
               mode: u32,
               data: &[u8],
               f: &dyn Fn(&mut tar::Header)| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(2000);
        h.set_mtime(1_500_000_000);
        h.set_size(data.len() as u64);
        f(&mut h);
        b.append_data(&mut h, path, data).unwrap();
    };
    let none = |_: &mut tar::Header| {};
    add(&mut b, "etc/", tar::EntryType::Directory, 0o755, b"", &none);
    add(&mut b, "etc/passwd", tar::EntryType::Regular, 0o644, b"root:x:0:0\n", &none);
    add(&mut b, "usr/bin/su", tar::EntryType::Regular, 0o4755, b"\x7fELF", &none);
    add(&mut b, "usr/bin/wall", tar::EntryType::Regular, 0o2755, b"wall", &none);
    add(&mut b, "tmp/", tar::EntryType::Directory, 0o1777, b"", &none);
    add(&mut b, "dev/null", tar::EntryType::Char, 0o666, b"", &|h| {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    });
    add(&mut b, "dev/sda", tar::EntryType::Block, 0o660, b"", &|h| {
        h.set_device_major(8).unwrap();
        h.set_device_minor(0).unwrap();
    });
    add(&mut b, "run/fifo", tar::EntryType::Fifo, 0o600, b"", &none);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_mtime(1_500_000_001);
    h.set_size(0);
    b.append_link(&mut h, "etc/motd", "/usr/share/motd").unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(&mut h, "usr/bin/su2", "usr/bin/su").unwrap();
    // Long names: the tar crate writes GNU long-name entries for these.
    let long = format!("deep/{}/file-{}", "d".repeat(120), "é".repeat(40));
    add(&mut b, &long, tar::EntryType::Regular, 0o600, b"long", &none);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    b.append_link(&mut h, "longlink", format!("/{}", "t".repeat(200))).unwrap();
    // PAX: sub-second mtime, xattrs on a file and on a directory, uid above ustar range.
    b.append_pax_extensions([
        ("mtime", &b"1600000000.123456789"[..]),
        ("SCHILY.xattr.user.dir", &b"on-a-dir"[..]),
    ])
    .unwrap();
    add(&mut b, "xdir/", tar::EntryType::Directory, 0o750, b"", &none);
    b.append_pax_extensions([
        ("SCHILY.xattr.user.a", &b"1"[..]),
        ("SCHILY.xattr.trusted.t", &b"\x00bin\xff"[..]),
        ("uid", &b"3000000"[..]),
    ])
    .unwrap();
    add(&mut b, "xdir/file", tar::EntryType::Regular, 0o640, b"x", &none);
    add(&mut b, ".wh.gone", tar::EntryType::Regular, 0o644, b"", &none);
    add(&mut b, "xdir/.wh..wh..opq", tar::EntryType::Regular, 0o644, b"", &none);
    b.into_inner().unwrap()
}

#[test]
fn restores_every_type_and_attribute() {
    let a = Arena::new();
    let tar = rich_tar();
    let u = unpack(&tar[..], &a.dest(), None).unwrap();
    assert_eq!(u.compression, Compression::None);
    assert_eq!(u.entries, 16);
    assert_eq!(u.data_bytes, 11 + 4 + 4 + 4 + 1);
    let s = snapshot(&a.dest());

    let passwd = &s["etc/passwd"];
    assert_eq!((passwd.kind, passwd.mode, passwd.uid, passwd.gid), ('f', 0o644, 1000, 2000));
    assert_eq!(passwd.content, sha256_hex(b"root:x:0:0\n"));
    assert_eq!(passwd.mtime, (1_500_000_000, 0));
    assert_eq!(s["usr/bin/su"].mode, 0o4755);
    assert_eq!(s["usr/bin/wall"].mode, 0o2755);
    assert_eq!(s["tmp"].mode, 0o1777);
    assert_eq!((s["dev/null"].kind, s["dev/null"].rdev, s["dev/null"].mode), ('c', (1, 3), 0o666));
    assert_eq!((s["dev/sda"].kind, s["dev/sda"].rdev), ('b', (8, 0)));
    assert_eq!(s["run/fifo"].kind, 'p');
    assert_eq!((s["etc/motd"].kind, s["etc/motd"].link.as_str()), ('l', "/usr/share/motd"));
    assert_eq!(s["etc/motd"].mtime, (1_500_000_001, 0));
    assert_eq!(s["usr/bin/su2"].link_group.as_deref(), Some("usr/bin/su"));
    assert_eq!(s["usr/bin/su"].link_group.as_deref(), Some("usr/bin/su"));
    let long = format!("deep/{}/file-{}", "d".repeat(120), "é".repeat(40));
    assert_eq!(s[&long].content, sha256_hex(b"long"));
    assert_eq!(s["longlink"].link, format!("/{}", "t".repeat(200)));
    // Parents missing from the tar: 0755, root-owned.
    for implied in ["usr", "usr/bin", "dev", "run", "deep"] {
        assert_eq!((s[implied].kind, s[implied].mode, s[implied].uid), ('d', 0o755, 0), "{implied}");
    }
    let xdir = &s["xdir"];
    assert_eq!(xdir.mode, 0o750);
    assert_eq!(xdir.mtime, (1_600_000_000, 123_456_789), "dir mtime set after its children");
    assert_eq!(xdir.xattrs, vec![("user.dir".into(), b"on-a-dir".to_vec())]);
    let xf = &s["xdir/file"];
    assert_eq!(xf.uid, 3_000_000);
    assert_eq!(
        xf.xattrs,
        vec![("trusted.t".into(), b"\x00bin\xff".to_vec()), ("user.a".into(), b"1".to_vec())]
    );
    // Whiteouts stay ordinary files named as in the tar.
    assert_eq!((s[".wh.gone"].kind, s[".wh.gone"].size), ('f', 0));
    assert_eq!(s["xdir/.wh..wh..opq"].kind, 'f');
    // Directory mtimes survive children being created in them.
    assert_eq!(s["etc"].mtime, (1_500_000_000, 0));
}

#[test]
fn digests_match_sha256sum_for_every_compression() {
    let tar = rich_tar();
    let tar_digest = sha256_hex(&tar);
    for (c, blob) in
        [(Compression::None, tar.clone()), (Compression::Gzip, gzip(&tar)), (Compression::Zstd, zstd(&tar))]
    {
        let a = Arena::new();
        let mut copy = Vec::new();
        let u = unpack(&blob[..], &a.dest(), Some(&mut copy)).unwrap();
        assert_eq!(u.compression, c);
        assert_eq!(u.blob.hex(), sha256_hex(&blob), "{c}");
        assert_eq!(u.blob_size, blob.len() as u64);
        assert_eq!(u.diff_id.hex(), tar_digest, "{c}");
        assert_eq!(u.tar_size, tar.len() as u64);
        assert_eq!(copy, blob, "the tee'd copy is the blob");
    }
}

#[test]
fn digests_agree_with_gnu_tools() {
    let a = Arena::new();
    let src = a.tmp.path().join("src");
    sh(&format!(
        "mkdir -p {s}/a/b && echo hi > {s}/a/b/f && ln -s f {s}/a/l && cd {s} && tar -czf ../l.tgz .",
        s = src.display()
    ));
    let blob = a.tmp.path().join("l.tgz");
    let u = unpack(std::fs::File::open(&blob).unwrap(), &a.dest(), None).unwrap();
    let sum = |cmd: &str| sh(cmd).split_whitespace().next().unwrap().to_string();
    assert_eq!(u.blob.hex(), sum(&format!("sha256sum {}", blob.display())));
    assert_eq!(u.diff_id.hex(), sum(&format!("zcat {} | sha256sum", blob.display())));
    assert_eq!(std::fs::read(a.dest().join("a/b/f")).unwrap(), b"hi\n");
}

#[test]
fn gnu_tar_pax_archive_restores_the_source_tree() {
    let a = Arena::new();
    let src = a.tmp.path().join("src");
    sh(&format!(
        r#"set -e; s={s}; mkdir -p $s/d/sub $s/sticky
        printf data > $s/d/file; chmod 0640 $s/d/file; chown 12:34 $s/d/file
        setfattr -n user.color -v blue $s/d/file; setfattr -n user.dirattr -v yes $s/d
        setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= $s/d/file
        printf s > $s/d/suid; chmod 4711 $s/d/suid; chmod 1777 $s/sticky
        ln $s/d/file $s/d/hard; ln -s ../d/file $s/d/sym; mkfifo $s/d/fifo; mknod $s/d/tty c 5 0
        name=$(printf 'ü%.0s' $(seq 1 80)); printf x > "$s/d/sub/$name"
        touch -d '2021-01-02 03:04:05.123456789' $s/d/file $s/d/sub $s/d
        touch -h -d '2020-01-01 00:00:00' $s/d/sym
        cd $s && tar --xattrs --xattrs-include='*' --format=pax -cf ../g.tar ."#,
        s = src.display()
    ));
    let tar = std::fs::read(a.tmp.path().join("g.tar")).unwrap();
    unpack(&tar[..], &a.dest(), None).unwrap();
    assert_same(&snapshot(&src), &snapshot(&a.dest()));
    let caps = xattr::get(a.dest().join("d/file"), "security.capability").unwrap();
    assert!(caps.is_some(), "security.capability survives chown");
}

#[test]
fn gnu_format_long_names_and_links() {
    let a = Arena::new();
    let src = a.tmp.path().join("src");
    let long = "x".repeat(150);
    sh(&format!(
        "mkdir -p {s}/{l}/{l} && echo hi > {s}/{l}/{l}/{l} && ln -s {s}/{l}/{l}/{l} {s}/ln && \
         ln {s}/{l}/{l}/{l} {s}/{l}/hard-{l} && cd {s} && tar --format=gnu -cf ../g.tar .",
        s = src.display(),
        l = long
    ));
    let tar = std::fs::read(a.tmp.path().join("g.tar")).unwrap();
    unpack(&tar[..], &a.dest(), None).unwrap();
    // GNU format stores whole seconds only.
    let mut want = snapshot(&src);
    want.values_mut().for_each(|i| i.mtime.1 = 0);
    assert_same(&want, &snapshot(&a.dest()));
}

#[test]
fn accepts_unpadded_last_member_without_end_blocks() {
    let tar = RawTar::new().dir("d/").file("d/a", b"first").file("d/last", &[7u8; 700]).bytes;
    let unpadded = &tar[..tar.len() - (512 - 700 % 512)];
    assert_eq!(unpadded.len() % 512, 700 % 512);
    for blob in [unpadded.to_vec(), gzip(unpadded), zstd(unpadded)] {
        let a = Arena::new();
        let u = unpack(&blob[..], &a.dest(), None).unwrap();
        assert_eq!(u.entries, 3);
        assert_eq!(u.diff_id.hex(), sha256_hex(unpadded));
        assert_eq!(std::fs::read(a.dest().join("d/last")).unwrap(), vec![7u8; 700]);
    }
    // Padded but no end-of-archive blocks: fine too.
    let a = Arena::new();
    unpack(&tar[..], &a.dest(), None).unwrap();
}

#[test]
fn truncated_member_data_is_an_error() {
    let tar = RawTar::new().file("a", &[1u8; 700]).end();
    for cut in [512 + 100, 512 + 699, 512 + 700 + 10] {
        let a = Arena::new();
        let r = unpack(&tar[..cut], &a.dest(), None);
        if cut == 512 + 700 + 10 {
            // Ends inside the padding of the last member: data is complete, padding is not.
            assert!(r.is_err(), "cut at {cut}: partial padding is truncation");
        } else {
            let e = format!("{:#}", r.unwrap_err());
            assert!(e.contains("tar entry a"), "{e}");
        }
    }
}

#[test]
fn truncated_or_corrupt_compressed_streams_are_errors() {
    let tar = rich_tar();
    for blob in [gzip(&tar), zstd(&tar)] {
        for cut in [blob.len() / 2, blob.len() - 4, blob.len() - 1] {
            let a = Arena::new();
            assert!(unpack(&blob[..cut], &a.dest(), None).is_err(), "cut at {cut}/{}", blob.len());
        }
        let mut bad = blob.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        let a = Arena::new();
        assert!(unpack(&bad[..], &a.dest(), None).is_err());
    }
    // A gzip whose trailer CRC is wrong, even after the tar's end.
    let mut g = gzip(&tar);
    let n = g.len();
    g[n - 8] ^= 1;
    let a = Arena::new();
    assert!(unpack(&g[..], &a.dest(), None).is_err());
}

#[test]
fn non_tar_input_is_rejected() {
    let a = Arena::new();
    let e = unpack(&b"just some text, not an archive"[..], &a.dest(), None).unwrap_err();
    assert_eq!(e.to_string(), "not a tar archive, gzip or zstd stream");
    let e = unpack(&[0xAAu8; 4096][..], &a.dest(), None).unwrap_err();
    assert_eq!(e.to_string(), "not a tar archive, gzip or zstd stream");
}

#[test]
fn empty_archive_is_fine() {
    let a = Arena::new();
    let u = unpack(&[0u8; 10240][..], &a.dest(), None).unwrap();
    assert_eq!((u.entries, u.tar_size), (0, 10240));
    let u = unpack(&gzip(&[0u8; 1024])[..], &a.dest(), None).unwrap();
    assert_eq!(u.diff_id.hex(), sha256_hex(&[0u8; 1024]));
}

#[test]
fn later_entries_replace_earlier_ones() {
    let a = Arena::new();
    let tar = RawTar::new()
        .file("x", b"file")
        .dir("x/") // dir replaces file
        .file("x/inner", b"i")
        .dir("x/") // dir over dir merges
        .dir("y/")
        .file("y/child", b"c")
        .file("y", b"now a file") // file replaces a whole dir
        .symlink("z", "y")
        .file("z", b"replaces the symlink, not its target")
        .file("w", b"1")
        .file("w", b"2")
        .end();
    unpack(&tar[..], &a.dest(), None).unwrap();
    let s = snapshot(&a.dest());
    assert_eq!(s["x"].kind, 'd');
    assert_eq!(s["x/inner"].content, sha256_hex(b"i"));
    assert_eq!(s["y"].content, sha256_hex(b"now a file"));
    assert!(!s.contains_key("y/child"));
    assert_eq!(s["z"].content, sha256_hex(b"replaces the symlink, not its target"));
    assert_eq!(s["w"].content, sha256_hex(b"2"));
}

#[test]
fn bare_whiteout_name_is_an_error() {
    let a = Arena::new();
    let tar = RawTar::new().file("d/.wh.", b"").end();
    let e = format!("{:#}", unpack(&tar[..], &a.dest(), None).unwrap_err());
    assert!(e.contains(".wh."), "{e}");
}

#[test]
fn root_entry_sets_root_attributes() {
    let a = Arena::new();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o700);
    h.set_size(0);
    h.set_mtime(1_234_567_890);
    let tar = RawTar::new()
        .raw(
            {
                h.as_old_mut().name[..2].copy_from_slice(b"./");
                h
            },
            b"",
        )
        .file("./f", b"f")
        .end();
    unpack(&tar[..], &a.dest(), None).unwrap();
    let m = std::fs::metadata(a.dest()).unwrap();
    assert_eq!((m.permissions().mode() & 0o7777, m.mtime()), (0o700, 1_234_567_890));
}

#[test]
fn umoci_insert_layer_without_end_blocks_unpacks() {
    // umoci 0.4.7 `insert` writes an unpadded last member and no end-of-archive blocks.
    let a = Arena::new();
    let t = a.tmp.path();
    sh(&format!(
        "cd {t} && umoci init --layout img && umoci new --image img:t && \
         mkdir -p ins/dir && printf 12345 > ins/dir/odd && umoci insert --image img:t ins /added",
        t = t.display()
    ));
    let layers = manifest_layers(&t.join("img"), "t");
    let last = layers.last().unwrap();
    let blob = std::fs::read(t.join("img/blobs/sha256").join(last)).unwrap();
    let u = unpack(&blob[..], &a.dest(), None).unwrap();
    assert_eq!(u.blob.hex(), last);
    assert_eq!(std::fs::read(a.dest().join("added/dir/odd")).unwrap(), b"12345");
    let zcat = run(Command::new("sh")
        .arg("-c")
        .arg(format!("zcat {}/img/blobs/sha256/{last} | sha256sum", t.display())));
    assert_eq!(u.diff_id.hex(), zcat.split_whitespace().next().unwrap());
}

/// Layer blob hexes of the manifest tagged `tag` in an OCI layout.
pub fn manifest_layers(layout: &std::path::Path, tag: &str) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    let hex = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string())
        .collect()
}

#[test]
fn gnu_sparse_files_restore_their_content_and_pax_sparse_is_refused() {
    let a = Arena::new();
    let src = a.tmp.path().join("src");
    sh(&format!(
        "mkdir -p {s} && cd {s} && truncate -s 3M sp && printf head | dd of=sp conv=notrunc status=none && \
         printf tail | dd of=sp bs=1 seek=3000000 conv=notrunc status=none && \
         tar --format=gnu -S -cf ../gnu.tar sp && tar --format=pax -S -cf ../pax.tar sp",
        s = src.display()
    ));
    let tar = std::fs::read(a.tmp.path().join("gnu.tar")).unwrap();
    unpack(&tar[..], &a.dest(), None).unwrap();
    assert_eq!(std::fs::read(a.dest().join("sp")).unwrap(), std::fs::read(src.join("sp")).unwrap());

    let b = Arena::new();
    let tar = std::fs::read(a.tmp.path().join("pax.tar")).unwrap();
    let e = format!("{:#}", unpack(&tar[..], &b.dest(), None).unwrap_err());
    assert!(e.contains("sparse"), "{e}");
}

#[test]
fn old_v7_archives_unpack() {
    let a = Arena::new();
    let src = a.tmp.path().join("src");
    sh(&format!(
        "mkdir -p {s}/d && printf v7 > {s}/d/f && ln {s}/d/f {s}/d/h && ln -s f {s}/d/l && \
         touch -h -d @1000000000 {s}/d/l && cd {s} && tar --format=v7 -cf ../v7.tar d",
        s = src.display()
    ));
    let tar = std::fs::read(a.tmp.path().join("v7.tar")).unwrap();
    assert_ne!(&tar[257..262], b"ustar", "really a v7 header");
    unpack(&tar[..], &a.dest(), None).unwrap();
    let mut want = snapshot(&src);
    want.values_mut().for_each(|i| i.mtime.1 = 0);
    assert_same(&want, &snapshot(&a.dest()));
}

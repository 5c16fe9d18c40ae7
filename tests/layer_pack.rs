//! pack_dir and the entry writer: round trips, reproducibility, whiteout translation.

#[path = "common/tar_fixtures.rs"]
mod tar_fixtures;

use std::io::Read;
use std::path::Path;

use strata::layer::{Compression, EntryKind, EntryMeta, PackOptions, TarEntryWriter, pack_dir, unpack};
use tar_fixtures::*;

/// A tree with every kind of entry and attribute, made with shell tools.
fn make_tree(root: &Path) {
    sh(&format!(
        r#"set -e; s={s}; mkdir -p $s/d/sub $s/sticky $s/empty
        printf data > $s/d/file; chmod 0640 $s/d/file; chown 12:34 $s/d/file
        setfattr -n user.color -v blue $s/d/file; setfattr -n user.dirattr -v yes $s/d
        setfattr -n trusted.t -v 1 $s/d/sub
        printf s > $s/d/suid; chmod 4711 $s/d/suid; chmod 1777 $s/sticky; chmod 2755 $s/d/sub
        ln $s/d/file $s/d/hard; ln $s/d/file $s/a-first-link; ln -s ../d/file $s/d/sym
        mkfifo $s/d/fifo; mknod $s/d/tty c 5 0; mknod $s/d/sda b 8 0
        name=$(printf 'ü%.0s' $(seq 1 80)); printf x > "$s/d/sub/$name"
        long=$(printf 'l%.0s' $(seq 1 120)); mkdir -p $s/$long; printf y > $s/$long/$long
        ln -s /$long/$long/$long/$long $s/longlink
        head -c 300000 /dev/urandom > $s/big
        touch -d '2021-01-02 03:04:05.123456789' $s/d/file $s/d/sub $s/d
        touch -h -d '2020-01-01 00:00:00.5' $s/d/sym
        touch -d '1969-12-31 23:59:58.25' $s/empty"#,
        s = root.display()
    ));
}

fn pack_to_vec(
    root: &Path,
    compression: Compression,
    clamp: Option<i64>,
) -> (Vec<u8>, strata::layer::Packed) {
    let mut out = Vec::new();
    let p = pack_dir(root, &mut out, &PackOptions { compression, clamp_mtime: clamp }).unwrap();
    (out, p)
}

fn decompress(blob: &[u8]) -> Vec<u8> {
    let (_, mut r) = strata::layer::compression::open_decompressed(blob).unwrap();
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

/// (path, type byte, link target) of each entry, in order.
fn listing(tar: &[u8]) -> Vec<(String, char, String)> {
    let mut ar = tar::Archive::new(tar);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let link =
                e.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned()).unwrap_or_default();
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                e.header().entry_type().as_byte() as char,
                link,
            )
        })
        .collect()
}

#[test]
fn round_trip_gives_the_same_tree_for_every_compression() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let want = snapshot(&src);
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let (blob, p) = pack_to_vec(&src, c, None);
        assert_eq!(p.blob.hex(), sha256_hex(&blob), "{c}");
        assert_eq!(p.blob_size, blob.len() as u64);
        let tar = decompress(&blob);
        assert_eq!(p.diff_id.hex(), sha256_hex(&tar), "{c}");
        assert_eq!(p.tar_size, tar.len() as u64);
        let dest = t.path().join(format!("dest-{c}"));
        std::fs::create_dir(&dest).unwrap();
        let u = unpack(&blob[..], &dest, None).unwrap();
        assert_eq!((u.diff_id, u.blob, u.entries), (p.diff_id.clone(), p.blob.clone(), p.entries));
        assert_same(&want, &snapshot(&dest));
        // And again: unpacked tree packs to the very same bytes.
        let (again, _) = pack_to_vec(&dest, c, None);
        assert_eq!(again, blob, "{c}: pack(unpack(pack(x))) == pack(x)");
    }
}

#[test]
fn digests_agree_with_sha256sum_and_zcat() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let (blob, p) = pack_to_vec(&src, Compression::Gzip, None);
    let f = t.path().join("l.tgz");
    std::fs::write(&f, &blob).unwrap();
    let first = |s: String| s.split_whitespace().next().unwrap().to_string();
    assert_eq!(p.blob.hex(), first(sh(&format!("sha256sum {}", f.display()))));
    assert_eq!(p.diff_id.hex(), first(sh(&format!("zcat {} | sha256sum", f.display()))));
}

#[test]
fn gnu_tar_reads_our_output_faithfully() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let (blob, _) = pack_to_vec(&src, Compression::None, None);
    std::fs::write(t.path().join("l.tar"), &blob).unwrap();
    sh(&format!(
        "mkdir {t}/gnu && tar --xattrs --xattrs-include='*' --numeric-owner -xpf {t}/l.tar -C {t}/gnu",
        t = t.path().display()
    ));
    assert_same(&snapshot(&src), &snapshot(&t.path().join("gnu")));
}

#[test]
fn output_is_sorted_with_parents_first_and_links_to_the_first_name() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_tree(&src);
    let (blob, _) = pack_to_vec(&src, Compression::None, None);
    let list = listing(&blob);
    let names: Vec<&str> = list.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names[0], "a-first-link");
    assert_eq!(&names[1..3], ["big", "d/"]);
    // Children of d/ in byte order, right after d/.
    let top_of_d = |n: &&&str| n.strip_prefix("d/").is_some_and(|r| !r.trim_end_matches('/').contains('/'));
    let d: Vec<&str> = names.iter().filter(top_of_d).copied().collect();
    assert_eq!(d, ["d/", "d/fifo", "d/file", "d/hard", "d/sda", "d/sub/", "d/suid", "d/sym", "d/tty"]);
    let kind = |n: &str| list.iter().find(|(x, _, _)| x == n).unwrap().clone();
    assert_eq!(kind("a-first-link").1, '0', "first name carries the data");
    assert_eq!(kind("d/file"), ("d/file".into(), '1', "a-first-link".into()));
    assert_eq!(kind("d/hard"), ("d/hard".into(), '1', "a-first-link".into()));
    // No user or group names, no atime/ctime records.
    let mut ar = tar::Archive::new(&blob[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        assert_eq!(e.header().username_bytes(), Some(&b""[..]));
        assert_eq!(e.header().groupname_bytes(), Some(&b""[..]));
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let k = x.unwrap().key().unwrap().to_string();
                assert!(!k.contains("atime") && !k.contains("ctime"), "{k}");
            }
        }
    }
}

/// Builds the same tree in the given creation order, with fixed times.
fn build_in_order(root: &Path, order: &[&str]) {
    std::fs::create_dir(root).unwrap();
    for step in order {
        sh(&format!("cd {} && {step}", root.display()));
    }
    sh(&format!("cd {} && find . -depth -exec touch -h -d '2022-02-02 02:02:02.5' {{}} +", root.display()));
}

#[test]
fn same_tree_built_in_different_orders_packs_byte_identically() {
    let t = tempfile::tempdir().unwrap();
    let steps = [
        "mkdir -p a/b c",
        "printf one > a/b/one",
        "printf two > c/two",
        "ln -sf ../c/two a/link",
        "mkdir -p z && printf zz > z/file && ln z/file hard",
        "setfattr -n user.k -v v c/two && setfattr -n user.a -v b c/two",
    ];
    let mut reversed = steps.to_vec();
    reversed.reverse();
    // Reverse order needs parents first; prepend the mkdirs.
    let mut reversed_ok = vec!["mkdir -p a/b c z", "printf zz > z/file", "printf two > c/two"];
    reversed_ok.extend(reversed.iter().filter(|s| !s.starts_with("mkdir")));
    reversed_ok.push("ln -f z/file hard");
    build_in_order(&t.path().join("one"), &steps);
    build_in_order(&t.path().join("two"), &reversed_ok);
    assert_same(&snapshot(&t.path().join("one")), &snapshot(&t.path().join("two")));
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let (a, pa) = pack_to_vec(&t.path().join("one"), c, None);
        let (b, pb) = pack_to_vec(&t.path().join("two"), c, None);
        assert!(a == b, "{c}: outputs differ");
        assert_eq!((pa.diff_id, pa.blob), (pb.diff_id, pb.blob));
    }
}

#[test]
fn overlay_whiteouts_become_oci_whiteouts() {
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("upper");
    sh(&format!(
        r#"set -e; u={u}; mkdir -p $u/opq/keep $u/opq2 $u/plain
        mknod $u/gone c 0 0; mknod $u/plain/gone2 c 0 0; mknod $u/realdev c 1 3
        setfattr -n trusted.overlay.opaque -v y $u/opq; setfattr -n user.overlay.opaque -v y $u/opq2
        printf n > $u/opq/new; : > $u/.wh.oci; : > $u/plain/.wh..wh..opq
        printf k > $u/kept; setfattr -n user.strata.origin -v x $u/kept; setfattr -n user.keep -v 1 $u/kept
        setfattr -n trusted.strata.cache -v x $u/kept"#,
        u = up.display()
    ));
    let (blob, _) = pack_to_vec(&up, Compression::None, None);
    let list = listing(&blob);
    let names: Vec<(&str, char)> = list.iter().map(|(n, k, _)| (n.as_str(), *k)).collect();
    assert_eq!(
        names,
        [
            (".wh.gone", '0'),
            (".wh.oci", '0'),
            ("kept", '0'),
            ("opq/", '5'),
            ("opq/.wh..wh..opq", '0'),
            ("opq/keep/", '5'),
            ("opq/new", '0'),
            ("opq2/", '5'),
            ("opq2/.wh..wh..opq", '0'),
            ("plain/", '5'),
            ("plain/.wh..wh..opq", '0'),
            ("plain/.wh.gone2", '0'),
            ("realdev", '3'),
        ]
    );
    // Unpacked, private and overlay xattrs are gone; others stay.
    let dest = t.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    unpack(&blob[..], &dest, None).unwrap();
    let s = snapshot(&dest);
    assert_eq!(s["kept"].xattrs, vec![("user.keep".into(), b"1".to_vec())]);
    assert!(s["opq"].xattrs.is_empty());
    assert!(s["opq2"].xattrs.is_empty());
    assert_eq!((s[".wh.gone"].kind, s[".wh.gone"].size), ('f', 0));
}

#[test]
fn clamp_mtime_caps_later_times_only() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sh(&format!(
        "mkdir -p {s} && cd {s} && touch -d @100 old && touch -d @5000.5 new && ln -s old sl && touch -h -d @9000 sl",
        s = src.display()
    ));
    let (blob, _) = pack_to_vec(&src, Compression::None, Some(1000));
    let dest = t.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    unpack(&blob[..], &dest, None).unwrap();
    let s = snapshot(&dest);
    assert_eq!(s["old"].mtime, (100, 0));
    assert_eq!(s["new"].mtime, (1000, 0));
    assert_eq!(s["sl"].mtime, (1000, 0));
}

#[test]
fn entry_writer_builds_a_layer_by_hand() {
    // How `strata export` uses it: entries from anywhere, same format.
    let mut w = TarEntryWriter::new(Vec::new(), None);
    let meta = |kind| EntryMeta {
        kind,
        mode: 0o755,
        uid: 1,
        gid: 2,
        mtime_sec: 1_700_000_000,
        mtime_nsec: 0,
        xattrs: vec![("user.x".into(), b"y".to_vec())],
    };
    w.append(b"bin", &meta(EntryKind::Dir), None).unwrap();
    w.append(b"bin/sh", &meta(EntryKind::File { size: 5 }), Some(&mut &b"#!sh\n"[..])).unwrap();
    w.append(b"bin/ash", &meta(EntryKind::HardLink { target: b"bin/sh".to_vec() }), None).unwrap();
    w.append(b"null", &meta(EntryKind::Char { major: 1, minor: 3 }), None).unwrap();
    let short = w.append(b"bad", &meta(EntryKind::File { size: 10 }), Some(&mut &b"short"[..]));
    assert!(short.is_err(), "content shorter than the size is an error");
    assert_eq!(w.entries(), 4);
    let tar = w.finish().unwrap();
    let t = tempfile::tempdir().unwrap();
    unpack(&tar[..], t.path(), None).unwrap();
    let s = snapshot(t.path());
    assert_eq!((s["bin"].uid, s["bin"].gid, s["bin"].mode), (1, 2, 0o755));
    assert_eq!(s["bin/ash"].link_group.as_deref(), Some("bin/ash"));
    assert_eq!(s["bin/sh"].link_group.as_deref(), Some("bin/ash"));
    assert_eq!(s["null"].rdev, (1, 3));
    // The kernel allows user.* xattrs only on files and directories: skipped, not fatal.
    assert!(s["null"].xattrs.is_empty());
    assert_eq!(s["bin"].xattrs, vec![("user.x".into(), b"y".to_vec())]);
}

#[test]
fn sockets_are_refused_with_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(t.path().join("sock")).unwrap();
    let err = pack_dir(t.path(), std::io::sink(), &PackOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains("sock"), "{err:#}");
}

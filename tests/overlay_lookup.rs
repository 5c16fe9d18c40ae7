//! Lookup, getattr and readdir over a stack: top wins, whiteouts (both formats) hide what is
//! below, opaque dirs hide lower children, whiteout names never show.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::mount::*;

/// l1 (top) over l2 over l3, OCI whiteouts.
fn oci_stack(s: &Scratch) {
    s.write("l3/a", "a3");
    s.write("l3/gone", "gone");
    s.write("l3/dir/x", "x3");
    s.write("l3/dir/y", "y3");
    s.write("l3/opq/old", "old");
    s.write("l3/file_then_dir", "f");
    s.write("l3/tree/deep/f", "deep");
    s.write("l2/a", "a2");
    s.write("l2/.wh.gone", "");
    s.write("l2/dir/.wh.x", "");
    s.write("l2/dir/z", "z2");
    s.write("l2/opq/.wh..wh..opq", "");
    s.write("l2/opq/new", "new");
    s.write("l2/tree", "now a file");
    s.write("l1/file_then_dir/inner", "i");
    s.write("l1/.wh.a", "");
    s.write("l1/a", "a1"); // whiteout never hides its own layer
    s.write("l1/.wh.nothing", "");
}

#[test]
fn oci_whiteouts_and_opaque_dirs() {
    let Some(s) = Scratch::for_fuse(3) else { return };
    oci_stack(&s);
    let m = s.mount_rw(3);
    assert_eq!(names(&m.mountpoint), ["a", "dir", "file_then_dir", "opq", "tree"]);
    assert_eq!(fs::read_to_string(m.path("a")).unwrap(), "a1");
    assert!(!m.path("gone").exists());
    assert!(fs::symlink_metadata(m.path(".wh.gone")).is_err());
    assert_eq!(names(&m.path("dir")), ["y", "z"]);
    assert_eq!(names(&m.path("opq")), ["new"]);
    assert!(m.path("file_then_dir").is_dir());
    assert_eq!(names(&m.path("file_then_dir")), ["inner"]);
    assert!(m.path("tree").is_file(), "a non-directory hides the lower subtree");
    assert!(!m.path("tree/deep/f").exists());
    // . and .. are there, st_nlink sane.
    let ls = sh(&format!("ls -a {}", m.path("dir").display()));
    assert!(ls.lines().any(|l| l == ".") && ls.lines().any(|l| l == ".."));
    assert_eq!(fs::metadata(m.path("a")).unwrap().nlink(), 1);
    assert!(fs::metadata(m.path("dir")).unwrap().nlink() >= 1);
    // Stat through the mount agrees with readdir for every entry.
    for n in names(&m.path("dir")) {
        assert!(fs::symlink_metadata(m.path("dir").join(&n)).is_ok(), "{n}");
    }
}

#[test]
fn overlayfs_style_whiteouts() {
    let Some(s) = Scratch::for_fuse(2) else { return };
    s.write("l2/a", "a");
    s.write("l2/b", "b");
    s.write("l2/d/old", "old");
    sh(&format!("mknod {} c 0 0", s.p("l1/a").display()));
    fs::create_dir(s.p("l1/d")).unwrap();
    s.write("l1/d/new", "new");
    sh(&format!("setfattr -n trusted.overlay.opaque -v y {}", s.p("l1/d").display()));
    let m = s.mount_rw(2);
    assert_eq!(names(&m.mountpoint), ["b", "d"]);
    assert_eq!(names(&m.path("d")), ["new"]);
    // The opaque xattr is strata's business, not the user's.
    let attrs = sh(&format!("getfattr -d -m - {} 2>/dev/null || true", m.path("d").display()));
    assert!(!attrs.contains("overlay"), "{attrs}");
}

#[test]
fn read_only_lowers_only() {
    let Some(s) = Scratch::for_fuse(2) else { return };
    s.write("l2/f", "f");
    s.write("l1/g", "g");
    let opts = format!("lowerdir={}:{}", s.p("l1").display(), s.p("l2").display());
    let m = Mount::overlay(&opts, &s.p("mnt"));
    assert_eq!(names(&m.mountpoint), ["f", "g"]);
    let e = fs::write(m.path("new"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    let e = fs::remove_file(m.path("f")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
}

/// Readers of one directory at once each keep their own listing: a reader that started before
/// the directory changed, and goes on after another reader has listed it anew, still sees every
/// name that was there exactly once (offsets name the reader's listing, not just a position).
#[test]
fn a_reader_keeps_its_listing_while_another_lists_the_changed_directory() {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let Some(s) = Scratch::for_fuse(1) else { return };
    const N: usize = 3000;
    for i in 0..N {
        s.write(&format!("l1/big/f{i:04}"), "");
    }
    let m = s.mount_rw(1);
    let dir = m.path("big");
    let mut reader = nix::dir::Dir::open(&dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    let name = |e: nix::dir::Entry| e.file_name().to_string_lossy().into_owned();
    let mut it = reader.iter();
    let mut seen: Vec<String> = (0..10).map(|_| name(it.next().unwrap().unwrap())).collect();
    // A new upper name comes first in the merged listing: every later position moves by one.
    fs::write(dir.join("new"), "").unwrap();
    assert_eq!(names(&dir).len(), N + 1, "a second reader lists the changed directory");
    seen.extend(it.map(|e| name(e.unwrap())));
    seen.retain(|n| n != "." && n != ".." && n != "new");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a name was listed twice");
    assert_eq!(seen.len(), N, "a name was skipped");
}

// ---------------------------------------------------------------- many layers (name indexes)

/// Layers for the name-index tests: `d` in each of `n` layers (a name of its own in each), and
/// in it every case the lookup rules have, spread over the layers (l1 top).
fn many_layer_stack(s: &Scratch, n: usize) {
    assert!(n >= 8);
    for i in 1..=n {
        s.write(&format!("l{i}/d/own{i}"), &format!("{i}"));
    }
    s.write(&format!("l{n}/d/bottom"), "bottom");
    // `.wh.` and 0/0 whiteouts in the middle hide the name below.
    s.write(&format!("l{n}/d/wh_file"), "hidden");
    s.write("l4/d/.wh.wh_file", "");
    s.write(&format!("l{n}/d/wh_dev"), "hidden");
    sh(&format!("mknod {} c 0 0", s.p("l3/d/wh_dev").display()));
    // A whiteout never hides its own layer's name.
    s.write("l5/d/wh_same", "5");
    s.write("l5/d/.wh.wh_same", "");
    s.write("l7/d/wh_same", "7");
    // A file over a directory, a directory over a file.
    s.write("l2/d/file_over_dir", "file");
    s.write("l6/d/file_over_dir/x", "x");
    s.write("l2/d/dir_over_file/a", "a");
    s.write("l6/d/dir_over_file", "file");
    // A directory merged from several layers, cut by an opaque one (both markers) or a whiteout.
    for (dir, cut) in [("opq_marker", "l5/d/opq_marker/.wh..wh..opq"), ("opq_xattr", ""), ("cut_wh", "")] {
        for i in [1, 3, 5, 6, 7] {
            s.write(&format!("l{i}/d/{dir}/m{i}"), "");
        }
        if !cut.is_empty() {
            s.write(cut, "");
        }
    }
    sh(&format!("setfattr -n trusted.overlay.opaque -v y {}", s.p("l5/d/opq_xattr").display()));
    s.write("l4/d/.wh.cut_wh", "");
    // A directory unpack made up (its attributes come from the next real one below).
    fs::create_dir(s.p("l2/d/implicit")).unwrap();
    s.write("l6/d/implicit/y", "");
    sh(&format!(
        "chmod 700 {0} && setfattr -n trusted.strata.implicit -v 1 {0} && chmod 751 {1}",
        s.p("l2/d/implicit").display(),
        s.p("l6/d/implicit").display()
    ));
}

/// Lookups of names in no layer, enough for `d` to get its name index (more than 64 layer
/// directories probed), and all answered "no such file".
fn warm_up_index(m: &Mount, n: usize) {
    for i in 0..64 / n + 2 {
        assert!(fs::symlink_metadata(m.path(format!("d/nothing{i}"))).is_err());
    }
}

fn read(m: &Mount, rel: &str) -> String {
    fs::read_to_string(m.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn gone(m: &Mount, rel: &str) -> bool {
    matches!(fs::symlink_metadata(m.path(rel)), Err(e) if e.raw_os_error() == Some(libc::ENOENT))
}

/// What `many_layer_stack` shows (before anything is changed through the mount).
fn check_many_layer_view(m: &Mount, n: usize) {
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(read(m, "d/bottom"), "bottom");
    assert_eq!(read(m, &format!("d/own{n}")), n.to_string());
    assert!(gone(m, "d/wh_file") && gone(m, "d/wh_dev"));
    assert!(gone(m, "d/.wh.wh_file") && gone(m, "d/.wh.wh_same") && gone(m, "d/opq_marker/.wh..wh..opq"));
    assert_eq!(read(m, "d/wh_same"), "5");
    assert!(m.path("d/file_over_dir").is_file());
    let e = fs::symlink_metadata(m.path("d/file_over_dir/x")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
    assert_eq!(names(&m.path("d/dir_over_file")), ["a"]);
    assert_eq!(names(&m.path("d/opq_marker")), ["m1", "m3", "m5"]);
    assert_eq!(names(&m.path("d/opq_xattr")), ["m1", "m3", "m5"]);
    assert_eq!(names(&m.path("d/cut_wh")), ["m1", "m3"]);
    assert!(gone(m, "d/opq_marker/m6") && gone(m, "d/cut_wh/m5"));
    let md = fs::metadata(m.path("d/implicit")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o751, "an implicit directory shows the one below");
    // Every listed name is found by lookup, and nothing else is listed.
    let mut want: Vec<String> = (1..=n).map(|i| format!("own{i}")).collect();
    want.extend(
        [
            "bottom",
            "wh_same",
            "file_over_dir",
            "dir_over_file",
            "opq_marker",
            "opq_xattr",
            "cut_wh",
            "implicit",
        ]
        .map(String::from),
    );
    want.sort();
    assert_eq!(names(&m.path("d")), want);
}

/// A directory merged from many lower layers is looked up through its name index: every rule
/// (both whiteout formats, opaque directories by marker and by xattr, a whiteout in its own
/// layer, files over directories and back, implicit directories) holds as when each layer is
/// probed, and so do names created, removed and renamed through the mount after the index is
/// built, in this mount and after a remount.
#[test]
fn many_layers_lookups_follow_every_rule_with_the_name_index() {
    const N: usize = 8;
    let Some(s) = Scratch::for_fuse(N) else { return };
    many_layer_stack(&s, N);
    let mut m = s.mount_rw(N);
    warm_up_index(&m, N);
    check_many_layer_view(&m, N);

    // Changes through the mount in the indexed directory.
    fs::write(m.path("d/new"), "new").unwrap();
    fs::remove_file(m.path("d/bottom")).unwrap();
    fs::rename(m.path("d/wh_same"), m.path("d/renamed")).unwrap();
    fs::rename(m.path("d/own1"), m.path(format!("d/own{N}"))).unwrap();
    fs::write(m.path("d/wh_file"), "again").unwrap();
    fs::remove_dir_all(m.path("d/opq_marker")).unwrap();
    fs::create_dir(m.path("d/opq_marker")).unwrap();
    fs::remove_file(m.path("d/file_over_dir")).unwrap();
    fs::create_dir(m.path("d/file_over_dir")).unwrap();
    let after = |m: &Mount| {
        assert_eq!(read(m, "d/new"), "new");
        assert!(gone(m, "d/bottom") && gone(m, "d/wh_same") && gone(m, "d/own1"));
        assert_eq!(read(m, "d/renamed"), "5");
        assert_eq!(read(m, format!("d/own{N}").as_str()), "1");
        assert_eq!(read(m, "d/wh_file"), "again");
        assert!(names(&m.path("d/opq_marker")).is_empty() && gone(m, "d/opq_marker/m1"));
        assert!(names(&m.path("d/file_over_dir")).is_empty() && gone(m, "d/file_over_dir/x"));
        assert!(gone(m, "d/wh_dev") && gone(m, "d/nothing0"));
        assert_eq!(read(m, "d/own2"), "2");
        assert_eq!(names(&m.path("d/cut_wh")), ["m1", "m3"]);
    };
    after(&m);
    m.unmount();
    let m = s.mount_rw(N);
    warm_up_index(&m, N);
    after(&m);
}

/// The same rules with no upper: every layer of the stack is a lower one, the top included.
#[test]
fn many_layers_read_only_lookups_follow_every_rule_with_the_name_index() {
    const N: usize = 8;
    let Some(s) = Scratch::for_fuse(N) else { return };
    many_layer_stack(&s, N);
    let lowers: Vec<String> = (1..=N).map(|i| s.p(&format!("l{i}")).display().to_string()).collect();
    let m = Mount::overlay(&format!("lowerdir={}", lowers.join(":")), &s.p("mnt"));
    warm_up_index(&m, N);
    check_many_layer_view(&m, N);
}

/// Directories merged from enough lower layers that their first lookup reads each layer's copy
/// once (for the opaque and implicit checks and their own index together): every rule holds as
/// when each layer is probed: an opaque marker or xattr ends the merge, a whiteout in the parent
/// cuts it, an implicit directory shows the attributes of the next real one, and what the mount
/// changes below them shows at once.
#[test]
fn many_layers_first_lookups_of_merged_directories_follow_every_rule() {
    use std::os::unix::fs::PermissionsExt;
    const N: usize = 32;
    let Some(s) = Scratch::for_fuse(N) else { return };
    for dir in ["plain", "opq_marker", "opq_xattr", "cut_wh", "implicit"] {
        for i in 1..=N {
            s.write(&format!("l{i}/{dir}/m{i}"), &format!("{i}"));
        }
    }
    s.write("l5/opq_marker/.wh..wh..opq", "");
    sh(&format!("setfattr -n trusted.overlay.opaque -v y {}", s.p("l5/opq_xattr").display()));
    s.write("l10/.wh.cut_wh", "");
    sh(&format!(
        "chmod 700 {0} && setfattr -n trusted.strata.implicit -v 1 {0} && chmod 751 {1}",
        s.p("l1/implicit").display(),
        s.p("l2/implicit").display()
    ));
    let sorted = |n: usize| {
        let mut v: Vec<String> = (1..=n).map(|i| format!("m{i}")).collect();
        v.sort();
        v
    };
    let check = |m: &Mount| {
        // Lookups first (each directory's first use is a lookup of it), listings after.
        assert_eq!(read(m, &format!("plain/m{N}")), N.to_string());
        assert_eq!(read(m, "opq_marker/m5"), "5");
        assert!(gone(m, "opq_marker/m6") && gone(m, "opq_marker/.wh..wh..opq"));
        assert_eq!(read(m, "opq_xattr/m1"), "1");
        assert!(gone(m, "opq_xattr/m6"));
        assert!(gone(m, "cut_wh/m11"));
        assert_eq!(read(m, "cut_wh/m10"), "10");
        let md = fs::metadata(m.path("implicit")).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o751, "an implicit directory shows the one below");
        assert_eq!(read(m, &format!("implicit/m{N}")), N.to_string());
        assert_eq!(names(&m.path("plain")), sorted(N));
        assert_eq!(names(&m.path("opq_marker")), sorted(5));
        assert_eq!(names(&m.path("opq_xattr")), sorted(5));
        assert_eq!(names(&m.path("cut_wh")), sorted(10));
        assert_eq!(names(&m.path("implicit")), sorted(N));
    };
    let lowers: Vec<String> = (1..=N).map(|i| s.p(&format!("l{i}")).display().to_string()).collect();
    let ro = Mount::overlay(&format!("lowerdir={}", lowers.join(":")), &s.p("mnt"));
    check(&ro);
    drop(ro);
    let m = s.mount_rw(N);
    check(&m);
    fs::write(m.path("plain/new"), "new").unwrap();
    fs::remove_file(m.path(format!("plain/m{N}"))).unwrap();
    assert_eq!(read(&m, "plain/new"), "new");
    assert!(gone(&m, &format!("plain/m{N}")));
    fs::remove_dir_all(m.path("opq_marker")).unwrap();
    fs::create_dir(m.path("opq_marker")).unwrap();
    assert!(names(&m.path("opq_marker")).is_empty() && gone(&m, "opq_marker/m1"));
}

/// strace's count of the calls of the `%stat` class made by the daemon serving `m` while
/// `work` runs (every thread traced). `None` when strace is not installed (a failure under
/// CI=true).
fn daemon_stat_calls(m: &Mount, work: impl FnOnce()) -> Option<u64> {
    common::mount::daemon_calls(m, "%%stat", work)
}

/// In a directory merged from 64 lower layers, lookups cost about what they cost in one layer:
/// neither a name that exists nor a missing one is probed in every layer (before the name
/// index, each of these lookups stat'ed the name and its `.wh.` name in each layer: ~40,000
/// calls in all), and the directory itself is resolved once, not again by the first request
/// below it; the first lookup of the directory reads each layer's copy of it once, for its
/// opaque and implicit checks and its index together. Counted in the daemon's system calls, not
/// timed.
#[test]
fn many_layers_a_lookup_does_not_probe_every_layer() {
    const N: usize = 64;
    const MISSING: usize = 256;
    let Some(s) = Scratch::for_fuse(N) else { return };
    for i in 1..=N {
        s.write(&format!("l{i}/d/f{i}"), &format!("{i}"));
    }
    let m = s.mount_rw(N);
    // The root's index is read by the first lookup in it.
    assert!(gone(&m, "nothing"));
    // The first lookup of `d`, merged from every layer, reads each layer's copy of it once (one
    // open, getdents64 showing whether the opaque marker is there, one flistxattr for the opaque
    // and implicit xattrs) for both its opaque and implicit checks and its own index, and stats
    // `d` in its top layer only (it stat'ed `d` and its marker in each layer, then opened and
    // read each copy again for the index: about 8 calls per layer).
    let per_layer =
        "%stat,openat,openat2,close,getdents64,flistxattr,listxattr,llistxattr,fgetxattr,lgetxattr";
    let Some(calls) = common::mount::daemon_calls(&m, per_layer, || {
        assert!(m.path("d").is_dir());
        assert!(gone(&m, "d/first"));
    }) else {
        return;
    };
    eprintln!(
        "the first lookup of a directory of {N} layers and the first in it: {calls} calls in the daemon"
    );
    assert!(
        calls < 5 * N as u64,
        "{calls} calls for the first lookup of a directory of {N} layers and in it"
    );
    let Some(calls) = daemon_stat_calls(&m, || {
        for i in 1..=N {
            assert_eq!(read(&m, &format!("d/f{i}")), i.to_string());
        }
        for i in 0..MISSING {
            assert!(gone(&m, &format!("d/missing{i}")));
        }
    }) else {
        return;
    };
    let lookups = (N + MISSING) as u64;
    eprintln!("{lookups} lookups over {N} layers: {calls} stat calls in the daemon");
    assert!(calls < 4 * lookups + 4 * N as u64, "{calls} stat calls for {lookups} lookups over {N} layers");
}

/// The fds a merged directory's first lookup opens (one per layer) stay with its node: more
/// merged directories than the stack's own cache of fds holds (512) are looked up, and then the
/// files in every layer of the first one are read without opening its layers' copies again.
#[test]
fn many_layers_a_merged_directory_is_opened_once_per_layer() {
    const N: usize = 64;
    const DIRS: usize = 10;
    let Some(s) = Scratch::for_fuse(N) else { return };
    for i in 1..=N {
        for d in 0..DIRS {
            s.write(&format!("l{i}/d{d}/f{i}"), &format!("{i}"));
        }
    }
    let m = s.mount_rw(N);
    for d in 0..DIRS {
        assert!(m.path(format!("d{d}")).is_dir());
    }
    let Some(opens) = common::mount::daemon_calls(&m, "openat,openat2", || {
        for i in 1..=N {
            assert_eq!(read(&m, &format!("d0/f{i}")), i.to_string());
        }
    }) else {
        return;
    };
    eprintln!("{N} files read in {N} layers of a merged directory: {opens} opens in the daemon");
    assert!(opens < N as u64 + N as u64 / 2, "{opens} opens to read {N} files, one in each layer");
}

// ------------------------------------------------------- layers with a record of their names

/// The calls a lookup reads a layer's copy of a directory with (opens, stats, reads, xattrs).
const LAYER_CALLS: &str =
    "%stat,openat,openat2,close,read,getdents64,flistxattr,listxattr,llistxattr,fgetxattr,lgetxattr";

/// 128 layer trees `lI/fs` (l1 on top) with every rule at several depths: `d` and `d/sub` in
/// every layer, `.wh.` and 0/0 whiteouts, opaque directories by marker (at `o`, and at
/// `d/sub/deep`) and by xattr (at `x`), a whiteout of a whole directory, a file over a directory,
/// an implicit directory; then the record of each tree, but for l3 and l77 (stored by an older
/// version: none) and l5 (a record made before its tree changed: not its tree any more).
fn recorded_stack(s: &Scratch, n: usize) {
    for i in 1..=n {
        s.write(&format!("l{i}/fs/d/own{i}"), &format!("{i}"));
        s.write(&format!("l{i}/fs/d/sub/m{i}"), &format!("{i}"));
        s.write(&format!("l{i}/fs/o/o{i}"), "");
        s.write(&format!("l{i}/fs/x/x{i}"), "");
        if i % 4 == 0 {
            s.write(&format!("l{i}/fs/d/sub/deep/p{i}"), "");
        }
        if i > 60 {
            s.write(&format!("l{i}/fs/cut/c{i}"), "");
        }
    }
    s.write("l10/fs/d/.wh.own20", "");
    sh(&format!("mknod {} c 0 0", s.p("l30/fs/d/own100").display()));
    s.write("l40/fs/d/sub/.wh.m90", "");
    s.write("l3/fs/d/sub/.wh.m50", ""); // in a layer without a record
    s.write("l64/fs/o/.wh..wh..opq", "");
    s.write("l48/fs/d/sub/deep/.wh..wh..opq", "");
    sh(&format!("setfattr -n trusted.overlay.opaque -v y {}", s.p("l70/fs/x").display()));
    s.write("l50/fs/.wh.cut", "");
    s.write("l20/fs/d/sub/file_over_dir", "file");
    s.write("l90/fs/d/sub/file_over_dir/y", "");
    fs::create_dir(s.p("l2/fs/d/implicit")).unwrap();
    s.write("l9/fs/d/implicit/z", "");
    sh(&format!(
        "chmod 700 {0} && setfattr -n trusted.strata.implicit -v 1 {0} && chmod 751 {1}",
        s.p("l2/fs/d/implicit").display(),
        s.p("l9/fs/d/implicit").display()
    ));
    for i in (1..=n).filter(|i| ![3, 77].contains(i)) {
        strata::union::layer_names::write_beside(&s.p(&format!("l{i}/fs"))).unwrap();
    }
    // A name in l5's root after its record: the record is not this tree's any more.
    std::thread::sleep(std::time::Duration::from_millis(10));
    s.write("l5/fs/late", "late");
    s.write("l5/fs/d/sub/deep/late5", "late");
}

fn recorded_mount(s: &Scratch, n: usize) -> Mount {
    let lowers: Vec<String> = (1..=n).map(|i| s.p(&format!("l{i}/fs")).display().to_string()).collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        s.p("upper").display(),
        s.p("work").display()
    );
    Mount::overlay(&opts, &s.p("mnt"))
}

/// What the mount shows at the paths the rules are about: each lookup's answer, then listings.
fn recorded_view(m: &Mount, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut look = |rel: String| {
        let seen = match fs::symlink_metadata(m.path(&rel)) {
            Ok(md) if md.is_dir() => format!("dir {:o}", md.mode() & 0o7777),
            Ok(_) => format!("file {}", fs::read_to_string(m.path(&rel)).unwrap()),
            Err(e) => format!("error {}", e.raw_os_error().unwrap_or(0)),
        };
        out.push(format!("{rel}: {seen}"));
    };
    // Missing names first, each directory's first use a lookup of a name it lacks.
    for dir in ["d", "d/sub", "d/sub/deep", "o", "x", "cut", "d/implicit", "d/sub/file_over_dir"] {
        look(format!("{dir}/missing"));
    }
    for i in 1..=n {
        for rel in [format!("d/own{i}"), format!("d/sub/m{i}"), format!("d/sub/deep/p{i}")] {
            look(rel);
        }
        for rel in [format!("o/o{i}"), format!("x/x{i}"), format!("cut/c{i}")] {
            look(rel);
        }
    }
    for rel in ["late", "d/sub/deep/late5", "d/implicit", "d/implicit/z", "d/.wh.own20", "o/.wh..wh..opq"] {
        look(rel.to_string());
    }
    for dir in ["", "d", "d/sub", "d/sub/deep", "o", "x", "d/implicit"] {
        out.push(format!("/{dir}: {}", names(&m.path(dir)).join(" ")));
    }
    out
}

/// A directory merged from many lower layers is indexed from the layers' records (written when a
/// layer is stored) instead of read in each layer, and every rule holds as when each layer is
/// read: whiteouts of both formats, opaque directories by marker and by xattr at different
/// depths, a directory whited out, files over directories, implicit directories, layers with no
/// record and one whose record is not for its tree (a name added after it shows). The same
/// queries over the same trees with every record removed give the same answers.
#[test]
fn recorded_layers_answer_every_lookup_as_reading_them() {
    const N: usize = 128;
    let Some(s) = Scratch::for_fuse(N) else { return };
    recorded_stack(&s, N);
    let mut m = recorded_mount(&s, N);
    let with = recorded_view(&m, N);
    m.unmount();
    for i in 1..=N {
        let _ = fs::remove_file(s.p(&format!("l{i}/names")));
    }
    let m = recorded_mount(&s, N);
    let without = recorded_view(&m, N);
    assert_eq!(with, without, "records change what the mount shows");
    // And what that is, spelled out for the rules.
    let has = |line: &str| assert!(with.iter().any(|l| l == line), "no `{line}` in {with:#?}");
    has("d/missing: error 2");
    has("d/sub/deep/missing: error 2");
    has("d/own20: error 2"); // .wh. in l10
    has("d/own100: error 2"); // 0/0 device in l30
    has("d/own21: file 21");
    has("d/sub/m90: error 2"); // .wh. in l40
    has("d/sub/m50: error 2"); // .wh. in l3, which has no record
    has("d/sub/m128: file 128");
    has("d/sub/deep/p48: file "); // the opaque layer's own name
    has("d/sub/deep/p52: error 2"); // below the opaque marker in l48
    has("d/sub/deep/late5: file late"); // l5's tree changed after its record
    has("late: file late");
    has("o/o64: file ");
    has("o/o65: error 2");
    has("x/x70: file ");
    has("x/x71: error 2");
    has("cut/c61: error 2"); // the whole directory whited out in l50
    has("cut/missing: error 2");
    has("d/sub/file_over_dir/missing: error 20");
    has("d/implicit: dir 751");
    has("d/implicit/z: file ");
}

/// With every layer recorded, the first lookup of a directory merged from 128 layers and of a
/// missing name in it read nothing in the lower layers but the directory's stat in its top one
/// (from disk: an open, getdents64 and flistxattr of each layer's copy, ~512 calls), and
/// missing names in it cost no lower-layer call at all. Counted in the daemon, not timed.
#[test]
fn recorded_layers_a_missing_name_reads_no_layer() {
    const N: usize = 128;
    let Some(s) = Scratch::for_fuse(N) else { return };
    for i in 1..=N {
        for d in 0..4 {
            s.write(&format!("l{i}/fs/d{d}/f{i}"), &format!("{i}"));
        }
        strata::union::layer_names::write_beside(&s.p(&format!("l{i}/fs"))).unwrap();
    }
    let m = recorded_mount(&s, N);
    // The root's index, and every layer's record read once, by the first lookup in it.
    assert!(gone(&m, "nothing"));
    let Some(calls) = common::mount::daemon_calls(&m, LAYER_CALLS, || {
        assert!(m.path("d0").is_dir());
        assert!(gone(&m, "d0/first"));
    }) else {
        return;
    };
    eprintln!("the first lookup of a directory of {N} recorded layers and the first in it: {calls} calls");
    assert!(calls < 16, "{calls} calls for the first lookup of a directory of {N} recorded layers and in it");
    let Some(calls) = common::mount::daemon_calls(&m, LAYER_CALLS, || {
        for d in 1..4 {
            for i in 0..64 {
                assert!(gone(&m, &format!("d{d}/missing{i}")));
            }
        }
    }) else {
        return;
    };
    eprintln!("3 directories of {N} recorded layers, 192 missing names: {calls} calls");
    assert!(calls < 3 * 16 + 192, "{calls} calls for 192 missing names in 3 directories of {N} layers");
}

/// Layers stored by `strata load` carry their record, and `strata mount` of the image uses it:
/// the view keeps every rule (a `.wh.` whiteout, an opaque directory, a whiteout in the
/// layer's own directory), and the first lookup of a directory merged from all 16 layers and
/// of a missing name in it reads none of their copies (about 4 calls per layer without it).
#[test]
fn stored_layers_carry_a_record_that_mounts_use() {
    use common::images::{Member, oci_layout, tar_of};
    const N: usize = 16;
    let s = common::strata::Strata::new();
    // Bottom layer first, as an image lists them.
    let layers: Vec<Vec<u8>> = (0..N)
        .map(|k| {
            let (f, sub) = (format!("d/f{k}"), format!("d/sub/s{k}"));
            let mut m = vec![Member::Dir("d/"), Member::Dir("d/sub/"), Member::File(&f, b"x")];
            m.push(Member::File(&sub, b""));
            match k {
                5 => m.push(Member::File("d/.wh.f2", b"")),
                9 => m.push(Member::File("d/sub/.wh..wh..opq", b"")),
                12 => m.push(Member::File("d/.wh.f12", b"")),
                _ => {}
            }
            tar_of(&m)
        })
        .collect();
    let layout = s.path("recorded");
    oci_layout(&layout, &layers, None, "v1", |_| {});
    s.ok(&["load", "--oci", &format!("{}:v1", layout.display())]);
    let records = fs::read_dir(s.root().join("layers"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("names").is_file())
        .count();
    assert_eq!(records, N, "every stored layer has its record");
    let Some(mounted) = common::image_mount::mount_image(&s, "recorded:v1", "mnt") else { return };
    let at = |rel: &str| mounted.dir.join(rel);
    let gone_at =
        |rel: &str| matches!(fs::symlink_metadata(at(rel)), Err(e) if e.raw_os_error() == Some(libc::ENOENT));
    assert!(gone_at("nothing"));
    let record = fs::read_dir(s.root().join("mounts")).unwrap().next().unwrap().unwrap().path();
    let json: serde_json::Value = serde_json::from_slice(&fs::read(record).unwrap()).unwrap();
    let pid = json["pid"].as_i64().expect("the daemon's pid") as i32;
    let Some(calls) = common::mount::daemon_syscalls(pid, LAYER_CALLS, || {
        assert!(at("d").is_dir());
        assert!(gone_at("d/missing"));
    }) else {
        return;
    };
    eprintln!("the first lookup of a directory of {N} stored layers and the first in it: {calls} calls");
    assert!(calls < 8, "{calls} calls for the first lookup of a directory of {N} stored layers and in it");
    assert!(gone_at("d/f2"));
    assert_eq!(fs::read_to_string(at("d/f12")).unwrap(), "x", "a whiteout never hides its own layer's name");
    assert_eq!(fs::read_to_string(at("d/f3")).unwrap(), "x");
    let want: Vec<String> = (9..N).map(|k| format!("s{k}")).collect();
    let mut want = want;
    want.sort();
    assert_eq!(names(&at("d/sub")), want);
    assert!(gone_at("d/sub/s8") && gone_at("d/sub/missing"));
}

/// Moves each scratch layer `lI` to `lI/fs` (a store layer's shape) and writes its record.
fn into_recorded_trees(s: &Scratch, n: usize) {
    for i in 1..=n {
        let (l, tmp) = (s.p(&format!("l{i}")), s.p(&format!("tree{i}")));
        fs::rename(&l, &tmp).unwrap();
        fs::create_dir(&l).unwrap();
        fs::rename(&tmp, l.join("fs")).unwrap();
        strata::union::layer_names::write_beside(&l.join("fs")).unwrap();
    }
}

/// Stacks of a few recorded layers, probed (3) and indexed (8): every rule holds with the
/// records standing in for the lookups' probes, opaque and implicit checks and the listings'
/// reads, and listing a directory merged from 8 recorded layers reads none of them.
#[test]
fn recorded_layers_of_a_few_layers_follow_every_rule() {
    let Some(s) = Scratch::for_fuse(3) else { return };
    oci_stack(&s);
    into_recorded_trees(&s, 3);
    let m = recorded_mount(&s, 3);
    assert_eq!(names(&m.mountpoint), ["a", "dir", "file_then_dir", "opq", "tree"]);
    assert_eq!(read(&m, "a"), "a1");
    assert!(gone(&m, "gone") && gone(&m, ".wh.gone") && gone(&m, "nothing"));
    assert_eq!(names(&m.path("dir")), ["y", "z"]);
    assert!(gone(&m, "dir/x"));
    assert_eq!(names(&m.path("opq")), ["new"]);
    assert!(gone(&m, "opq/old"));
    assert_eq!(names(&m.path("file_then_dir")), ["inner"]);
    assert!(m.path("tree").is_file() && !m.path("tree/deep/f").exists());
    drop(m);

    const N: usize = 8;
    let Some(s) = Scratch::for_fuse(N) else { return };
    many_layer_stack(&s, N);
    into_recorded_trees(&s, N);
    let m = recorded_mount(&s, N);
    let Some(reads) =
        common::mount::daemon_calls(&m, "getdents64", || assert_eq!(names(&m.path("d")).len(), N + 8))
    else {
        return;
    };
    assert_eq!(reads, 0, "listing a directory of {N} recorded layers read {reads} times");
    check_many_layer_view(&m, N);
    warm_up_index(&m, N);
    check_many_layer_view(&m, N);
}

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

//! rename of files and directories from any layer (never EXDEV), RENAME_NOREPLACE and
//! RENAME_EXCHANGE.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::mount::*;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

fn setup() -> Option<(Scratch, Mount)> {
    let s = Scratch::for_fuse(2)?;
    s.write("l2/ldir/sub/deep", "deep");
    s.write("l2/ldir/keep", "keep");
    s.write("l2/ldir/gone", "gone");
    s.write("l1/ldir/.wh.gone", "");
    s.write("l1/ldir/top", "top");
    s.write("l2/f1", "one");
    s.write("l2/f2", "two");
    s.write("l2/target/old", "old");
    s.write("l2/empty_target/.keep", "");
    let m = s.mount_rw(2);
    Some((s, m))
}

#[test]
fn rename_lower_directory() {
    let Some((s, m)) = setup() else { return };
    let ino = fs::metadata(m.path("ldir/keep")).unwrap().ino();
    fs::rename(m.path("ldir"), m.path("moved")).unwrap();
    assert!(!m.path("ldir").exists());
    assert_eq!(names(&m.path("moved")), ["keep", "sub", "top"]);
    assert_eq!(fs::read_to_string(m.path("moved/sub/deep")).unwrap(), "deep");
    assert_eq!(fs::metadata(m.path("moved/keep")).unwrap().ino(), ino, "st_ino follows the file");
    assert!(s.p("upper/.wh.ldir").exists());
    assert!(!s.p("upper/moved/.wh.gone").exists(), "stale whiteouts are dropped");
    // with mv(1), into a subdirectory, and back
    fs::create_dir(m.path("d")).unwrap();
    sh(&format!("mv {} {}", m.path("moved").display(), m.path("d/").display()));
    assert_eq!(fs::read_to_string(m.path("d/moved/sub/deep")).unwrap(), "deep");
    // moving a directory back to where a lower one lies: opaque there
    fs::rename(m.path("d/moved"), m.path("ldir")).unwrap();
    assert_eq!(names(&m.path("ldir")), ["keep", "sub", "top"]);
    assert!(!m.path("ldir/gone").exists());
    drop(m);
    let m = s.mount_rw(2);
    assert_eq!(names(&m.path("ldir")), ["keep", "sub", "top"]);
}

#[test]
fn rename_files_replace_noreplace_exchange() {
    let Some((s, m)) = setup() else { return };
    fs::rename(m.path("f1"), m.path("f1b")).unwrap();
    assert_eq!(fs::read_to_string(m.path("f1b")).unwrap(), "one");
    assert!(!m.path("f1").exists());
    assert!(s.p("upper/.wh.f1").exists());
    // replace a lower file
    fs::rename(m.path("f1b"), m.path("f2")).unwrap();
    assert_eq!(fs::read_to_string(m.path("f2")).unwrap(), "one");
    // RENAME_NOREPLACE
    fs::write(m.path("n"), "n").unwrap();
    let e = renameat2(AT_FDCWD, &m.path("n"), AT_FDCWD, &m.path("f2"), RenameFlags::RENAME_NOREPLACE)
        .unwrap_err();
    assert_eq!(e, nix::errno::Errno::EEXIST);
    renameat2(AT_FDCWD, &m.path("n"), AT_FDCWD, &m.path("n2"), RenameFlags::RENAME_NOREPLACE).unwrap();
    // RENAME_EXCHANGE of a file and a lower directory
    renameat2(AT_FDCWD, &m.path("n2"), AT_FDCWD, &m.path("target"), RenameFlags::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read_to_string(m.path("target")).unwrap(), "n");
    assert_eq!(fs::read_to_string(m.path("n2/old")).unwrap(), "old");
    // a directory over an empty (merged) directory
    fs::remove_file(m.path("empty_target/.keep")).unwrap();
    fs::rename(m.path("n2"), m.path("empty_target")).unwrap();
    assert_eq!(names(&m.path("empty_target")), ["old"]);
    // over a non-empty one: ENOTEMPTY
    fs::create_dir(m.path("x")).unwrap();
    let e = fs::rename(m.path("x"), m.path("ldir")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));
    drop(m);
    let m = s.mount_rw(2);
    assert_eq!(names(&m.path("empty_target")), ["old"]);
    assert_eq!(fs::read_to_string(m.path("target")).unwrap(), "n");
}

/// RENAME_EXCHANGE of two lower directories that hold names of one hard-linked lower file: copying
/// the first up links the other's name up too, which copies the second directory up; the exchange
/// must then use the second as it is now, not copy it up again (was EEXIST; kernel overlayfs: 0).
#[test]
fn exchange_of_directories_sharing_a_hard_linked_file() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/c", "shared");
    for d in ["b", "d"] {
        fs::create_dir(s.p(&format!("l1/{d}"))).unwrap();
    }
    fs::hard_link(s.p("l1/c"), s.p("l1/b/x")).unwrap();
    fs::hard_link(s.p("l1/c"), s.p("l1/d/y")).unwrap();
    let mut m = s.mount_rw(1);
    renameat2(AT_FDCWD, &m.path("d"), AT_FDCWD, &m.path("b"), RenameFlags::RENAME_EXCHANGE)
        .expect("exchange of two lower directories");
    assert_eq!(names(&m.path("b")), ["y"]);
    assert_eq!(names(&m.path("d")), ["x"]);
    assert_eq!(fs::read_to_string(m.path("b/y")).unwrap(), "shared");
    assert_eq!(fs::metadata(m.path("b/y")).unwrap().ino(), fs::metadata(m.path("d/x")).unwrap().ino());
    m.unmount();
}

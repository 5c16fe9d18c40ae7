//! Issue 12 item 4: calls on a descriptor whose name was unlinked. `fstat`, `ftruncate`,
//! `fchmod`, `fchown`, `futimens` and the xattr calls work, and `st_nlink` is 0, for a file
//! created in the mount and for a lower file copied up by its open.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::mount::*;
use nix::sys::stat::{Mode, fchmod, fstat, futimens};
use nix::sys::time::TimeSpec;
use xattr::FileExt;

fn exercise(path: &Path, what: &str) {
    let mut f: File =
        OpenOptions::new().read(true).write(true).open(path).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    f.write_all(b"0123456789").unwrap();
    fs::remove_file(path).unwrap_or_else(|e| panic!("{what}: unlink: {e}"));
    assert!(fs::symlink_metadata(path).is_err(), "{what}: the name is gone");
    let st = fstat(f.as_fd()).unwrap_or_else(|e| panic!("{what}: fstat after unlink: {e}"));
    assert_eq!(st.st_nlink, 0, "{what}: st_nlink after unlink");
    assert_eq!(st.st_size, 10, "{what}: size after unlink");
    f.set_len(4).unwrap_or_else(|e| panic!("{what}: ftruncate after unlink: {e}"));
    fchmod(f.as_fd(), Mode::from_bits_truncate(0o640))
        .unwrap_or_else(|e| panic!("{what}: fchmod after unlink: {e}"));
    nix::unistd::fchown(
        f.as_fd(),
        Some(nix::unistd::Uid::from_raw(1234)),
        Some(nix::unistd::Gid::from_raw(4321)),
    )
    .unwrap_or_else(|e| panic!("{what}: fchown after unlink: {e}"));
    let t = TimeSpec::new(1_500_000_000, 0);
    futimens(f.as_fd(), &t, &t).unwrap_or_else(|e| panic!("{what}: futimens after unlink: {e}"));
    f.set_xattr("user.k", b"v").unwrap_or_else(|e| panic!("{what}: fsetxattr after unlink: {e}"));
    assert_eq!(
        f.get_xattr("user.k").unwrap_or_else(|e| panic!("{what}: fgetxattr after unlink: {e}")),
        Some(b"v".to_vec())
    );
    let names: Vec<_> =
        f.list_xattr().unwrap_or_else(|e| panic!("{what}: flistxattr after unlink: {e}")).collect();
    assert!(names.iter().any(|n| n == "user.k"), "{what}: flistxattr lists user.k: {names:?}");
    f.remove_xattr("user.k").unwrap_or_else(|e| panic!("{what}: fremovexattr after unlink: {e}"));
    let st = fstat(f.as_fd()).unwrap();
    assert_eq!(
        (st.st_size, st.st_mode & 0o7777, st.st_uid, st.st_gid, st.st_mtime),
        (4, 0o640, 1234, 4321, 1_500_000_000),
        "{what}: attributes after the changes"
    );
    assert_eq!(st.st_nlink, 0);
    let mut s = String::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "0123", "{what}: content after ftruncate");
}

#[test]
fn calls_on_an_unlinked_descriptor() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/lower", "lower data");
    fs::set_permissions(s.p("l1/lower"), fs::Permissions::from_mode(0o644)).unwrap();
    let m = s.mount_rw(1);
    fs::write(m.path("new"), "").unwrap();
    exercise(&m.path("new"), "file made in the mount");
    exercise(&m.path("lower"), "lower file copied up by its open");
    assert!(fs::metadata(s.p("l1/lower")).unwrap().size() == 10, "the lower file is untouched");
}

//! `strata mount`/`umount` through the real binary and a real FUSE mount: -o ro and unknown
//! options, mountpoint checks, umount by name, listing mounts, busy unmounts, and commit of a
//! mount in use.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::strata::{Strata, busybox_rootfs, tar_dir};

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted<'a> {
    s: &'a Strata,
    at: PathBuf,
}

impl<'a> Mounted<'a> {
    fn new(s: &'a Strata, args: &[&str], name: &str) -> Mounted<'a> {
        let at = s.path(name);
        std::fs::create_dir_all(&at).unwrap();
        let mut full = vec!["mount"];
        full.extend_from_slice(args);
        full.push(at.to_str().unwrap());
        s.ok(&full);
        Mounted { s, at }
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = self.s.run(&["umount", self.at.to_str().unwrap()]);
        if common::mount::is_mounted(&self.at) {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

/// FUSE tests need /dev/fuse and root; under CI=true their absence is a failure, never a skip.
fn require_fuse() {
    assert!(common::mount::fuse_ready(), "these tests need /dev/fuse and root");
}

/// A store with a busybox image `bb:1` and a container `web` of it.
fn with_container() -> Strata {
    require_fuse();
    let s = Strata::new();
    let rootfs = s.path("bb-rootfs");
    busybox_rootfs(&rootfs);
    let tar = s.path("bb.tar");
    tar_dir(&rootfs, &tar, "plain");
    s.ok(&["import", tar.to_str().unwrap(), "bb:1"]);
    s.ok(&["create", "bb:1", "--name", "web"]);
    s
}

#[test]
fn mount_o_ro_is_read_only_and_unknown_options_are_refused() {
    let s = with_container();
    {
        let m = Mounted::new(&s, &["web"], "rw");
        std::fs::write(m.at.join("etc/kept"), "from the rw mount\n").unwrap();
    }
    let m = Mounted::new(&s, &["-o", "ro", "web"], "ro");
    // The writable layer shows, but nothing can be written.
    assert_eq!(std::fs::read_to_string(m.at.join("etc/kept")).unwrap(), "from the rw mount\n");
    let err = std::fs::write(m.at.join("etc/new"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::remove_file(m.at.join("etc/kept")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    drop(m);

    let at = s.path("other");
    std::fs::create_dir_all(&at).unwrap();
    let err = s.fails(&["mount", "-o", "ro,bogus,exec", "web", at.to_str().unwrap()]);
    assert!(err.contains("\"bogus\", \"exec\""), "{err}");
    assert!(!common::mount::is_mounted(&at));
}

#[test]
fn mountpoint_must_be_a_directory_and_odd_ones_warn() {
    let s = with_container();
    let file = s.path("a-file");
    std::fs::write(&file, "not a dir\n").unwrap();
    let err = s.fails(&["mount", "web", file.to_str().unwrap()]);
    assert!(err.contains("is not a directory"), "{err}");
    assert!(!common::mount::is_mounted(&file));
    let err = s.fails(&["mount", "bb:1", file.to_str().unwrap()]);
    assert!(err.contains("is not a directory"), "{err}");
    assert!(!common::mount::is_mounted(&file));
    assert!(s.ok(&["ps", "-q"]).is_empty(), "nothing recorded as mounted");

    // A directory with files: mounted, with a warning.
    let full = s.path("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("hidden"), "x").unwrap();
    let out = s.run(&["mount", "bb:1", full.to_str().unwrap()]);
    let image_mount = Mounted { s: &s, at: full.clone() };
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning") && err.contains("not empty"), "{err}");
    // Already a mount point: the container's mount stacks on it, with a warning.
    let out = s.run(&["mount", "web", full.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning") && err.contains("already a mount point"), "{err}");
    std::fs::write(full.join("etc/through-web"), "rw\n").unwrap();
    s.ok(&["umount", "web"]);
    // The image's read-only mount is there again.
    assert!(std::fs::write(full.join("etc/x"), "x").is_err());
    drop(image_mount);
    assert!(!common::mount::is_mounted(&full));
}

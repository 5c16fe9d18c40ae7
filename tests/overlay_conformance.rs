//! strata against the kernel's overlayfs: the same layers (overlay-format whiteouts) and the
//! same changes must give the same merged tree, entry by entry.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::mount::*;
use common::tree::{Entry, assert_same_maps};

/// The merged tree both mounts must agree on. Left out: the mtimes of what the changes
/// create (the two runs make them at different moments) and every xattr but `user.*` (each
/// filesystem keeps private ones of its own).
fn tree(root: &Path) -> BTreeMap<String, Entry> {
    let mut m = common::tree::walk(root);
    m.remove("");
    for e in m.values_mut() {
        e.mtime = None;
        e.xattrs.retain(|k, _| k.starts_with("user."));
    }
    m
}

/// Three layers in overlayfs format.
fn layers(s: &Scratch) {
    s.write("l3/etc/passwd", "root");
    s.write("l3/etc/group", "g");
    s.write("l3/usr/share/doc/a", "doc a");
    s.write("l3/usr/share/doc/b", "doc b");
    s.write("l3/usr/bin/tool", "#!/bin/sh");
    s.write("l3/var/lib/x/y", "y");
    s.write("l3/var/lib/x/z", "z");
    s.write("l3/opt/app/conf", "c");
    // (No lower hard links here: overlayfs without index=on breaks them on copy-up, strata
    // keeps them; see overlay_copyup.rs.)
    std::os::unix::fs::symlink("../usr/bin/tool", s.p("l3/etc/toollink")).unwrap();
    sh(&format!("mkfifo {}", s.p("l3/var/fifo").display()));
    sh(&format!("setfattr -n user.tag -v base {}", s.p("l3/usr/bin/tool").display()));
    std::os::unix::fs::chown(s.p("l3/opt/app/conf"), Some(33), Some(44)).unwrap();
    s.write("l2/etc/hosts", "h");
    sh(&format!("mknod {} c 0 0", s.p("l2/etc/group").display()));
    fs::create_dir_all(s.p("l2/var/lib/x")).unwrap();
    s.write("l2/var/lib/x/new", "new");
    sh(&format!("setfattr -n trusted.overlay.opaque -v y {}", s.p("l2/var/lib/x").display()));
    s.write("l1/usr/share/doc/b", "doc b v2");
    fs::create_dir_all(s.p("l1/opt")).unwrap();
    sh(&format!("mknod {} c 0 0", s.p("l1/opt/app").display()));
}

const CHANGES: &str = "set -e
echo more >> etc/passwd
echo new > newfile
rm usr/share/doc/a
rm -rf var/lib
mkdir var/lib && echo again > var/lib/file
mv usr/share moved_share
mv usr/bin/tool usr/bin/tool2
chmod 600 etc/hosts
chown 12:34 usr/bin
ln etc/hosts etc/hosts.hard
ln -s /nowhere dangling
mkdir -p a/b/c && echo deep > a/b/c/d
setfattr -n user.tag -v changed usr/bin/tool2
mkfifo pipe
touch -d @1234567890 etc/passwd
";

#[test]
fn same_tree_as_kernel_overlayfs() {
    let Some(s) = Scratch::for_fuse(3) else { return };
    layers(&s);
    for d in ["kupper", "kwork", "kmnt"] {
        fs::create_dir(s.p(d)).unwrap();
    }
    let lowers = format!("{}:{}:{}", s.p("l1").display(), s.p("l2").display(), s.p("l3").display());
    let kmnt = s.p("kmnt");
    let opts =
        format!("lowerdir={lowers},upperdir={},workdir={}", s.p("kupper").display(), s.p("kwork").display());
    if nix::mount::mount(
        Some("overlay"),
        &kmnt,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .is_err()
    {
        missing("kernel overlayfs can't be mounted here");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _k = Unmount(kmnt.clone());
    let m = s.mount_rw(3);
    assert_same_maps("fresh stack", &tree(&kmnt), &tree(&m.mountpoint));
    sh(&format!("cd {} && {CHANGES}", kmnt.display()));
    sh(&format!("cd {} && {CHANGES}", m.mountpoint.display()));
    assert_same_maps("after the changes", &tree(&kmnt), &tree(&m.mountpoint));
    drop(m);
    let m = s.mount_rw(3);
    assert_same_maps("after a remount", &tree(&kmnt), &tree(&m.mountpoint));
}

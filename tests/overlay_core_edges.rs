//! Edge items of issue 12: strata-overlay as root is open to every user (item 5), and nothing
//! ever becomes a whiteout by accident (item 9): `mknod NAME c 0 0` through the mount is
//! refused as kernel overlayfs refuses it, and a layer carrying an overlayfs whiteout device or
//! a private marker xattr is refused at import and load.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::mount::*;
use common::strata::Strata;

#[path = "common/tar_fixtures.rs"]
mod tar_fixtures;
use tar_fixtures::RawTar;

fn as_user(cmd: &str) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c", cmd])
        .output()
        .expect("setpriv (util-linux)")
}

#[test]
fn root_mount_without_allow_other_is_open_to_other_users() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/public", "everyone");
    s.write("l1/secret", "root only");
    fs::set_permissions(s.p("l1/public"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(s.p("l1/secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // No allow_other on the command line.
    let m = s.mount_rw(1);
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts.lines().find(|l| l.contains(m.mountpoint.to_str().unwrap())).unwrap();
    assert!(line.contains("allow_other"), "root turns allow_other on: {line}");
    assert!(line.contains("default_permissions"), "the kernel still checks permissions: {line}");
    let out = as_user(&format!("cat {}", m.path("public").display()));
    assert!(out.status.success(), "uid 1000 reads the mount: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "everyone");
    let out = as_user(&format!("ls {}", m.mountpoint.display()));
    assert!(out.status.success(), "uid 1000 lists the mount: {}", String::from_utf8_lossy(&out.stderr));
    let out = as_user(&format!("cat {}", m.path("secret").display()));
    assert!(!out.status.success(), "a 0600 root file stays closed to uid 1000");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
}

/// Kernel overlayfs mounted on `mnt` over `lower` (fresh `upper`/`work`); unmounted on drop.
struct KernelOverlay(std::path::PathBuf);

impl KernelOverlay {
    fn mount(lower: &Path, upper: &Path, work: &Path, mnt: &Path) -> KernelOverlay {
        for d in [upper, work, mnt] {
            fs::create_dir_all(d).unwrap();
        }
        let opts =
            format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        let flags = nix::mount::MsFlags::empty();
        nix::mount::mount(Some("overlay"), mnt, Some("overlay"), flags, Some(opts.as_str()))
            .expect("kernel overlayfs (the reference) must mount here");
        KernelOverlay(mnt.to_path_buf())
    }
}

impl Drop for KernelOverlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// mknod c 0 0 at each name (new, existing, deleted lower, in a lower-only directory):
/// the errno of each, and what the directory lists afterwards.
fn mknod_whiteouts(root: &Path) -> (Vec<Option<i32>>, Vec<String>, Vec<String>) {
    use nix::sys::stat::{Mode, SFlag, mknod};
    fs::remove_file(root.join("gone")).unwrap();
    let mut errs = Vec::new();
    for name in ["new", "kept", "gone", "dir/new", "dir/f"] {
        let r = mknod(&root.join(name), SFlag::S_IFCHR, Mode::from_bits_truncate(0o644), 0);
        errs.push(r.err().map(|e| e as i32));
    }
    (errs, names(root), names(&root.join("dir")))
}

#[test]
fn mknod_of_a_whiteout_device_is_refused_like_kernel_overlayfs() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/kept", "kept");
    s.write("l1/gone", "gone");
    s.write("l1/dir/f", "f");
    let k = KernelOverlay::mount(&s.p("l1"), &s.p("kupper"), &s.p("kwork"), &s.p("kmnt"));
    let m = s.mount_rw(1);
    let want = mknod_whiteouts(&k.0);
    let got = mknod_whiteouts(&m.mountpoint);
    assert_eq!(want.0[0], Some(libc::EPERM), "the reference refuses it with EPERM");
    assert_eq!(got, want, "(errnos, root listing, dir listing) differ from kernel overlayfs");
    // Nothing left behind in the upper but the whiteout of `gone`; no 0/0 device anywhere.
    let mut upper = names(&s.p("upper"));
    upper.retain(|n| !n.starts_with(".wh."));
    assert_eq!(upper, Vec::<String>::new(), "nothing created in the upper");
    for n in ["new", "kept", "dir"] {
        let md = fs::symlink_metadata(s.p("upper").join(n));
        assert!(md.is_err(), "{n} was touched in the upper");
    }
    // Other devices still work.
    let null = m.path("null");
    let dev = nix::sys::stat::makedev(1, 3);
    nix::sys::stat::mknod(
        &null,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        dev,
    )
    .unwrap();
    let md = fs::symlink_metadata(&null).unwrap();
    assert!(md.file_type().is_char_device() && md.rdev() == dev);
}

/// A one-layer rootfs tar: `etc/base` plus `extra` entries.
fn layer_tar(extra: impl FnOnce(RawTar) -> RawTar) -> Vec<u8> {
    extra(RawTar::new().dir("etc/").file("etc/base", b"base")).end()
}

fn char_device(t: RawTar, name: &str, major: u32, minor: u32) -> RawTar {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_entry_type(tar::EntryType::Char);
    h.set_mode(0o644);
    h.set_size(0);
    h.set_mtime(1_600_000_000);
    h.set_device_major(major).unwrap();
    h.set_device_minor(minor).unwrap();
    t.raw(h, &[])
}

#[test]
fn layers_with_overlay_whiteouts_or_private_xattrs_are_refused() {
    let s = Strata::new();
    let import = |name: &str, tar: Vec<u8>| {
        let p = s.path(name);
        fs::write(&p, tar).unwrap();
        s.run(&["import", p.to_str().unwrap(), &format!("t:{name}")])
    };
    // What OCI allows goes in: a real device, a .wh. whiteout, an opaque marker, user xattrs.
    let ok = layer_tar(|t| {
        let t = char_device(t, "etc/null", 1, 3).file("etc/.wh.old", b"").file("etc/.wh..wh..opq", b"");
        t.pax(&[("SCHILY.xattr.user.tag", b"v")]).file("etc/tagged", b"t")
    });
    let out = import("ok", ok);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = s.snapshot();
    let bad: [(&str, Vec<u8>, &str); 4] = [
        ("dev00", layer_tar(|t| char_device(t, "etc/base", 0, 0)), "character device 0/0"),
        (
            "opaque",
            layer_tar(|t| t.pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y")]).dir("etc/sub/")),
            "trusted.overlay.opaque",
        ),
        (
            "useropaque",
            layer_tar(|t| t.pax(&[("SCHILY.xattr.user.overlay.opaque", b"y")]).dir("etc/sub/")),
            "user.overlay.opaque",
        ),
        (
            "implicit",
            layer_tar(|t| t.pax(&[("SCHILY.xattr.trusted.strata.implicit", b"1")]).dir("etc/sub/")),
            "trusted.strata.implicit",
        ),
    ];
    for (name, tar, what) in bad {
        let out = import(name, tar);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: a layer with {what} was imported");
        assert!(err.contains(what) && err.contains("error"), "{name}: the error names the problem: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(s.snapshot(), before, "{name}: the store changed");
    }
}

#[test]
fn load_refuses_a_layer_with_a_whiteout_device() {
    // The same rule on `strata load`: a docker-archive whose layer carries a 0/0 device.
    let s = Strata::new();
    let layer = layer_tar(|t| char_device(t, "etc/base", 0, 0));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", tar_fixtures::sha256_hex(&layer))]},
    })
    .to_string();
    let manifest = serde_json::json!([{
        "Config": "config.json", "RepoTags": ["bad:1"], "Layers": ["layer.tar"],
    }])
    .to_string();
    let archive = RawTar::new()
        .file("config.json", config.as_bytes())
        .file("manifest.json", manifest.as_bytes())
        .file("layer.tar", &layer)
        .end();
    let p = s.path("bad.tar");
    fs::write(&p, archive).unwrap();
    let good = s.path("good.tar");
    fs::write(&good, layer_tar(|t| t)).unwrap();
    s.ok(&["import", good.to_str().unwrap(), "good:1"]);
    let before = s.snapshot();
    let err = s.fails(&["load", "-i", p.to_str().unwrap()]);
    assert!(err.contains("character device 0/0"), "{err}");
    assert_eq!(s.snapshot(), before, "the store changed");
}

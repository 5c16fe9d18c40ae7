//! The small items of issue 11: `.wh..` and `.wh...` are not whiteouts (they would hide `.` or
//! `..`, which name no entry) and are refused; a tar hard link to itself is refused with a clear
//! error instead of dropped; an unprivileged import says in its own output what it could not
//! restore (file capabilities; device nodes are recorded in the override xattr instead).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::strata::Strata;

fn raw_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link) in entries {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

fn import_fails(s: &Strata, tar: &[u8]) -> String {
    let path = s.path("layer.tar");
    std::fs::write(&path, tar).unwrap();
    s.fails(&["import", path.to_str().unwrap(), "x:1"])
}

#[test]
fn whiteouts_of_dot_and_dotdot_are_refused() {
    let s = Strata::new();
    for name in ["dir/.wh..", "dir/.wh..."] {
        let err = import_fails(
            &s,
            &raw_tar(&[("dir/", tar::EntryType::Directory, ""), (name, tar::EntryType::Regular, "")]),
        );
        assert!(err.contains(name) && err.contains("invalid whiteout name"), "{name}: {err}");
    }
    // `.wh....` hides `...`, an ordinary name: accepted.
    let path = s.path("ok.tar");
    std::fs::write(
        &path,
        raw_tar(&[("d/", tar::EntryType::Directory, ""), ("d/.wh....", tar::EntryType::Regular, "")]),
    )
    .unwrap();
    s.ok(&["import", path.to_str().unwrap(), "ok:1"]);
}

#[test]
fn a_hard_link_to_itself_is_refused() {
    let s = Strata::new();
    let tar = raw_tar(&[("a", tar::EntryType::Regular, ""), ("a", tar::EntryType::Link, "a")]);
    let err = import_fails(&s, &tar);
    assert!(err.contains("hard link to itself") && err.contains("/a"), "{err}");
    assert!(s.ok(&["images", "-q"]).trim().is_empty());
}

#[test]
fn unprivileged_import_says_what_it_left_out() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root to run strata as nobody");
    let s = Strata::new();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut dev = tar::Header::new_ustar();
    dev.set_entry_type(tar::EntryType::Char);
    dev.set_mode(0o666);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    dev.set_size(0);
    b.append_data(&mut dev, "dev/null", &[][..]).unwrap();
    // A valid VFS_CAP_REVISION_2 value granting cap_net_raw (what `setcap cap_net_raw+p` writes).
    let mut cap = Vec::new();
    for word in [0x0200_0000u32, 1 << 13, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    b.append_pax_extensions([("SCHILY.xattr.security.capability", &cap[..])]).unwrap();
    let mut f = tar::Header::new_ustar();
    f.set_mode(0o755);
    f.set_size(1);
    b.append_data(&mut f, "bin/ping", &b"x"[..]).unwrap();
    let tar = s.path("layer.tar");
    std::fs::write(&tar, b.into_inner().unwrap()).unwrap();
    std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg("--root")
        .arg(s.path("nobody-store"))
        .args(["import", tar.to_str().unwrap(), "rootless:1"])
        .env_remove("STRATA_ROOT")
        .env("HOME", s.dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The device node is not left out: it is recorded in the override xattr (rootless.rs).
    assert!(!err.contains("device node"), "{err}");
    assert!(err.contains("dropped the file capabilities of 1 file"), "{err}");
    assert_eq!(err.lines().filter(|l| l.contains("warning")).count(), 1, "one summary line: {err}");
}

//! Unpacking without root: owners and device nodes can't be restored, so they are recorded in
//! the `user.containers.override_stat` xattr (a device becomes an empty file that says what it
//! is); trusted.* xattrs are skipped; everything else is restored, and nothing fails.
//! The test re-runs this binary as `nobody` (setpriv) for the unprivileged part.

#[path = "common/tar_fixtures.rs"]
mod tar_fixtures;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use tar_fixtures::*;

const CHILD_ENV: &str = "STRATA_ROOTLESS_CHILD_DIR";

fn fixture() -> Vec<u8> {
    type B = tar::Builder<Vec<u8>>;
    let mut b: B = tar::Builder::new(Vec::new());
    let add =
        |b: &mut B, path: &str, kind: tar::EntryType, mode: u32, data: &[u8], dev: Option<(u32, u32)>| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_500_000_000);
            h.set_size(data.len() as u64);
            if let Some((ma, mi)) = dev {
                h.set_device_major(ma).unwrap();
                h.set_device_minor(mi).unwrap();
            }
            b.append_data(&mut h, path, data).unwrap();
        };
    add(&mut b, "dir/", tar::EntryType::Directory, 0o555, b"", None);
    add(&mut b, "dir/file", tar::EntryType::Regular, 0o4755, b"x", None);
    add(&mut b, "dev/null", tar::EntryType::Char, 0o666, b"", Some((1, 3)));
    add(&mut b, "fifo", tar::EntryType::Fifo, 0o600, b"", None);
    b.append_pax_extensions([("SCHILY.xattr.user.ok", &b"1"[..]), ("SCHILY.xattr.trusted.no", &b"2"[..])])
        .unwrap();
    add(&mut b, "attrs", tar::EntryType::Regular, 0o644, b"a", None);
    b.into_inner().unwrap()
}

/// The unprivileged half; does nothing unless started by the test below.
#[test]
fn child_unpacks_as_nobody() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let dir = std::path::Path::new(&dir);
    assert!(!nix::unistd::geteuid().is_root());
    let tar = std::fs::read(dir.join("layer.tar")).unwrap();
    strata::layer::unpack(&tar[..], &dir.join("dest"), None).unwrap();
}

#[test]
fn unpack_without_root_records_what_needs_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to switch to nobody");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(t.path().join("layer.tar"), fixture()).unwrap();
    std::fs::create_dir(t.path().join("dest")).unwrap();
    nix::unistd::chown(&t.path().join("dest"), Some(65534.into()), Some(65534.into())).unwrap();
    let me = std::env::current_exe().unwrap();
    run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(me)
        .args(["--exact", "child_unpacks_as_nobody", "--test-threads=1"])
        .env(CHILD_ENV, t.path()));
    let s = snapshot(&t.path().join("dest"));
    assert_eq!((s["dir"].mode, s["dir"].uid), (0o555, 65534));
    assert_eq!((s["dir/file"].mode, s["dir/file"].content.as_str()), (0o4755, sha256_hex(b"x").as_str()));
    assert_eq!(s["dir/file"].mtime, (1_500_000_000, 0));
    let xattr = |path: &str, name: &str| {
        s[path].xattrs.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let over = "user.containers.override_stat";
    assert_eq!(
        (s["dev/null"].kind, s["dev/null"].uid),
        ('f', 65534),
        "device nodes need root: an empty file"
    );
    assert_eq!(xattr("dev/null", over).as_deref(), Some("0:0:0666:char-1-3"));
    assert_eq!(xattr("dir/file", over).as_deref(), Some("0:0:4755:file"));
    assert_eq!(xattr("dir", over).as_deref(), Some("0:0:0555:dir"));
    assert_eq!(s["fifo"].kind, 'p', "FIFOs need no privilege");
    let mut names: Vec<_> = s["attrs"].xattrs.iter().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, [over, "user.ok"]);
    assert_eq!(std::fs::metadata(t.path().join("dest/attrs")).unwrap().uid(), 65534);
}

//! Issue 12 item 4: calls on a descriptor whose name was unlinked. `fstat`, `ftruncate`,
//! `fchmod`, `fchown`, `futimens` and the xattr calls work, and `st_nlink` is 0, for a file
//! created in the mount and for a lower file copied up by its open.
//!
//! `O_TMPFILE` (FUSE TMPFILE) behaves as on kernel overlayfs: an unnamed file that can be
//! written, read back and fstat'ed (st_nlink 0), then named with `linkat`, over a deleted lower
//! name too; never linked, it leaves nothing in the upper. Also on a rootless mount (the daemon
//! an ordinary user's, through fusermount3).

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

/// What one run of the O_TMPFILE steps saw under `root` (a mount): one line per step, so a
/// strata mount and a kernel overlayfs mount can be compared line by line.
fn tmpfile_steps(root: &Path) -> Vec<String> {
    use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, open};
    use nix::unistd::linkat;
    let mut seen = Vec::new();
    let d = root.join("d");
    // In a lower-only directory: the parent is copied up.
    let fd = open(&d, OFlag::O_TMPFILE | OFlag::O_RDWR, Mode::from_bits_truncate(0o4751))
        .unwrap_or_else(|e| panic!("{}: open(O_TMPFILE): {e}", root.display()));
    let mut f = File::from(fd);
    f.write_all(b"made unnamed").unwrap();
    let mut s = String::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_string(&mut s).unwrap();
    seen.push(format!("read back: {s}"));
    let st = fstat(f.as_fd()).unwrap();
    seen.push(format!(
        "fstat: nlink {} mode {:o} size {} uid {} gid {}",
        st.st_nlink, st.st_mode, st.st_size, st.st_uid, st.st_gid
    ));
    fchmod(f.as_fd(), Mode::from_bits_truncate(0o640)).unwrap();
    seen.push(format!("listing before link: {:?}", names(&d)));
    // Named through /proc/self/fd (any user may), then a second name with AT_EMPTY_PATH.
    let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&f));
    let r = linkat(AT_FDCWD, proc.as_str(), AT_FDCWD, &d.join("named"), AtFlags::AT_SYMLINK_FOLLOW);
    seen.push(format!("linkat /proc: {r:?}"));
    let r = linkat(&f, "", AT_FDCWD, &d.join("gone"), AtFlags::AT_EMPTY_PATH);
    seen.push(format!("linkat AT_EMPTY_PATH over a deleted lower name: {r:?}"));
    let r = linkat(&f, "", AT_FDCWD, &d.join("kept"), AtFlags::AT_EMPTY_PATH);
    seen.push(format!("linkat over a lower name: {r:?}"));
    let st = fstat(f.as_fd()).unwrap();
    seen.push(format!("fstat after link: nlink {} mode {:o}", st.st_nlink, st.st_mode));
    for n in ["named", "gone", "kept"] {
        seen.push(format!("{n}: {:?}", fs::read_to_string(d.join(n)).map_err(|e| e.kind())));
    }
    f.write_all(b", then named").unwrap();
    drop(f);
    seen.push(format!("named after close: {:?}", fs::read_to_string(d.join("named")).ok()));
    let md = fs::metadata(d.join("named")).unwrap();
    seen.push(format!("stat named: nlink {} mode {:o} ino same as gone: {}", md.nlink(), md.mode(), {
        fs::metadata(d.join("gone")).unwrap().ino() == md.ino()
    }));
    // O_EXCL: never linkable.
    let f = File::from(
        open(&d, OFlag::O_TMPFILE | OFlag::O_EXCL | OFlag::O_WRONLY, Mode::from_bits_truncate(0o600))
            .unwrap(),
    );
    let r = linkat(&f, "", AT_FDCWD, &d.join("excl"), AtFlags::AT_EMPTY_PATH);
    seen.push(format!("linkat of an O_TMPFILE|O_EXCL file: {r:?}"));
    drop(f);
    // Never linked: gone with its last descriptor.
    let mut f =
        File::from(open(root, OFlag::O_TMPFILE | OFlag::O_WRONLY, Mode::from_bits_truncate(0o600)).unwrap());
    f.write_all(&vec![7u8; 1 << 20]).unwrap();
    drop(f);
    seen.push(format!("final listing: {:?} / {:?}", names(root), names(&d)));
    seen
}

#[test]
fn o_tmpfile_works_and_links_as_on_kernel_overlayfs() {
    if !fuse_ready() {
        return;
    }
    // File data through passthrough (the default as root) and through read/write requests.
    for strata_opts in ["", ",nopassthrough"] {
        tmpfile_case(strata_opts);
    }
}

fn tmpfile_case(strata_opts: &str) {
    let s = Scratch::new(1);
    s.write("l1/d/kept", "lower");
    s.write("l1/d/gone", "deleted lower");
    s.write("l1/top", "t");
    fs::set_permissions(s.p("l1/d"), fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["kl", "ku", "kw", "kmnt"] {
        fs::create_dir(s.p(d)).unwrap();
    }
    sh(&format!("cp -a {}/. {}", s.p("l1").display(), s.p("kl").display()));
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        s.p("kl").display(),
        s.p("ku").display(),
        s.p("kw").display()
    );
    if let Err(e) = nix::mount::mount(
        Some("overlay"),
        &s.p("kmnt"),
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    ) {
        missing(&format!("kernel overlayfs mount: {e}"));
        return;
    }
    let mut kernel = Mount::adopt(&s.p("kmnt"));
    let mut m = Mount::overlay(&format!("{}{strata_opts}", s.rw_opts(1)), &s.p("mnt"));
    fs::remove_file(m.path("d/gone")).unwrap();
    fs::remove_file(kernel.path("d/gone")).unwrap();
    let ours = tmpfile_steps(&m.mountpoint);
    let theirs = tmpfile_steps(&kernel.mountpoint);
    // What kernel overlayfs does, and strata too.
    let expect = |step: &str, want: &str| {
        let line = ours.iter().find(|l| l.starts_with(step)).unwrap_or_else(|| panic!("no step {step}"));
        assert!(line.contains(want), "strata{strata_opts}: {line:?}, want {want:?}\nall: {ours:#?}");
    };
    expect("read back", "made unnamed");
    expect("fstat:", "nlink 0 mode 104751 size 12 uid 0 gid 0");
    expect("listing before link", r#"["kept"]"#);
    expect("linkat /proc", "Ok(())");
    expect("linkat AT_EMPTY_PATH", "Ok(())");
    expect("linkat over a lower name", "EEXIST");
    expect("fstat after link", "nlink 2 mode 100640");
    expect("named:", "made unnamed");
    expect("gone:", "made unnamed");
    expect("kept:", "lower");
    expect("named after close", "made unnamed, then named");
    expect("stat named", "nlink 2 mode 100640 ino same as gone: true");
    expect("linkat of an O_TMPFILE|O_EXCL", "ENOENT");
    expect("final listing", r#"["d", "top"] / ["gone", "kept", "named"]"#);
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a, b, "strata{strata_opts} vs kernel overlayfs\nstrata: {ours:#?}\nkernel: {theirs:#?}");
    }
    assert_eq!(ours.len(), theirs.len());
    m.unmount();
    kernel.unmount();
    // The upper holds the named file and nothing else new: no stray copy of the unnamed ones.
    // (The whiteout of the deleted lower name went when the tmpfile took it.)
    assert_eq!(names(&s.p("upper/d")), ["gone", "named"], "upper/d");
    assert_eq!(names(&s.p("upper")), ["d"], "upper");
    let stray: Vec<String> = names(&s.p("work")).into_iter().filter(|n| n != "strata-whiteout").collect();
    assert!(stray.is_empty(), "work dir leftovers: {stray:?}");
    assert_eq!(fs::read_to_string(s.p("upper/d/named")).unwrap(), "made unnamed, then named");
    assert_eq!(fs::read_to_string(s.p("l1/d/gone")).unwrap(), "deleted lower", "the lower is untouched");
}

#[test]
fn o_tmpfile_on_a_rootless_mount() {
    use common::user::{TestUser, dev_fuse_for_users};
    if !fuse_ready() {
        return;
    }
    let Some(user) = TestUser::with_subids() else { return };
    if !dev_fuse_for_users() {
        return;
    }
    let s = Scratch::new(1);
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    s.write("l1/d/x", "lower");
    for d in ["l1", "l1/d", "l1/d/x", "upper", "work", "mnt"] {
        user.give(&s.p(d));
    }
    let opts = s.rw_opts(1);
    let mnt = s.p("mnt");
    let out = user.command(BIN, &["-o", &opts, mnt.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "rootless strata-overlay: {}", String::from_utf8_lossy(&out.stderr));
    let mut m = Mount::adopt(&mnt);
    // The user's own process (a mount without allow_other admits no other uid, not even a
    // process of root's that only switched its effective uid): O_TMPFILE, write, fstat, then
    // named through /proc (AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH), read back by the name.
    let script = r#"
import ctypes, os, sys
d = sys.argv[1]
fd = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o640)
os.write(fd, b"rootless")
st = os.fstat(fd)
print("fstat", st.st_nlink, st.st_uid, oct(st.st_mode & 0o7777))
libc = ctypes.CDLL(None, use_errno=True)
r = libc.linkat(-100, b"/proc/self/fd/%d" % fd, -100, os.fsencode(d + "/named"), 0x400)
print("linkat", r, ctypes.get_errno())
print("named", open(d + "/named").read(), os.fstat(fd).st_nlink)
"#;
    let d = m.path("d");
    let out = user.command("python3", &["-c", script, d.to_str().unwrap()]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "as {}: {said}{}", user.name, String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        said.lines().collect::<Vec<_>>(),
        [format!("fstat 0 {} 0o640", user.uid).as_str(), "linkat 0 0", "named rootless 1"],
        "O_TMPFILE on a rootless mount"
    );
    m.unmount();
    let md = fs::metadata(s.p("upper/d/named")).expect("the named file is in the upper");
    assert_eq!((md.uid(), md.mode() & 0o7777, md.len()), (user.uid, 0o640, 8));
    assert_eq!(names(&s.p("upper/d")), ["named"]);
}

//! strata-overlay's command line: both forms, option handling, permission checks on an
//! allow_other mount, and a dead daemon's mount cleared by unmount.

mod common;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::mount::*;

#[test]
fn source_mountpoint_form_and_options() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/f", "f");
    let opts = format!("{},noatime,rw,nodev,relatime,x-systemd.automount,comment=hi", s.rw_opts(1));
    let args = [OsString::from("overlay"), s.p("mnt").into(), "-o".into(), opts.into()];
    let mut m = Mount::run(&args, &s.p("mnt"));
    assert_eq!(fs::read_to_string(m.path("f")).unwrap(), "f");
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts.lines().find(|l| l.contains(s.p("mnt").to_str().unwrap())).unwrap().to_string();
    assert!(line.contains(" fuse.strata-overlay "), "the mount's type is fuse.<subtype>: {line}");
    assert!(line.contains("nodev") && line.contains("noatime"), "{line}");
    m.unmount();
    // unknown, harmful options are refused with a clear message
    for bad in ["squash_to_root", "uidmapping=0:1000:1", "frobnicate"] {
        let out = Command::new(BIN)
            .arg("-o")
            .arg(format!("{},{bad}", s.rw_opts(1)))
            .arg(s.p("mnt"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("unsupported option"), "{err}");
        assert!(!is_mounted(&s.p("mnt")));
    }
    // upperdir without workdir
    let out = Command::new(BIN)
        .arg("-o")
        .arg(format!("lowerdir={},upperdir={}", s.p("l1").display(), s.p("upper").display()))
        .arg(s.p("mnt"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    // a missing lower dir fails before anything is mounted
    let out =
        Command::new(BIN).arg("-o").arg("lowerdir=/nonexistent/strata").arg(s.p("mnt")).output().unwrap();
    assert!(!out.status.success());
    assert!(!is_mounted(&s.p("mnt")));
}

#[test]
fn foreground_mode_stays() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/f", "f");
    let mp = fs::canonicalize(s.p("mnt")).unwrap();
    let mut child = foreground(&s, &mp);
    let _guard = GuardPath(mp.clone());
    assert!(is_mounted(&mp));
    assert_eq!(fs::read_to_string(mp.join("f")).unwrap(), "f");
    assert!(child.try_wait().unwrap().is_none(), "-f stays in the foreground");
    nix::mount::umount2(&mp, nix::mount::MntFlags::empty()).unwrap();
    let st = child.wait().unwrap();
    assert!(st.success(), "exits cleanly after unmount: {st:?}");
    // SIGTERM unmounts and exits cleanly too (no dead mount left behind)
    let mut child = foreground(&s, &mp);
    assert!(is_mounted(&mp));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let st = child.wait().unwrap();
    assert!(st.success(), "SIGTERM: {st:?}");
    assert!(!is_mounted(&mp));
}

/// SIGTERM sent the moment the mount appears (while the daemon may still be setting up its
/// session) still unmounts cleanly: the signal waits until the daemon can handle it instead of
/// killing it and leaving a dead mount behind.
#[test]
fn sigterm_right_after_the_mount_appears_unmounts_cleanly() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/f", "f");
    let mp = fs::canonicalize(s.p("mnt")).unwrap();
    let _guard = GuardPath(mp.clone());
    for round in 0..20 {
        let mut child = foreground(&s, &mp);
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let st = child.wait().unwrap();
        assert!(st.success(), "round {round}: SIGTERM during set-up: {st:?}");
        assert!(!is_mounted(&mp), "round {round}: a mount is left behind");
    }
}

/// A daemon whose session ends never unmounts its mountpoint's path: whatever is mounted there
/// by then is someone else's. Here the FUSE mount is moved away and a tmpfs takes its place
/// before the FUSE mount goes; the tmpfs must survive the daemon's exit (fuser's own unmount,
/// which strata no longer uses, took it down).
#[test]
fn an_ending_session_leaves_a_new_mount_on_its_path_alone() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/f", "f");
    // mount --move needs a parent mount that is not shared: a private tmpfs holds both places.
    let bx = fs::canonicalize(s.p("mnt")).unwrap();
    sh(&format!("mount -t tmpfs -o size=1m strata-box {0} && mount --make-private {0}", bx.display()));
    let _box = GuardPath(bx.clone());
    let (mp, moved) = (bx.join("mp"), bx.join("moved"));
    fs::create_dir(&mp).unwrap();
    fs::create_dir(&moved).unwrap();
    let mut daemon = foreground(&s, &mp);
    assert_eq!(fs::read_to_string(mp.join("f")).unwrap(), "f");
    sh(&format!("mount --move {} {}", mp.display(), moved.display()));
    sh(&format!("mount -t tmpfs -o size=1m strata-new {0} && echo new > {0}/marker", mp.display()));
    let _new = GuardPath(mp.clone());
    nix::mount::umount2(&moved, nix::mount::MntFlags::empty()).unwrap();
    let st = daemon.wait().unwrap();
    assert!(st.success(), "the daemon exits cleanly once unmounted: {st:?}");
    assert!(is_mounted(&mp), "the daemon unmounted the mount that took its old place");
    assert_eq!(fs::read_to_string(mp.join("marker")).unwrap(), "new\n");
}

/// `strata-overlay -f` on `mp` over one lower layer, returned the moment its mount shows in
/// mountinfo (10 s at most): possibly before the daemon has finished setting up its session.
fn foreground(s: &Scratch, mp: &Path) -> std::process::Child {
    let child = Command::new(BIN).arg("-f").arg("-o").arg(s.rw_opts(1)).arg(mp).spawn().unwrap();
    let start = Instant::now();
    while !is_mounted(mp) && start.elapsed() < Duration::from_secs(10) {
        std::thread::yield_now();
    }
    child
}

/// Unmounts a path on drop (for mounts not made through `Mount`).
struct GuardPath(std::path::PathBuf);
impl Drop for GuardPath {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[test]
fn permissions_as_another_user() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/secret", "root only");
    s.write("l1/public", "everyone");
    fs::set_permissions(s.p("l1/secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(s.p("l1/public"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let m = Mount::overlay(&format!("{},allow_other", s.rw_opts(1)), &s.p("mnt"));
    let as_user = |cmd: &str| {
        Command::new("setpriv")
            .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c", cmd])
            .output()
            .unwrap()
    };
    let out = as_user(&format!("cat {}", m.path("public").display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "everyone");
    let out = as_user(&format!("cat {}", m.path("secret").display()));
    assert!(!out.status.success(), "a 0600 root file must not be readable by uid 1000");
    let out = as_user(&format!("echo x > {}", m.path("public").display()));
    assert!(!out.status.success(), "no write permission");
    let out = as_user(&format!("touch {}", m.path("newfile").display()));
    assert!(!out.status.success(), "root dir is 0755 root");
    // a directory the user owns: files created there belong to the user
    fs::create_dir(m.path("home")).unwrap();
    std::os::unix::fs::chown(m.path("home"), Some(1000), Some(1000)).unwrap();
    let out = as_user(&format!("echo mine > {}/f", m.path("home").display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = fs::metadata(s.p("upper/home/f")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), 1000);
}

#[test]
fn dead_daemon_mount_is_cleared() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/f", "f");
    let mut m = s.mount_rw(1);
    fs::write(m.path("written"), "kept").unwrap();
    let pids = daemon_pids(&m.mountpoint);
    assert!(!pids.is_empty());
    for p in &pids {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    let start = Instant::now();
    while pids.iter().any(|p| alive(*p)) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    // A name the kernel never looked up (a cached one may still answer from the kernel's cache).
    // The kernel answers ENOTCONN, or ECONNABORTED while it is still tearing the connection down
    // (ECANCELED when the mount served through FUSE over io_uring: the ring's teardown cancels it).
    let e = fs::metadata(m.path("never-looked-up")).unwrap_err();
    assert!(matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED)), "{e}");
    strata::fs::unmount(&m.mountpoint).unwrap();
    assert!(!is_mounted(&m.mountpoint));
    m.unmount();
    assert_eq!(fs::read_to_string(s.p("upper/written")).unwrap(), "kept", "the writable layer is intact");
}

#[test]
fn mount_fuse_helper_runs_it() {
    if !fuse_ready() {
        return;
    }
    if !Path::new("/sbin/mount.fuse3").exists() {
        missing("no /sbin/mount.fuse3 (apt-get install fuse3)");
        return;
    }
    let s = Scratch::new(1);
    s.write("l1/f", "via mount.fuse3");
    let bin = s.p("bin");
    fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("strata-overlay")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    // What `mount -t fuse.strata-overlay overlay MP -o OPTS` runs once strata-overlay is in
    // mount's PATH.
    let st = Command::new("/sbin/mount.fuse3")
        .env("PATH", path)
        .arg("overlay")
        .arg(s.p("mnt"))
        .args(["-t", "strata-overlay", "-o"])
        .arg(format!("rw,dev,suid,{}", s.rw_opts(1)))
        .status()
        .unwrap();
    let m = Mount::adopt(&s.p("mnt"));
    assert!(st.success());
    assert_eq!(fs::read_to_string(m.path("f")).unwrap(), "via mount.fuse3");
}

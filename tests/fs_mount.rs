//! The library API the `strata mount` / `strata umount` commands use.

mod common;

use std::fs;
use std::time::Duration;

use common::mount::*;
use strata::fs::{MountOptions, is_mounted as lib_is_mounted, mount_daemon, unmount_and_wait};

#[test]
fn daemon_mount_then_unmount_and_wait() {
    let Some(s) = Scratch::for_fuse(2) else { return };
    s.write("l2/base", "base");
    s.write("l1/top", "top");
    let log = s.p("daemon.log");
    let opts = MountOptions {
        lowers: vec![s.p("l1"), s.p("l2")],
        upper: Some(s.p("upper")),
        work: Some(s.p("work")),
        log_file: Some(log.clone()),
        ..MountOptions::default()
    };
    let mp = s.p("mnt");
    let pid = mount_daemon(&opts, &mp).expect("mount_daemon");
    let mut guard = Mount::adopt(&mp);
    assert!(lib_is_mounted(&mp).unwrap());
    assert_eq!(fs::read_to_string(mp.join("base")).unwrap(), "base");
    fs::write(mp.join("written"), "data").unwrap();
    // a busy mount (an open file) is detached lazily; the daemon exits when it is closed
    let f = fs::File::open(mp.join("top")).unwrap();
    unmount_and_wait(&mp, None, Duration::from_secs(5)).unwrap();
    assert!(!lib_is_mounted(&mp).unwrap());
    drop(f);
    let start = std::time::Instant::now();
    while strata::fs::mount::is_alive(pid) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!strata::fs::mount::is_alive(pid), "daemon {pid} exits once the last file is closed");
    guard.forget();
    assert_eq!(fs::read_to_string(s.p("upper/written")).unwrap(), "data");
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("mounted"), "{text}");
    // mounting on a missing directory fails with a message, and nothing is left behind
    let err = mount_daemon(&opts, &s.p("nope")).unwrap_err();
    assert!(format!("{err:#}").contains("nope"), "{err:#}");
    // unmounting what isn't mounted is an error
    assert!(strata::fs::unmount(&mp).is_err());
}

/// Whether a path is mounted (one statx, `fs::mount::is_mounted`) is answered for mounts and
/// for what is not one, and without a request to the daemon: a stopped (hung) daemon holds up
/// no `strata umount`, `ps` or `mount` that asks, also once the root's cached attributes have
/// expired (1 s with an upper).
#[test]
fn is_mounted_does_not_wait_on_a_stopped_daemon() {
    use nix::sys::signal::{Signal, kill};
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/f", "x");
    let opts = MountOptions {
        lowers: vec![s.p("l1")],
        upper: Some(s.p("upper")),
        work: Some(s.p("work")),
        ..MountOptions::default()
    };
    let mp = s.p("mnt");
    let pid = mount_daemon(&opts, &mp).expect("mount_daemon");
    let mut guard = Mount::adopt(&mp);
    kill(pid, Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    let (tx, rx) = std::sync::mpsc::channel();
    let asked = mp.clone();
    std::thread::spawn(move || {
        let _ = tx.send(lib_is_mounted(&asked).map_err(|e| e.to_string()));
    });
    let answer = rx.recv_timeout(Duration::from_secs(3));
    kill(pid, Signal::SIGCONT).unwrap();
    assert_eq!(answer, Ok(Ok(true)), "is_mounted waited on the stopped daemon");
    assert!(!lib_is_mounted(&s.p("upper")).unwrap());
    assert!(!lib_is_mounted(&s.p("l1/f")).unwrap());
    assert!(!lib_is_mounted(&s.p("missing")).unwrap());
    unmount_and_wait(&mp, Some(pid), Duration::from_secs(10)).unwrap();
    guard.forget();
    assert!(!lib_is_mounted(&mp).unwrap());
}

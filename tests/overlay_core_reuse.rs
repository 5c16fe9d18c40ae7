//! Issue 12 item 10: a name's new object gets a new node. Threads replace one name by a file
//! (rename over it), remove it, make it a directory, and open it with O_CREAT, all at once: no
//! call may fail with EIO, and open(O_CREAT) never with ENOENT (ext4 and kernel overlayfs give
//! neither). 10 s by default; STRATA_REUSE_SECS=30 for the 30 s.

mod common;

use std::ffi::CString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::mount::*;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

#[derive(Default)]
struct Counts {
    eio: AtomicU64,
    creat_enoent: AtomicU64,
    ops: AtomicU64,
}

fn note(c: &Counts, what: &str, r: nix::Result<()>) {
    c.ops.fetch_add(1, Ordering::Relaxed);
    if let Err(Errno::EIO) = r {
        c.eio.fetch_add(1, Ordering::Relaxed);
        eprintln!("EIO from {what}");
    }
}

#[test]
fn file_dir_file_replacement_race() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    let secs = std::env::var("STRATA_REUSE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let m = s.mount_rw(1);
    let name = m.path("x");
    let tmp = m.path("t");
    let stop = Arc::new(AtomicBool::new(false));
    let c = Arc::new(Counts::default());
    let mut threads = Vec::new();
    let spawn = |threads: &mut Vec<std::thread::JoinHandle<()>>, f: Box<dyn Fn(&Counts) + Send>| {
        let (stop, c) = (stop.clone(), c.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                f(&c);
            }
        }));
    };
    let (n1, t1) = (name.clone(), tmp.clone());
    spawn(
        &mut threads,
        Box::new(move |c| {
            let r = std::fs::write(&t1, b"file").map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)));
            note(c, "write a new file", r);
            let r = std::fs::rename(&t1, &n1).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)));
            note(c, "rename over the name", r);
        }),
    );
    let n2 = name.clone();
    spawn(
        &mut threads,
        Box::new(move |c| {
            note(c, "unlink", nix::unistd::unlink(&n2));
            let r = std::fs::remove_dir(&n2).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)));
            note(c, "rmdir", r);
        }),
    );
    let n3 = name.clone();
    spawn(
        &mut threads,
        Box::new(move |c| note(c, "mkdir", nix::unistd::mkdir(&n3, Mode::from_bits_truncate(0o755)))),
    );
    let n4 = CString::new(name.as_os_str().as_encoded_bytes()).unwrap();
    spawn(
        &mut threads,
        Box::new(move |c| {
            let r = nix::fcntl::open(
                n4.as_c_str(),
                OFlag::O_CREAT | OFlag::O_RDWR,
                Mode::from_bits_truncate(0o644),
            );
            if let Err(Errno::ENOENT) = r {
                c.creat_enoent.fetch_add(1, Ordering::Relaxed);
            }
            note(c, "open(O_CREAT)", r.map(drop));
        }),
    );
    let n5 = name.clone();
    spawn(
        &mut threads,
        Box::new(move |c| {
            let r = nix::sys::stat::lstat(&n5).map(drop);
            note(c, "lstat", r);
        }),
    );
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for th in threads {
        th.join().unwrap();
    }
    let (eio, enoent, ops) = (
        c.eio.load(Ordering::Relaxed),
        c.creat_enoent.load(Ordering::Relaxed),
        c.ops.load(Ordering::Relaxed),
    );
    eprintln!("{ops} calls in {secs} s: {eio} EIO, {enoent} ENOENT from open(O_CREAT)");
    assert!(ops > 1000, "the race ran only {ops} calls");
    assert_eq!((eio, enoent), (0, 0), "EIO count and ENOENT-from-open(O_CREAT) count in {ops} calls");
    // The name still works afterwards.
    let _ = std::fs::remove_dir(&name);
    let _ = std::fs::remove_file(&name);
    std::fs::write(&name, "end").unwrap();
    assert_eq!(std::fs::read_to_string(&name).unwrap(), "end");
}

//! Non-UTF-8 names, 255-byte names, deep trees and a directory of 100,000 entries.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use common::mount::*;

#[test]
fn odd_names_and_deep_trees() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    let bad = OsStr::from_bytes(b"caf\xe9-\xff\xfe");
    fs::write(s.p("l1").join(bad), "latin1").unwrap();
    let long = "x".repeat(255);
    fs::write(s.p("l1").join(&long), "long").unwrap();
    let m = s.mount_rw(1);
    assert_eq!(fs::read_to_string(m.mountpoint.join(bad)).unwrap(), "latin1");
    assert_eq!(fs::read_to_string(m.mountpoint.join(&long)).unwrap(), "long");
    // created through the mount, renamed, deleted (whiteout with a non-UTF-8 name)
    let bad2 = OsStr::from_bytes(b"\x80\x81new");
    fs::write(m.mountpoint.join(bad2), "n").unwrap();
    fs::rename(m.mountpoint.join(bad), m.mountpoint.join(OsStr::from_bytes(b"r\xe9"))).unwrap();
    assert!(s.p("upper").join(OsStr::from_bytes(b".wh.caf\xe9-\xff\xfe")).exists());
    fs::remove_file(m.mountpoint.join(&long)).unwrap();
    assert!(!m.mountpoint.join(&long).exists());
    // a 256-byte name is refused
    let e = fs::write(m.mountpoint.join("y".repeat(256)), "").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG));
    // deep tree: 100 levels
    let mut p = m.mountpoint.clone();
    for i in 0..100 {
        p.push(format!("d{i}"));
    }
    fs::create_dir_all(&p).unwrap();
    fs::write(p.join("leaf"), "leaf").unwrap();
    assert_eq!(fs::read_to_string(p.join("leaf")).unwrap(), "leaf");
    sh(&format!("rm -rf {}", m.path("d0").display()));
    assert!(!m.path("d0").exists());
}

fn rss_kib(pid: i32) -> u64 {
    let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    st.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hundred_thousand_entries() {
    if !fuse_ready() {
        return;
    }
    const N: usize = 100_000;
    let s = Scratch::new(2);
    let big: PathBuf = s.p("l2/big");
    fs::create_dir(&big).unwrap();
    for i in 0..N {
        fs::File::create(big.join(format!("entry-{i:06}"))).unwrap();
    }
    s.write("l1/big/.wh.entry-000000", "");
    s.write("l1/big/top", "");
    let m = s.mount_rw(2);
    let pid = daemon_pids(&m.mountpoint).first().copied().unwrap_or(0);
    let n = fs::read_dir(m.path("big")).unwrap().count();
    assert_eq!(n, N, "100k - 1 whited out + 1 on top");
    let listed = sh(&format!("ls -l {} | wc -l", m.path("big").display()));
    assert_eq!(listed.trim().parse::<usize>().unwrap(), N + 1);
    assert!(m.path("big/entry-099999").exists());
    assert!(!m.path("big/entry-000000").exists());
    let rss = rss_kib(pid);
    eprintln!("daemon RSS after listing and stat-ing {N} entries: {rss} KiB");
    assert!(rss < 256 * 1024, "RSS {rss} KiB");
    fs::write(m.path("big/entry-050000"), "x").unwrap();
    assert_eq!(fs::read_dir(m.path("big")).unwrap().count(), N);
}

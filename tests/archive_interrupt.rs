//! `save -o FILE` interrupted: Ctrl-C (and SIGTERM) removes the hidden partial file it was
//! writing; after a SIGKILL, which cannot be caught, the next save removes what was left, but not
//! the partial file of a save that is still running.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::strata::Strata;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// An image whose docker-archive is big enough (a 128 MiB layer of zeros, stored gzip'd, so it
/// costs little disk in the store) that a save can be caught while it writes.
fn big_image(s: &Strata) {
    let path = s.path("big.tar.gz");
    let gz =
        flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_path("zeros").unwrap();
    h.set_mode(0o644);
    h.set_size(128 << 20);
    h.set_cksum();
    b.append(&h, std::io::Read::take(std::io::repeat(0), 128 << 20)).unwrap();
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
    s.ok(&["import", path.to_str().unwrap(), "big:1"]);
}

fn partials(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".strata-"))
        .map(|e| e.path())
        .collect()
}

/// Starts `save -o DIR/big.tar big:1` and stops it (SIGSTOP) the moment its partial file exists.
fn save_caught_writing(s: &Strata, dir: &Path) -> Child {
    let out = dir.join("big.tar");
    let mut child = s
        .command(&["save", "-o", out.to_str().unwrap(), "big:1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if !partials(dir).is_empty() {
            kill(pid, Signal::SIGSTOP).unwrap();
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "save ended before its partial file was seen");
        assert!(Instant::now() < deadline, "no partial file appeared");
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(!out.exists(), "save finished before it was stopped");
    child
}

#[test]
fn ctrl_c_and_sigterm_remove_the_partial_file() {
    let s = Strata::new();
    big_image(&s);
    let dir = s.path("out");
    std::fs::create_dir(&dir).unwrap();
    for (signal, code) in [(Signal::SIGINT, 130), (Signal::SIGTERM, 143)] {
        let child = save_caught_writing(&s, &dir);
        let pid = Pid::from_raw(child.id() as i32);
        kill(pid, signal).unwrap();
        kill(pid, Signal::SIGCONT).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{signal}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("partial output removed"));
        assert_eq!(partials(&dir), Vec::<PathBuf>::new(), "{signal}");
        assert!(!dir.join("big.tar").exists());
    }
}

#[test]
fn a_later_save_removes_what_a_killed_one_left() {
    let s = Strata::new();
    big_image(&s);
    let dir = s.path("out");
    std::fs::create_dir(&dir).unwrap();
    let mut child = save_caught_writing(&s, &dir);
    child.kill().unwrap();
    child.wait().unwrap();
    let left = partials(&dir);
    assert_eq!(left.len(), 1, "{left:?}");
    // A partial file of a save still running (this test process stands for it) must stay.
    let live = dir.join(format!(".other.tar.strata-{}", std::process::id()));
    std::fs::write(&live, "in progress").unwrap();

    let small = s.path("small.tar");
    common::strata::busybox_rootfs(&s.path("rootfs"));
    common::strata::tar_dir(&s.path("rootfs"), &small, "plain");
    s.ok(&["import", small.to_str().unwrap(), "small:1"]);
    s.ok(&["save", "-o", dir.join("small.tar").to_str().unwrap(), "small:1"]);
    assert_eq!(partials(&dir), vec![live.clone()]);
    assert!(dir.join("small.tar").exists());
}

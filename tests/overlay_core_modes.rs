//! Issue 12 item 3: modes of new files. Every create path (open O_CREAT, mknod, mkdir,
//! symlink, link, copy-up) gives the same mode as kernel overlayfs for modes 0000–07777 under
//! umask 0 and 022, as root: the daemon's own umask never applies a second time, and the
//! owner change after creating never clears setuid/setgid.

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::mount::*;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};

/// Creates one entry of every kind for every mode under `umask` in `dir`; copies up the
/// prepared lower files of `lower_names`.
fn create_all(dir: &Path, umask: u32) {
    let old = nix::sys::stat::umask(Mode::from_bits_truncate(umask));
    let tag = format!("{umask:o}");
    for m in 0..=0o7777u32 {
        let c = |k: &str| {
            CString::new(dir.join(format!("{k}{tag}-{m:o}")).as_os_str().as_encoded_bytes()).unwrap()
        };
        let mode = Mode::from_bits_truncate(m);
        nix::fcntl::open(c("f").as_c_str(), OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY, mode)
            .unwrap_or_else(|e| panic!("open O_CREAT {m:o}: {e}"));
        nix::unistd::mkdir(c("d").as_c_str(), mode).unwrap_or_else(|e| panic!("mkdir {m:o}: {e}"));
        nix::sys::stat::mknod(c("p").as_c_str(), SFlag::S_IFIFO, mode, 0)
            .unwrap_or_else(|e| panic!("mknod {m:o}: {e}"));
    }
    // symlink and link: one each is enough (a symlink's mode is fixed, a link shares its file's).
    std::os::unix::fs::symlink("target", dir.join(format!("s{tag}"))).unwrap();
    fs::hard_link(dir.join(format!("f{tag}-4755")), dir.join(format!("l{tag}"))).unwrap();
    nix::sys::stat::umask(old);
}

fn copy_up_all(dir: &Path) {
    for m in 0..=0o7777u32 {
        let p = dir.join(format!("low/c{m:o}"));
        // chown to the same owner: a metadata change that copies up without touching the mode
        std::os::unix::fs::lchown(&p, Some(0), Some(0)).unwrap_or_else(|e| panic!("copy-up {m:o}: {e}"));
    }
}

fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut v: Vec<(String, u32)> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().mode()))
        .collect();
    v.sort();
    v
}

#[test]
fn create_modes_match_kernel_overlayfs() {
    if !fuse_ready() {
        return;
    }
    // tmpfs: tens of thousands of small creates, and no disk sync at unmount.
    let dir = tempfile::Builder::new().prefix("strata-modes").tempdir_in("/dev/shm").expect("tmpfs dir");
    let s = Scratch { dir };
    for d in ["l1", "upper", "work", "mnt"] {
        fs::create_dir(s.p(d)).unwrap();
    }
    fs::create_dir(s.p("l1/low")).unwrap();
    for m in 0..=0o7777u32 {
        let p = s.p(&format!("l1/low/c{m:o}"));
        fs::write(&p, "x").unwrap();
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &p,
            Mode::from_bits_truncate(m),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .unwrap();
    }
    // Kernel overlayfs over a copy of the same lower layer.
    for d in ["kl", "ku", "kw", "kmnt"] {
        fs::create_dir(s.p(d)).unwrap();
    }
    sh(&format!("cp -a {}/. {}", s.p("l1").display(), s.p("kl").display()));
    sh(&format!(
        "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={} {}",
        s.p("kl").display(),
        s.p("ku").display(),
        s.p("kw").display(),
        s.p("kmnt").display()
    ));
    let kernel = Mount::adopt(&s.p("kmnt"));
    let strata = s.mount_rw(1);
    let t = std::time::Instant::now();
    for umask in [0, 0o22] {
        create_all(&strata.mountpoint, umask);
        eprintln!("{:?} strata umask {umask:o}", t.elapsed());
        create_all(&kernel.mountpoint, umask);
        eprintln!("{:?} kernel umask {umask:o}", t.elapsed());
    }
    copy_up_all(&strata.mountpoint);
    eprintln!("{:?} strata copy-up", t.elapsed());
    copy_up_all(&kernel.mountpoint);
    eprintln!("{:?} kernel copy-up", t.elapsed());
    for sub in ["", "low"] {
        let (a, b) = (modes(&strata.mountpoint.join(sub)), modes(&kernel.mountpoint.join(sub)));
        assert_eq!(a.len(), b.len(), "same names in /{sub}");
        let diff: Vec<String> = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x != y)
            .take(10)
            .map(|(x, y)| format!("{}: strata {:o}, kernel overlayfs {:o}", x.0, x.1, y.1))
            .collect();
        assert!(
            diff.is_empty(),
            "modes differ from kernel overlayfs in /{sub} (first 10):\n{}",
            diff.join("\n")
        );
    }
    drop(strata);
    drop(kernel);
    let _ = Path::new("");
}

//! Issue 12 item 3: modes of new files. Every create path (open O_CREAT, mknod, mkdir,
//! symlink, link, copy-up) gives the same mode as kernel overlayfs for modes 0000–07777 under
//! umask 0 and 022, as root: the daemon's own umask never applies a second time, and the
//! owner change after creating never clears setuid/setgid. `O_TMPFILE` + `linkat` is a create
//! path too.
//!
//! The same as an ordinary user (`strata-rootless`) on mounts made by root (allow_other,
//! default_permissions), with owners compared too, in a directory of the user's and in a
//! setgid directory of a group the user is not in (where the kernel strips setgid from new
//! files).

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::mount::*;
use common::user::TestUser;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

/// One test of this file at a time: one switches the process's effective ids and umask
/// (nextest gives each test a process of its own; `cargo test` runs them as threads of one).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Every mode.
fn all_modes() -> Vec<u32> {
    (0..=0o7777u32).collect()
}

/// The modes whose bits can matter to a create as an ordinary user (768 of 4096, for time):
/// every setuid/setgid/sticky and group combination, with owner and other bits that the umasks
/// tested touch or not.
fn user_modes() -> Vec<u32> {
    let mut v = Vec::new();
    for special in 0..8 {
        for g in 0..8 {
            for o in [0, 2, 5, 7] {
                for u in [0, 6, 7] {
                    v.push(special << 9 | u << 6 | g << 3 | o);
                }
            }
        }
    }
    v
}

/// Creates one entry of every kind for each of `modes` under `umask` in `dir`.
fn create_all(dir: &Path, umask: u32, modes: &[u32]) {
    let old = nix::sys::stat::umask(Mode::from_bits_truncate(umask));
    let tag = format!("{umask:o}");
    for &m in modes {
        let c = |k: &str| {
            CString::new(dir.join(format!("{k}{tag}-{m:o}")).as_os_str().as_encoded_bytes()).unwrap()
        };
        let mode = Mode::from_bits_truncate(m);
        nix::fcntl::open(c("f").as_c_str(), OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY, mode)
            .unwrap_or_else(|e| panic!("open O_CREAT {m:o}: {e}"));
        nix::unistd::mkdir(c("d").as_c_str(), mode).unwrap_or_else(|e| panic!("mkdir {m:o}: {e}"));
        nix::sys::stat::mknod(c("p").as_c_str(), SFlag::S_IFIFO, mode, 0)
            .unwrap_or_else(|e| panic!("mknod {m:o}: {e}"));
        let t = nix::fcntl::open(dir, OFlag::O_TMPFILE | OFlag::O_WRONLY, mode)
            .unwrap_or_else(|e| panic!("open O_TMPFILE {m:o}: {e}"));
        nix::unistd::linkat(
            &t,
            "",
            nix::fcntl::AT_FDCWD,
            c("t").as_c_str(),
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        )
        .unwrap_or_else(|e| panic!("linkat O_TMPFILE {m:o}: {e}"));
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
    owned_modes(dir).into_iter().map(|(name, mode, _, _)| (name, mode)).collect()
}

#[test]
fn create_modes_match_kernel_overlayfs() {
    if !fuse_ready() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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
    let kernel = kernel_overlay_of_l1(&s);
    let strata = s.mount_rw(1);
    let t = std::time::Instant::now();
    for umask in [0, 0o22] {
        create_all(&strata.mountpoint, umask, &all_modes());
        eprintln!("{:?} strata umask {umask:o}", t.elapsed());
        create_all(&kernel.mountpoint, umask, &all_modes());
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

/// The process's effective uid and gid, and its groups, switched to a user's until dropped
/// (also when the test panics, so the mounts are then undone as root).
struct AsUser {
    groups: Vec<Gid>,
}

impl AsUser {
    fn new(uid: u32, gid: u32) -> AsUser {
        let groups = nix::unistd::getgroups().unwrap();
        nix::unistd::setgroups(&[Gid::from_raw(gid)]).unwrap();
        nix::unistd::setegid(Gid::from_raw(gid)).unwrap();
        nix::unistd::seteuid(Uid::from_raw(uid)).unwrap();
        AsUser { groups }
    }
}

impl Drop for AsUser {
    fn drop(&mut self) {
        nix::unistd::seteuid(Uid::from_raw(0)).unwrap();
        nix::unistd::setegid(Gid::from_raw(0)).unwrap();
        nix::unistd::setgroups(&self.groups).unwrap();
    }
}

/// Sets the times of every prepared lower file to now: a change the owner may make that copies
/// it up without touching its mode or owner.
fn touch_all(dir: &Path, modes: &[u32]) {
    for &m in modes {
        let p = dir.join(format!("low/c{m:o}"));
        let now = nix::sys::time::TimeSpec::UTIME_NOW;
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &p,
            &now,
            &now,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap_or_else(|e| panic!("copy-up {m:o}: {e}"));
    }
}

/// (name, mode, uid, gid) of every entry of `dir`, sorted.
fn owned_modes(dir: &Path) -> Vec<(String, u32, u32, u32)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let md = e.metadata().unwrap();
            (e.file_name().to_string_lossy().into_owned(), md.mode(), md.uid(), md.gid())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn create_modes_match_kernel_overlayfs_as_another_user() {
    if !fuse_ready() {
        return;
    }
    let Some(user) = TestUser::with_subids() else { return };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::Builder::new().prefix("strata-modes").tempdir_in("/dev/shm").expect("tmpfs dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let s = Scratch { dir };
    for d in ["l1", "upper", "work", "mnt", "kl", "ku", "kw", "kmnt"] {
        fs::create_dir(s.p(d)).unwrap();
        fs::set_permissions(s.p(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    // The user's own directory; a setgid one of root's group, open to all; lower files of the
    // user's in every mode, for copy-up.
    for (d, mode) in [("l1/u", 0o755), ("l1/g", 0o2777), ("l1/low", 0o755)] {
        fs::create_dir(s.p(d)).unwrap();
        fs::set_permissions(s.p(d), fs::Permissions::from_mode(mode)).unwrap();
    }
    user.give(&s.p("l1/u"));
    for m in user_modes() {
        let p = s.p(&format!("l1/low/c{m:o}"));
        fs::write(&p, "x").unwrap();
        user.give(&p);
        fs::set_permissions(&p, fs::Permissions::from_mode(m)).unwrap();
    }
    let kernel = kernel_overlay_of_l1(&s);
    // As root strata-overlay turns allow_other on by itself; default_permissions always.
    let strata = s.mount_rw(1);
    {
        let _as_user = AsUser::new(user.uid, user.gid);
        for umask in [0, 0o22] {
            for root in [&strata.mountpoint, &kernel.mountpoint] {
                create_all(&root.join("u"), umask, &user_modes());
                create_all(&root.join("g"), umask, &user_modes());
            }
        }
        touch_all(&strata.mountpoint, &user_modes());
        touch_all(&kernel.mountpoint, &user_modes());
    }
    for sub in ["u", "g", "low"] {
        let (a, b) = (owned_modes(&strata.mountpoint.join(sub)), owned_modes(&kernel.mountpoint.join(sub)));
        assert_eq!(a.len(), b.len(), "same names in /{sub}");
        let diff: Vec<String> = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x != y)
            .take(10)
            .map(|(x, y)| {
                format!(
                    "{}: strata {:o} {}:{}, kernel overlayfs {:o} {}:{}",
                    x.0, x.1, x.2, x.3, y.1, y.2, y.3
                )
            })
            .collect();
        assert!(
            diff.is_empty(),
            "modes or owners differ from kernel overlayfs in /{sub} as uid {} (first 10):\n{}",
            user.uid,
            diff.join("\n")
        );
    }
    // The setgid directory did what it is for: its group on new entries.
    let g = owned_modes(&strata.mountpoint.join("g"));
    assert!(g.iter().all(|e| e.3 == 0 && e.2 == user.uid), "owners in /g: {:?}", &g[..3]);
}

/// Kernel overlayfs over a copy of the scratch's lower layer `l1` (in `kl`, with `ku`, `kw`,
/// mounted on `kmnt`: directories the caller made).
fn kernel_overlay_of_l1(s: &Scratch) -> Mount {
    sh(&format!("cp -a {}/. {}", s.p("l1").display(), s.p("kl").display()));
    sh(&format!(
        "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={} {}",
        s.p("kl").display(),
        s.p("ku").display(),
        s.p("kw").display(),
        s.p("kmnt").display()
    ));
    Mount::adopt(&s.p("kmnt"))
}

//! Issue 12 item 1: trees deeper than PATH_MAX. Every layer access is relative to the parent
//! directory's fd, so a tree whose paths are far beyond PATH_MAX can be created, walked,
//! stat'ed, read, copied up at the bottom, renamed in the middle and `rm -rf`'ed through the
//! mount, in the upper and in a lower layer, 10,000 levels deep as the issue asks (20,000-byte
//! paths; 30 s with the debug build at load 4, 118 s at load 10; STRATA_DEEP_LEVELS sets another
//! depth). Half of it or more is `rm -rf`: the daemon's rmdir in the upper still costs the kernel
//! a dcache walk that grows with the depth. The daemon keeps the fds of the
//! directories the kernel holds on their nodes and hashes path keys in constant time, so every
//! other step costs about the same per level at any depth (2,500 levels: 19 s before, 3.4 s
//! after, interleaved runs). The layers are on tmpfs: on ext4 a plain `rm -rf` of a 10,000-level
//! chain alone takes half a minute.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::mount::*;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fstatat, mkdirat};

fn levels() -> usize {
    std::env::var("STRATA_DEEP_LEVELS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

fn open_dir(at: impl AsFd, name: &str) -> nix::Result<OwnedFd> {
    openat(at.as_fd(), name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
}

fn root(p: &Path) -> OwnedFd {
    nix::fcntl::open(p, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap()
}

/// Creates `name/name/...` `n` levels deep under `top` with a file `f` at the bottom.
fn make_chain(top: &Path, name: &str, n: usize, what: &str) {
    let mut cur = root(top);
    for i in 0..n {
        mkdirat(cur.as_fd(), name, Mode::from_bits_truncate(0o755))
            .unwrap_or_else(|e| panic!("{what}: mkdir at level {i}: {e}"));
        cur = open_dir(&cur, name).unwrap_or_else(|e| panic!("{what}: open at level {i}: {e}"));
    }
    let f = openat(
        cur.as_fd(),
        "f",
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
        Mode::from_bits_truncate(0o644),
    )
    .unwrap_or_else(|e| panic!("{what}: create the bottom file: {e}"));
    nix::unistd::write(&f, b"bottom").unwrap();
}

/// Walks down `names` (one per level), stat'ing each level; returns the bottom directory.
fn walk(top: &Path, names: &[&str], what: &str) -> OwnedFd {
    let mut cur = root(top);
    for (i, n) in names.iter().enumerate() {
        let st = fstatat(cur.as_fd(), *n, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .unwrap_or_else(|e| panic!("{what}: stat at level {i} ({} bytes deep): {e}", 2 * i));
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR, "{what}: level {i} is a directory");
        cur = open_dir(&cur, n).unwrap_or_else(|e| panic!("{what}: open at level {i}: {e}"));
    }
    cur
}

fn read_at(dir: &OwnedFd, name: &str) -> String {
    let f = openat(dir.as_fd(), name, OFlag::O_RDONLY, Mode::empty()).expect("open the bottom file");
    let mut buf = [0u8; 64];
    let n = nix::unistd::read(&f, &mut buf).expect("read the bottom file");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn append_at(dir: &OwnedFd, name: &str, data: &[u8]) {
    let f = openat(dir.as_fd(), name, OFlag::O_WRONLY | OFlag::O_APPEND, Mode::empty())
        .expect("open the bottom file for writing (copy-up at the bottom)");
    nix::unistd::write(&f, data).expect("append to the bottom file");
}

fn rename_middle(top: &Path, name: &str, middle: usize, what: &str) {
    let names = vec![name; middle];
    let parent = walk(top, &names, what);
    nix::fcntl::renameat(parent.as_fd(), name, parent.as_fd(), "moved")
        .unwrap_or_else(|e| panic!("{what}: rename the directory at level {middle}: {e}"));
}

fn chain_names(name: &str, n: usize, middle: usize) -> Vec<&str> {
    (0..n).map(|i| if i == middle { "moved" } else { name }).collect()
}

#[test]
fn deeper_than_path_max_in_the_upper_and_a_lower_layer() {
    let Some(s) = Scratch::for_fuse_on_tmpfs(1) else { return };
    let n = levels();
    make_chain(&s.p("l1"), "d", n, "lower layer (on disk)");
    let m = s.mount_rw(1);
    let mnt = m.mountpoint.clone();
    let t = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{:>8.2?} {what}", t.elapsed());

    // Create through the mount: a chain only the upper holds.
    make_chain(&mnt, "u", n, "upper chain through the mount");

    phase("upper chain created");
    // Walk and stat both chains level by level, read the bottom files.
    for (name, what) in [("d", "lower chain"), ("u", "upper chain")] {
        let bottom = walk(&mnt, &vec![name; n], what);
        assert_eq!(read_at(&bottom, "f"), "bottom", "{what}: bottom file content");
    }
    phase("walked");
    // A walk by find(1) sees every level.
    let count = sh(&format!("find {} | wc -l", mnt.display()));
    assert_eq!(count.trim().parse::<usize>().unwrap(), 2 * n + 3, "find through the mount sees every level");

    phase("find");
    // Copy-up at the bottom of the lower chain.
    let bottom = walk(&mnt, &vec!["d"; n], "lower chain");
    append_at(&bottom, "f", b"+up");
    drop(bottom);
    let bottom = walk(&mnt, &vec!["d"; n], "lower chain after copy-up");
    assert_eq!(read_at(&bottom, "f"), "bottom+up");
    let up_bottom = walk(&s.p("upper"), &vec!["d"; n], "upper dir on disk");
    assert_eq!(read_at(&up_bottom, "f"), "bottom+up", "the copy is in the upper");
    let lower_bottom = walk(&s.p("l1"), &vec!["d"; n], "lower dir on disk");
    assert_eq!(read_at(&lower_bottom, "f"), "bottom", "the lower layer is untouched");

    phase("copy-up");
    // Rename a middle directory of each chain; the bottom stays reachable under the new name.
    let middle = n / 2;
    for (name, what) in [("d", "lower chain"), ("u", "upper chain")] {
        rename_middle(&mnt, name, middle, what);
        let bottom = walk(&mnt, &chain_names(name, n, middle), what);
        let want = if name == "d" { "bottom+up" } else { "bottom" };
        assert_eq!(read_at(&bottom, "f"), want, "{what}: bottom file after the rename");
        let st = fstatat(bottom.as_fd(), "f", nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        assert_eq!(st.st_size as usize, want.len());
        phase(what);
    }

    // rm -rf both chains.
    for name in ["d", "u"] {
        let out = std::process::Command::new("rm").arg("-rf").arg(mnt.join(name)).output().unwrap();
        assert!(out.status.success(), "rm -rf of the {name} chain: {}", String::from_utf8_lossy(&out.stderr));
    }
    phase("rm -rf");
    assert!(names(&mnt).is_empty(), "the mount is empty after rm -rf: {:?}", names(&mnt));
    drop(m);
    // Remounted, the deleted lower chain stays deleted.
    let m = s.mount_rw(1);
    assert!(names(&m.mountpoint).is_empty(), "still empty after a remount");
    assert!(std::fs::metadata(s.p("l1/d")).unwrap().ino() > 0, "the lower layer still has its chain");
}

/// A lower file hard-linked from the top of the layer and from a directory deeper than PATH_MAX
/// stays one file when copied up through its top name: the deep name shows the change and the
/// same st_ino (the layer's hard links are found through directory fds, not whole paths, which
/// skipped every link below PATH_MAX).
#[test]
fn a_hard_link_deeper_than_path_max_stays_one_file_on_copy_up() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    // 30 levels of 200-byte names: paths of about 6,000 bytes.
    let name = "h".repeat(200);
    let n = 30;
    make_chain(&s.p("l1"), &name, n, "lower layer (on disk)");
    let bottom = walk(&s.p("l1"), &vec![name.as_str(); n], "lower layer (on disk)");
    nix::unistd::linkat(&bottom, "f", root(&s.p("l1")), "top", nix::fcntl::AtFlags::empty()).unwrap();
    drop(bottom);
    let m = s.mount_rw(1);
    let mnt = m.mountpoint.clone();
    let top_ino = std::fs::metadata(mnt.join("top")).unwrap().ino();
    append_at(&root(&mnt), "top", b"+top");
    let bottom = walk(&mnt, &vec![name.as_str(); n], "through the mount");
    assert_eq!(read_at(&bottom, "f"), "bottom+top", "the deep name shows the copied-up file");
    let st = fstatat(bottom.as_fd(), "f", nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
    assert_eq!(st.st_ino, top_ino, "one st_ino for both names");
    assert_eq!(st.st_nlink, 2, "two names of one file");
    // And the other way round: a write through the deep name shows at the top.
    append_at(&bottom, "f", b"+deep");
    assert_eq!(read_at(&root(&mnt), "top"), "bottom+top+deep");
    let up = walk(&s.p("upper"), &vec![name.as_str(); n], "upper layer (on disk): the deep name linked");
    let st = fstatat(up.as_fd(), "f", nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
    assert_eq!(st.st_nlink, 2, "the upper's deep name is a link of the top one's copy");
    let lower = walk(&s.p("l1"), &vec![name.as_str(); n], "lower layer (on disk)");
    assert_eq!(read_at(&lower, "f"), "bottom", "the lower layer is untouched");
}

//! `strata mount`/`umount` through the real binary and a real FUSE mount: -o ro and unknown
//! options, mountpoint checks, umount by name, listing mounts, busy unmounts, and commit of a
//! mount in use.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::strata::{Strata, busybox_rootfs, tar_dir};

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted<'a> {
    s: &'a Strata,
    at: PathBuf,
}

impl<'a> Mounted<'a> {
    fn new(s: &'a Strata, args: &[&str], name: &str) -> Mounted<'a> {
        let at = s.path(name);
        std::fs::create_dir_all(&at).unwrap();
        let mut full = vec!["mount"];
        full.extend_from_slice(args);
        full.push(at.to_str().unwrap());
        s.ok(&full);
        Mounted { s, at }
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = self.s.run(&["umount", self.at.to_str().unwrap()]);
        if common::mount::is_mounted(&self.at) {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

/// FUSE tests need /dev/fuse and root; under CI=true their absence is a failure, never a skip.
fn require_fuse() {
    assert!(common::mount::fuse_ready(), "these tests need /dev/fuse and root");
}

/// A store with a busybox image `bb:1` and a container `web` of it.
fn with_container() -> Strata {
    require_fuse();
    let s = Strata::new();
    let rootfs = s.path("bb-rootfs");
    busybox_rootfs(&rootfs);
    let tar = s.path("bb.tar");
    tar_dir(&rootfs, &tar, "plain");
    s.ok(&["import", tar.to_str().unwrap(), "bb:1"]);
    s.ok(&["create", "--name", "web", "bb:1"]);
    s
}

#[test]
fn mount_o_ro_is_read_only_and_unknown_options_are_refused() {
    let s = with_container();
    {
        let m = Mounted::new(&s, &["web"], "rw");
        std::fs::write(m.at.join("etc/kept"), "from the rw mount\n").unwrap();
    }
    let m = Mounted::new(&s, &["-o", "ro", "web"], "ro");
    // The writable layer shows, but nothing can be written.
    assert_eq!(std::fs::read_to_string(m.at.join("etc/kept")).unwrap(), "from the rw mount\n");
    let err = std::fs::write(m.at.join("etc/new"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::remove_file(m.at.join("etc/kept")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    drop(m);

    let at = s.path("other");
    std::fs::create_dir_all(&at).unwrap();
    let err = s.fails(&["mount", "-o", "ro,bogus,exec", "web", at.to_str().unwrap()]);
    assert!(err.contains("\"bogus\", \"exec\""), "{err}");
    assert!(!common::mount::is_mounted(&at));
}

#[test]
fn mountpoint_must_be_a_directory_and_odd_ones_warn() {
    let s = with_container();
    let file = s.path("a-file");
    std::fs::write(&file, "not a dir\n").unwrap();
    let err = s.fails(&["mount", "web", file.to_str().unwrap()]);
    assert!(err.contains("is not a directory"), "{err}");
    assert!(!common::mount::is_mounted(&file));
    let err = s.fails(&["mount", "bb:1", file.to_str().unwrap()]);
    assert!(err.contains("is not a directory"), "{err}");
    assert!(!common::mount::is_mounted(&file));
    assert!(s.ok(&["ps", "-q"]).is_empty(), "nothing recorded as mounted");

    // A directory with files: mounted, with a warning.
    let full = s.path("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("hidden"), "x").unwrap();
    let out = s.run(&["mount", "bb:1", full.to_str().unwrap()]);
    let image_mount = Mounted { s: &s, at: full.clone() };
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning") && err.contains("not empty"), "{err}");
    // Already a mount point: the container's mount stacks on it, with a warning.
    let out = s.run(&["mount", "web", full.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning") && err.contains("already a mount point"), "{err}");
    std::fs::write(full.join("etc/through-web"), "rw\n").unwrap();
    s.ok(&["umount", "web"]);
    // The image's read-only mount is there again.
    assert!(std::fs::write(full.join("etc/x"), "x").is_err());
    drop(image_mount);
    assert!(!common::mount::is_mounted(&full));
}

/// A child process killed on drop, so a failing test leaves none behind.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs strata with a time limit; `None` when it had to be killed.
fn run_within(s: &Strata, args: &[&str], limit: std::time::Duration) -> Option<std::process::Output> {
    let mut child = s
        .command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Some(child.wait_with_output().unwrap())
}

#[test]
fn umount_takes_container_and_image_names_and_mount_lists_both() {
    let s = with_container();
    let web = Mounted::new(&s, &["web"], "web");
    let img = Mounted::new(&s, &["bb:1"], "img");
    let list = s.ok(&["mount"]);
    let line = |name: &str| list.lines().find(|l| l.starts_with(name)).unwrap_or("").to_string();
    assert!(line("web").contains("container") && line("web").contains(web.at.to_str().unwrap()), "{list}");
    assert!(line("bb:1").contains("image") && line("bb:1").contains(img.at.to_str().unwrap()), "{list}");

    s.ok(&["umount", "bb:1"]);
    assert!(!common::mount::is_mounted(&img.at));
    let err = s.fails(&["umount", "bb:1"]);
    assert!(err.contains("image bb:1 is not mounted"), "{err}");
    let id = s.ok(&["ps", "-q"]).trim().to_string();
    s.ok(&["umount", &id]);
    assert!(!common::mount::is_mounted(&web.at));
    assert!(!s.ok(&["mount"]).contains("web"));
    let err = s.fails(&["umount", "no-such-thing"]);
    assert!(err.contains("\"no-such-thing\" is not a mounted container"), "{err}");

    // Two mounts of one image: the name alone is ambiguous; a path says which.
    let a = Mounted::new(&s, &["bb:1"], "a");
    let b = Mounted::new(&s, &["bb:1"], "b");
    let err = s.fails(&["umount", "bb:1"]);
    assert!(err.contains("say which"), "{err}");
    s.ok(&["umount", a.at.to_str().unwrap()]);
    s.ok(&["umount", "bb:1"]);
    assert!(!common::mount::is_mounted(&a.at) && !common::mount::is_mounted(&b.at));
}

#[test]
fn busy_umount_names_its_users_never_blocks_the_store_and_lazy_keeps_one_daemon() {
    let s = with_container();
    let m = Mounted::new(&s, &["web"], "web");
    std::fs::write(m.at.join("etc/data"), "kept\n").unwrap();
    // A process with its cwd in the mount keeps it busy.
    let user = Killed(Command::new("sleep").arg("60").current_dir(m.at.join("etc")).spawn().unwrap());
    let limit = std::time::Duration::from_secs(10);
    for args in [&["umount", "web"][..], &["rm", "-f", "web"][..]] {
        let out = run_within(&s, args, limit).expect("a busy umount must not wait");
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("busy") && err.contains(&format!("{} (sleep: cwd)", user.0.id())), "{err}");
        assert!(err.contains("umount -l"), "{err}");
        assert!(common::mount::is_mounted(&m.at), "still mounted after a refused {args:?}");
    }
    // The store is free meanwhile.
    assert!(run_within(&s, &["images"], limit).is_some_and(|o| o.status.success()));

    // -l detaches at once; the daemon serves the sleeper until it goes, and holds the container.
    let out = run_within(&s, &["umount", "-l", "web"], limit).expect("umount -l returns at once");
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("detached") && err.contains(&format!("{} (sleep: cwd)", user.0.id())), "{err}");
    assert!(!common::mount::is_mounted(&m.at));
    let again = s.path("again");
    std::fs::create_dir_all(&again).unwrap();
    let err = s.fails(&["mount", "web", again.to_str().unwrap()]);
    assert!(err.contains("already mounted") || err.contains("in use"), "{err}");
    assert!(!common::mount::is_mounted(&again), "a second daemon on the same writable layer");
    assert!(run_within(&s, &["images"], limit).is_some_and(|o| o.status.success()));

    drop(user);
    // The daemon exits once its last user is gone; then the container mounts again, data intact.
    let start = std::time::Instant::now();
    loop {
        let out = s.run(&["mount", "web", again.to_str().unwrap()]);
        if out.status.success() {
            break;
        }
        assert!(start.elapsed() < limit, "{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let m2 = Mounted { s: &s, at: again.clone() };
    assert_eq!(std::fs::read_to_string(m2.at.join("etc/data")).unwrap(), "kept\n");
    s.ok(&["umount", "web"]);
    assert!(!common::mount::is_mounted(&again));
}

/// One step of the writer of `commit_of_a_mount_in_use_is_a_snapshot`, in order.
#[derive(Clone, Debug)]
enum Step {
    Add(String),
    Remove(String),
}

/// What the writer does in round `i` (under `w/` of the mount), as the names it adds and removes
/// (`tmp`, its scratch file, is left out: it may be there, half written, at any moment).
fn round(i: usize) -> Vec<Step> {
    let mut v = vec![Step::Add(format!("{i}.a")), Step::Add(format!("{i}.b")), Step::Add(format!("d{i}"))];
    if i >= 3 {
        let o = i - 3;
        v.extend([
            Step::Remove(format!("{o}.a")),
            Step::Remove(format!("{o}.b")),
            Step::Remove(format!("d{o}")),
        ]);
    }
    v
}

fn content(name: &str) -> Vec<u8> {
    name.as_bytes().repeat(2000)
}

/// Writes, renames into place and removes files and directories in `w` until `stop`.
fn writer(w: PathBuf, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::io::Result<usize> {
    let mut i = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for step in round(i) {
            match step {
                Step::Add(name) if name.starts_with('d') => std::fs::create_dir(w.join(&name))?,
                Step::Add(name) => {
                    std::fs::write(w.join("tmp"), content(&name))?;
                    std::fs::rename(w.join("tmp"), w.join(&name))?;
                }
                Step::Remove(name) if name.starts_with('d') => std::fs::remove_dir(w.join(&name))?,
                Step::Remove(name) => std::fs::remove_file(w.join(&name))?,
            }
        }
        i += 1;
    }
    Ok(i)
}

/// Whether `seen` is the writer's state after some prefix of its steps (rounds below `rounds`).
fn is_a_state_of_the_writer(seen: &std::collections::BTreeSet<String>, rounds: usize) -> bool {
    let mut state = std::collections::BTreeSet::new();
    if state == *seen {
        return true;
    }
    for i in 0..rounds {
        for step in round(i) {
            match step {
                Step::Add(n) => state.insert(n),
                Step::Remove(n) => state.remove(&n),
            };
            if state == *seen {
                return true;
            }
        }
    }
    false
}

/// A writer renames complete files into place and removes old ones while 20 commits run
/// (STRATA_COMMIT_ROUNDS=N for more): every commit succeeds and is a state the writer passed
/// through, and the writer never fails (it only waits while the mount is frozen).
#[test]
fn commit_of_a_mount_in_use_is_a_snapshot() {
    let s = with_container();
    let m = Mounted::new(&s, &["web"], "web");
    let w = m.at.join("w");
    std::fs::create_dir(&w).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = {
        let (w, stop) = (w.clone(), stop.clone());
        std::thread::spawn(move || writer(w, stop))
    };
    let commits: usize =
        std::env::var("STRATA_COMMIT_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let mut failures = Vec::new();
    for n in 0..commits {
        let out = s.run(&["commit", "web", &format!("snap:{n}")]);
        if !out.status.success() {
            failures.push(String::from_utf8_lossy(&out.stderr).to_string());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writing.join().unwrap().expect("the writer never fails");
    assert!(failures.is_empty(), "{} of {commits} commits failed: {failures:?}", failures.len());
    assert!(rounds > 0);

    // Each commit is the writer's state at one moment: complete files, no half-done round.
    let view = s.path("view");
    std::fs::create_dir_all(&view).unwrap();
    let mut distinct = std::collections::BTreeSet::new();
    for n in 0..commits {
        let img = Mounted::new(&s, &[&format!("snap:{n}")], "view");
        let dir = img.at.join("w");
        let mut seen = std::collections::BTreeSet::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name == "tmp" {
                continue;
            }
            if !name.starts_with('d') {
                assert_eq!(std::fs::read(dir.join(&name)).unwrap(), content(&name), "snap:{n} {name}");
            }
            seen.insert(name);
        }
        assert!(is_a_state_of_the_writer(&seen, rounds), "snap:{n} is no state of the writer: {seen:?}");
        distinct.insert(seen);
    }
    assert!(distinct.len() > 1, "the writer made progress between commits");
}

/// The cgroup freezer state file of process `pid` (v1: freezer.state, v2: cgroup.events) and
/// how it reads when frozen.
fn freezer_of(pid: u32) -> (PathBuf, &'static str) {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cg.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        if ctrl.split(',').any(|c| c == "freezer") {
            return (PathBuf::from(format!("/sys/fs/cgroup/freezer{path}/freezer.state")), "FROZEN");
        }
    }
    let path = cg.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 line");
    (PathBuf::from(format!("/sys/fs/cgroup{path}/cgroup.events")), "frozen 1")
}

#[test]
fn commit_pauses_a_running_container_and_resumes_it() {
    if !common::run::runtime_ready("runc") {
        return;
    }
    let s = Strata::new();
    let _cleanup = common::run::Cleanup(&s);
    common::run::busybox_image(&s, "bb:1", &[]);
    let script = "mkdir -p /w; i=0; while :; do echo $i > /w/f$i; rm -f /w/f$((i-5)); i=$((i+1)); done";
    let id = s.ok(&["run", "-d", "--name", "live", "bb:1", "sh", "-c", script]).trim().to_string();
    let state = Command::new("runc")
        .arg("--root")
        .arg(s.root().join("runtime/runc"))
        .args(["state", &id])
        .output()
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).expect("runc state");
    let (freezer, frozen) = freezer_of(state["pid"].as_u64().unwrap() as u32);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if std::fs::read_to_string(&freezer).is_ok_and(|s| s.contains(frozen)) {
                    seen += 1;
                }
            }
            seen
        })
    };
    for n in 0..5 {
        s.ok(&["commit", "live", &format!("snap:{n}")]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    assert!(seen > 0, "the container was never paused during 5 commits");
    // Resumed: it goes on writing.
    let ls = |s: &Strata| s.ok(&["ls", "live", "/w"]);
    let before = ls(&s);
    common::run::eventually("the container writes again", || ls(&s) != before);
    let ps = s.ok(&["ps", "--no-trunc"]);
    assert!(ps.contains(&id) && ps.contains("Up"), "{ps}");
}

/// The mount daemon's log has no colour codes, whatever the CLI's stderr was: the daemon forked
/// from `strata mount` keeps the CLI's logging, which colours stderr only on a terminal and must
/// stop once stderr is the log file. Mounted once from a pipe and once from a terminal
/// (script(1)); a warning through a pipe is plain too.
#[test]
fn the_mount_log_has_no_colour_codes() {
    let s = with_container();
    let at = s.path("logged");
    std::fs::create_dir_all(&at).unwrap();
    let args = ["--log-level", "info", "mount", "web", at.to_str().unwrap()];
    let out = s.run(&args);
    let mounted = Mounted { s: &s, at: at.clone() };
    assert!(out.status.success(), "{out:?}");
    assert!(!out.stderr.contains(&0x1b), "colour codes into a pipe: {out:?}");
    drop(mounted);
    let line = format!("{} --root {} {}", env!("CARGO_BIN_EXE_strata"), s.root().display(), args.join(" "));
    let out = Command::new("script").args(["-qfec", &line, "/dev/null"]).output().expect("run script(1)");
    let mounted = Mounted { s: &s, at: at.clone() };
    assert!(out.status.success(), "{line}: {out:?}");
    drop(mounted);
    let logs: Vec<PathBuf> = std::fs::read_dir(s.root().join("containers"))
        .unwrap()
        .map(|e| e.unwrap().path().join("mount.log"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = std::fs::read(&logs[0]).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert_eq!(
        text.matches("mounted").count() - text.matches("unmounted").count(),
        2,
        "both mounts logged: {text}"
    );
    assert!(!log.contains(&0x1b), "colour codes in the mount log: {text:?}");
}

/// `strata umount` returns once the daemon has written everything (it waits for the container's
/// lock, which the daemon closes just before it exits): what was written through the mount is
/// in the upper, the record is gone, and the container mounts again at once, round after round.
/// The record keeps its inode from one mount to the next (spares renamed, never a file made and
/// unlinked per pair: each cost the unmount a third of a millisecond on ext4).
#[test]
fn umount_returns_with_the_upper_complete_and_the_record_keeps_its_inode() {
    use std::os::unix::fs::MetadataExt;
    let s = with_container();
    // The store's one container.
    let dir = std::fs::read_dir(s.root().join("containers")).unwrap().flatten().next().unwrap().path();
    let at = s.path("mp");
    std::fs::create_dir_all(&at).unwrap();
    let mut inodes = std::collections::BTreeSet::new();
    for round in 0..4 {
        let m = Mounted::new(&s, &["web"], "mp");
        let record = std::fs::read_to_string(dir.join("mount.json")).unwrap();
        assert!(record.contains(at.to_str().unwrap()), "{record}");
        // An inode number can be reused at once; its birth time (nanoseconds) tells a new file.
        let meta = std::fs::metadata(dir.join("mount.json")).unwrap();
        inodes.insert((meta.ino(), meta.created().unwrap()));
        std::fs::write(m.at.join(format!("etc/round-{round}")), vec![b'x'; 100_000]).unwrap();
        s.ok(&["umount", at.to_str().unwrap()]);
        std::mem::forget(m);
        assert!(!common::mount::is_mounted(&at));
        assert!(!dir.join("mount.json").exists(), "the record is cleared when umount returns");
        assert!(!dir.join("control.sock").exists(), "the daemon's socket is gone when umount returns");
        let written = std::fs::read(dir.join(format!("upper/etc/round-{round}"))).unwrap();
        assert_eq!(written.len(), 100_000, "round {round}: the upper is complete when umount returns");
        assert_eq!(s.ok(&["diff", "web"]).lines().filter(|l| l.contains("/etc/round-")).count(), round + 1);
    }
    // Two spares at most: the first mount makes them, the later ones reuse them.
    assert!(inodes.len() <= 2, "mount.json is a new file at every mount: {inodes:?}");
    let spares = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".mount.json"));
    assert!(spares.count() <= 2);
}

/// The daemon keeps nothing the command inherited: a script that holds a lock (here on fd 7)
/// while it mounts has it back when its shell exits, not when the mount ends.
#[test]
fn the_daemon_keeps_no_descriptor_the_command_inherited() {
    let s = with_container();
    let (lock, at) = (s.path("script.lock"), s.path("mnt"));
    std::fs::create_dir_all(&at).unwrap();
    let script = "exec 7>>\"$1\" && flock 7 && \"$2\" --root \"$3\" mount web \"$4\"";
    let out = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(&lock)
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg(s.root())
        .arg(&at)
        .output()
        .unwrap();
    let _m = Mounted { s: &s, at: at.clone() };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(common::mount::is_mounted(&at));
    let free = Command::new("flock").args(["-n"]).arg(&lock).arg("true").status().unwrap();
    assert!(free.success(), "the mount daemon still holds the script's lock");
}

//! Issue 12 item 7: crash ordering. A worker copies up, deletes, renames and `rm -rf`s a lower
//! tree through the mount while the daemon is killed with SIGKILL at a random moment; after a
//! remount every name the worker saw deleted stays deleted, and the merged view agrees with
//! itself (a listed name can be stat'ed, a lower name not listed can't: nothing both visible
//! and whited out). 50 rounds (about 15 s); STRATA_CRASH_ROUNDS for more.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::mount::*;

const DIRS: usize = 4;
const FILES: usize = 40;

/// A small xorshift generator, seeded from the clock (the seed is printed).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn lower_names() -> Vec<String> {
    let mut v = Vec::new();
    for d in 0..DIRS {
        v.push(format!("d{d}"));
        v.push(format!("d{d}/sub"));
        for f in 0..FILES {
            v.push(format!("d{d}/f{f}"));
        }
        for f in 0..5 {
            v.push(format!("d{d}/sub/g{f}"));
        }
    }
    v
}

/// What the worker saw complete: names it deleted (or renamed away).
type Seen = Arc<Mutex<BTreeSet<String>>>;

fn work(mnt: &Path, seen: &Seen, rng: &mut Rng) {
    let done = |n: &str| seen.lock().unwrap().insert(n.to_string());
    for d in 0..DIRS {
        let dir = mnt.join(format!("d{d}"));
        for f in 0..FILES {
            let name = format!("d{d}/f{f}");
            let p = mnt.join(&name);
            match rng.next() % 4 {
                // copy-up, then delete: the upper entry and the whiteout both matter
                0 => {
                    let Ok(mut w) = fs::OpenOptions::new().append(true).open(&p) else { return };
                    if w.write_all(b"+").is_err() {
                        return;
                    }
                    drop(w);
                    if fs::remove_file(&p).is_err() {
                        return;
                    }
                    done(&name);
                }
                1 => {
                    if fs::remove_file(&p).is_err() {
                        return;
                    }
                    done(&name);
                }
                2 => {
                    if fs::rename(&p, mnt.join(format!("d{d}/r{f}"))).is_err() {
                        return;
                    }
                    done(&name);
                }
                _ => {}
            }
        }
        // rename a lower directory (its subtree is copied up), then rm -rf the whole dir
        if fs::rename(dir.join("sub"), dir.join("moved")).is_err() {
            return;
        }
        done(&format!("d{d}/sub"));
        if fs::remove_dir_all(&dir).is_err() {
            return;
        }
        for n in
            lower_names().into_iter().filter(|n| n.starts_with(&format!("d{d}/")) || *n == format!("d{d}"))
        {
            done(&n);
        }
    }
}

fn clear(p: &Path) {
    for e in fs::read_dir(p).unwrap().flatten() {
        let path = e.path();
        if e.file_type().unwrap().is_dir() {
            fs::remove_dir_all(&path).unwrap();
        } else {
            fs::remove_file(&path).unwrap();
        }
    }
}

fn check(mnt: &Path, seen: &BTreeSet<String>, round: usize) {
    for n in seen {
        assert!(
            fs::symlink_metadata(mnt.join(n)).is_err(),
            "round {round}: {n} was deleted before the crash but is back after the remount"
        );
    }
    for n in lower_names() {
        let p: PathBuf = mnt.join(&n);
        let visible = fs::symlink_metadata(&p).is_ok();
        let parent = p.parent().unwrap();
        let listed = fs::read_dir(parent)
            .map(|rd| {
                rd.flatten().any(|e| {
                    e.file_name().to_string_lossy() == *Path::new(&n).file_name().unwrap().to_string_lossy()
                })
            })
            .unwrap_or(false);
        assert_eq!(
            visible, listed,
            "round {round}: {n} stat'able: {visible}, listed in its directory: {listed}"
        );
    }
}

#[test]
fn kill_during_deletes_and_renames() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    let rounds = std::env::var("STRATA_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    for n in lower_names() {
        let p = s.p(&format!("l1/{n}"));
        if n.contains("/f") || n.contains("/g") {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, &n).unwrap();
        } else {
            fs::create_dir_all(&p).unwrap();
        }
    }
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    // How long an uninterrupted worker runs, to spread the kills over it.
    let full = {
        let mut m = s.mount_rw(1);
        let seen = Seen::default();
        let t = Instant::now();
        work(&m.mountpoint, &seen, &mut Rng(seed));
        let full = t.elapsed();
        m.unmount();
        full
    };
    clear(&s.p("upper"));
    clear(&s.p("work"));
    let mut hit = 0;
    for round in 0..rounds {
        let mut m = s.mount_rw(1);
        let pids = daemon_pids(&m.mountpoint);
        assert_eq!(pids.len(), 1, "one daemon for the mount");
        let seen = Seen::default();
        let worker = {
            let (mnt, seen, seed) = (m.mountpoint.clone(), seen.clone(), rng.next() | 1);
            std::thread::spawn(move || work(&mnt, &seen, &mut Rng(seed)))
        };
        let delay = Duration::from_micros(rng.next() % (full.as_micros() as u64).max(1));
        std::thread::sleep(delay);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pids[0]), nix::sys::signal::Signal::SIGKILL)
            .unwrap();
        worker.join().unwrap();
        m.unmount();
        let seen = seen.lock().unwrap().clone();
        if seen.len() < lower_names().len() {
            hit += 1;
        }
        let mut m = s.mount_rw(1);
        check(&m.mountpoint, &seen, round);
        m.unmount();
        clear(&s.p("upper"));
        clear(&s.p("work"));
    }
    eprintln!("{rounds} rounds, {hit} killed mid-way (a full run takes {full:?})");
    assert!(hit > 0, "no round was killed before the worker finished");
}

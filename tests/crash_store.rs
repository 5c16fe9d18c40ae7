//! kill -9 drill (issue 11): import, load, save, commit, rmi, tag and pull are killed at seeded
//! random moments. After each kill `strata system check` passes and reports nothing but what the
//! next writer removes, nothing appeared outside the store (save's partial `.FILE.strata-PID`
//! aside), the retried command succeeds, and the store is then clean.
//!
//! Default: a few kills per command (~30 s). `STRATA_CRASH_ROUNDS=30` runs the full drill;
//! `STRATA_CRASH_SEED` picks another sequence.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::images::{config_for, docker_archive};
use common::registry::{Auth, Registry, noise};
use common::strata::Strata;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Drill {
    s: Strata,
    rng: Rng,
    /// Paths outside the store before the drill (the test's own inputs).
    outside: BTreeSet<PathBuf>,
    kills: usize,
    finished_first: usize,
}

impl Drill {
    /// Runs `args`, SIGKILLs it after a random part of `budget` (unless it finished); returns
    /// whether it was killed.
    fn kill_at_random(&mut self, args: &[&str], budget: Duration) -> bool {
        let delay = Duration::from_micros(self.rng.below(budget.as_micros() as u64));
        let mut child =
            self.s.command(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn strata");
        let start = Instant::now();
        while start.elapsed() < delay {
            if child.try_wait().unwrap().is_some() {
                self.finished_first += 1;
                return false;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let killed = child.try_wait().unwrap().is_none();
        child.kill().ok();
        child.wait().unwrap();
        if killed {
            self.kills += 1;
        } else {
            self.finished_first += 1;
        }
        killed
    }

    /// `system check` passes; every leftover is one the next writer removes.
    fn check_after_kill(&self, what: &str) {
        let out = self.s.run(&["system", "check"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "after killing {what}: system check fails:\n{text}");
        let mut in_leftovers = false;
        for line in text.lines() {
            if line.starts_with("Leftovers:") {
                in_leftovers = true;
                continue;
            }
            if in_leftovers && line.starts_with("  ") && !line.trim_start().starts_with("TYPE") {
                if line.trim_start().starts_with("total") {
                    continue;
                }
                assert!(line.contains("next writer removes"), "after killing {what}: {line}\n{text}");
            }
        }
        self.nothing_outside(what);
    }

    /// After a successful writer: nothing left over at all.
    fn check_clean(&self, what: &str) {
        let out = self.s.run(&["system", "check"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !text.contains("Leftovers") && !text.contains("Errors"),
            "after {what}:\n{text}"
        );
    }

    /// Nothing new outside the store but save's output (its final file and partial ones).
    fn nothing_outside(&self, what: &str) {
        let mut now = BTreeSet::new();
        walk(self.s.dir.path(), &self.s.root(), &mut now);
        for p in now.difference(&self.outside) {
            let name = p.file_name().unwrap().to_string_lossy();
            let saved = p.parent() == Some(&self.s.path("out"))
                && (name == "img.tar" || (name.starts_with(".img.tar.strata-")));
            assert!(saved, "after killing {what}: {} appeared outside the store", p.display());
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.s.ok(args)
    }

    /// Removes the image `name` names, whatever other tags it has.
    fn remove_with_every_tag(&self, name: &str) {
        let id = self.ok(&["images", "-q", "--no-trunc", name]);
        let id = id.lines().next().unwrap_or_else(|| panic!("{name} is not stored"));
        self.ok(&["rmi", "-f", id.trim()]);
    }

    fn try_run(&self, args: &[&str]) {
        let _ = self.s.run(args);
    }

    fn time(&self, args: &[&str]) -> Duration {
        let t = Instant::now();
        self.ok(args);
        t.elapsed()
    }
}

fn walk(dir: &Path, skip: &Path, out: &mut BTreeSet<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p == skip {
            continue;
        }
        let is_dir = std::fs::symlink_metadata(&p).unwrap().is_dir();
        out.insert(p.clone());
        if is_dir {
            walk(&p, skip, out);
        }
    }
}

/// A rootfs tar: many small files and one large one, so a kill lands in the middle of work.
fn rootfs_tar(path: &Path, seed: u64) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for i in 0..600 {
        let mut h = tar::Header::new_gnu();
        let data = noise(512, seed * 1000 + i);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, format!("d{}/f{i}", i % 20), &data[..]).unwrap();
    }
    let big = noise(6 << 20, seed);
    let mut h = tar::Header::new_gnu();
    h.set_size(big.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "big", &big[..]).unwrap();
    b.finish().unwrap();
}

fn layer(seed: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let data = noise(4 << 20, seed);
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, format!("layer{seed}"), &data[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn kill_9_at_random_moments_leaves_only_what_the_next_writer_removes() {
    let rounds = env_u64("STRATA_CRASH_ROUNDS", 3);
    let seed = env_u64("STRATA_CRASH_SEED", 0x005e_ed11);
    let s = Strata::new();
    let big = s.path("big.tar");
    rootfs_tar(&big, 1);
    // rmi's image has layers of its own, so that removing it has work to do.
    let own = s.path("own.tar");
    rootfs_tar(&own, 7);
    let layers = [layer(2), layer(3)];
    let archive = s.path("img.tar");
    docker_archive(&archive, &layers, Some(config_for(&layers)), &["ld:1"]);
    std::fs::create_dir(s.path("out")).unwrap();
    let mut outside = BTreeSet::new();
    walk(s.dir.path(), &s.root(), &mut outside);
    let mut d = Drill { s, rng: Rng(seed | 1), outside, kills: 0, finished_first: 0 };
    let (big, archive) = (big.to_str().unwrap().to_string(), archive.to_str().unwrap().to_string());
    let own = own.to_str().unwrap().to_string();
    let out_file = d.s.path("out/img.tar").to_str().unwrap().to_string();

    // Each command once uninterrupted: it works, and its duration is the window kills fall in.
    let t_import = d.time(&["import", &big, "imp:1"]);
    let t_load = d.time(&["load", "-i", &archive]);
    let t_save = d.time(&["save", "-o", &out_file, "ld:1"]);
    // The container's image is one no round removes.
    d.ok(&["import", &big, "base:1"]);
    d.ok(&["create", "--name", "c1", "base:1"]);
    let upper = d.s.root().join("containers").join(d.ok(&["ps", "-aq", "--no-trunc"]).trim()).join("upper");
    for i in 0..300 {
        std::fs::write(upper.join(format!("n{i}")), noise(1024, 50 + i)).unwrap();
    }
    std::fs::write(upper.join("bigger"), noise(4 << 20, 99)).unwrap();
    let t_commit = d.time(&["commit", "c1", "com:1"]);
    d.ok(&["import", &own, "rm:1"]);
    let t_rmi = d.time(&["rmi", "rm:1"]);
    let t_tag = d.time(&["tag", "ld:1", "t:0"]);
    let registry = Registry::start(Auth::None);
    let remote = format!("{}/crash/ld:1", registry.host());
    d.ok(&["tag", "ld:1", &remote]);
    d.ok(&["push", &remote]);
    d.ok(&["rmi", &remote]);
    let t_pull = d.time(&["pull", "-q", &remote]);
    d.check_clean("the uninterrupted runs");
    let window = |t: Duration| t.mul_f64(1.2) + Duration::from_millis(5);

    for round in 0..rounds {
        // import
        d.try_run(&["rmi", "-f", "imp:1"]);
        d.kill_at_random(&["import", &big, "imp:1"], window(t_import));
        d.check_after_kill("import");
        d.ok(&["import", &big, "imp:1"]);
        d.check_clean("a retried import");

        // load (the image removed first, so that it is stored again)
        d.remove_with_every_tag("ld:1");
        d.kill_at_random(&["load", "-i", &archive], window(t_load));
        d.check_after_kill("load");
        d.ok(&["load", "-i", &archive]);
        d.check_clean("a retried load");

        // save (a reader: nothing in the store to clean, nothing half-written left as the file)
        std::fs::remove_file(&out_file).ok();
        d.kill_at_random(&["save", "-o", &out_file, "ld:1"], window(t_save));
        d.check_after_kill("save");
        d.ok(&["save", "-o", &out_file, "ld:1"]);
        let members = tar::Archive::new(std::fs::File::open(&out_file).unwrap()).entries().unwrap().count();
        assert!(members > 3, "the retried save wrote a whole archive");

        // commit
        d.try_run(&["rmi", "com:1"]);
        d.kill_at_random(&["commit", "c1", "com:1"], window(t_commit));
        d.check_after_kill("commit");
        d.ok(&["commit", "c1", "com:1"]);
        d.check_clean("a retried commit");

        // rmi: a retry either removes it, or reports the removal a killed one began; or the
        // killed one had finished and it is simply gone.
        d.ok(&["import", &own, "rm:1"]);
        d.kill_at_random(&["rmi", "rm:1"], window(t_rmi));
        d.check_after_kill("rmi");
        let retry = d.s.run(&["rmi", "rm:1"]);
        let listed = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(!listed.lines().any(|l| l == "rm:1"), "rm:1 still listed after the retry");
        if !retry.status.success() {
            let err = String::from_utf8_lossy(&retry.stderr);
            assert!(err.contains("no such image"), "retried rmi: {err}");
        }
        d.check_clean("a retried rmi");

        // tag
        let name = format!("t:{}", round + 1);
        d.kill_at_random(&["tag", "ld:1", &name], window(t_tag));
        d.check_after_kill("tag");
        d.ok(&["tag", "ld:1", &name]);
        let listed = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(listed.lines().any(|l| l == name), "{name} not listed: {listed}");

        // pull (the image removed first, so that its layers are fetched again)
        d.remove_with_every_tag("ld:1");
        d.kill_at_random(&["pull", "-q", &remote], window(t_pull));
        d.check_after_kill("pull");
        d.ok(&["pull", "-q", &remote]);
        d.check_clean("a retried pull");
        d.ok(&["tag", &remote, "ld:1"]);
    }
    eprintln!(
        "{} kills, {} commands finished before their kill ({rounds} rounds, seed {seed:#x})",
        d.kills, d.finished_first
    );
    assert!(d.kills >= (rounds as usize * 7) / 3, "too few commands were actually killed: {}", d.kills);
}

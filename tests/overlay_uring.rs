//! FUSE over io_uring: a real workload through the kernel on a mount served through the ring
//! (the daemon's own count of requests served each way tells the ring from a silent fallback),
//! FUSE passthrough still taking reads off the daemon, and a clean fallback to /dev/fuse when
//! the fuse module's `enable_uring` parameter is off or the mount says `noio_uring`.
//!
//! `enable_uring` is global: each test sets it under a lock for the mount's set-up only (the
//! kernel decides at INIT) and puts the old value back at once.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::mount::*;

const PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

/// `enable_uring` set to a value until dropped (then restored), with other tests of this
/// binary kept out meanwhile.
struct UringParam {
    old: String,
    _lock: nix::fcntl::Flock<fs::File>,
}

impl UringParam {
    fn set(on: bool) -> Option<UringParam> {
        if !Path::new(PARAM).exists() {
            missing("the fuse module has no enable_uring parameter (kernel without CONFIG_FUSE_IO_URING)");
            return None;
        }
        let f = fs::File::create("/tmp/strata-test-enable-uring.lock").expect("lock file");
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .expect("flock");
        let old = fs::read_to_string(PARAM).expect("read enable_uring").trim().to_string();
        fs::write(PARAM, if on { "Y" } else { "N" }).expect("write enable_uring");
        Some(UringParam { old, _lock: lock })
    }
}

impl Drop for UringParam {
    fn drop(&mut self) {
        let _ = fs::write(PARAM, &self.old);
    }
}

/// strata-overlay in the foreground, its log (info) in a file.
struct Daemon {
    child: Child,
    mp: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Mounts with `param` set while the kernel's INIT is answered, then restores it.
    fn start(s: &Scratch, extra: &str, uring_on: bool) -> Option<Daemon> {
        Self::start_env(s, extra, uring_on, &[])
    }

    /// `start` with more variables in the daemon's environment.
    fn start_env(s: &Scratch, extra: &str, uring_on: bool, env: &[(&str, &str)]) -> Option<Daemon> {
        let param = UringParam::set(uring_on)?;
        let mp = fs::canonicalize(s.p("mnt")).unwrap();
        let log = s.p("daemon.log");
        let opts = if extra.is_empty() { s.rw_opts(1) } else { format!("{},{extra}", s.rw_opts(1)) };
        let child = Command::new(BIN)
            .args(["-f", "-o", &opts])
            .arg(&mp)
            .env("STRATA_LOG", "info")
            .env_remove("STRATA_IO_URING")
            .env_remove("STRATA_IO_URING_THREADS")
            .env_remove("STRATA_FUSE_SPIN_US")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("strata-overlay");
        let mut d = Daemon { child, mp, log };
        let start = Instant::now();
        while !is_mounted(&d.mp) {
            assert!(d.child.try_wait().unwrap().is_none(), "strata-overlay exited: {}", d.log_text());
            assert!(start.elapsed() < Duration::from_secs(20), "no mount after 20 s: {}", d.log_text());
            std::thread::sleep(Duration::from_millis(5));
        }
        // A stat answers only once INIT is done (and, with io_uring, the rings are registered).
        fs::metadata(&d.mp).expect("stat the mount root");
        drop(param);
        Some(d)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// io_uring instances the daemon holds open (anon_inode:[io_uring] fds).
    fn ring_fds(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .flatten()
            .filter(|e| fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:[io_uring]"))
            .count()
    }

    /// Completions the kernel posted on the daemon's rings (`CqTail` in their fdinfo): the
    /// kernel's own count, beside the daemon's.
    fn ring_completions(&self) -> u64 {
        let pid = self.child.id();
        let mut total = 0;
        for e in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
            if !fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:[io_uring]") {
                continue;
            }
            let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", e.file_name().to_string_lossy()))
                .unwrap();
            let tail =
                info.lines().find_map(|l| l.strip_prefix("CqTail:")).unwrap_or_else(|| panic!("{info}"));
            total += tail.trim().parse::<u64>().unwrap();
        }
        total
    }

    /// Unmounts, waits for the daemon and returns its log.
    fn finish(mut self) -> String {
        nix::mount::umount2(&self.mp, nix::mount::MntFlags::empty()).expect("umount");
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < Duration::from_secs(20), "daemon still running: {}", self.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
        let st = self.child.wait().unwrap();
        let log = self.log_text();
        assert!(st.success(), "daemon exit {st:?}: {log}");
        log
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if is_mounted(&self.mp) {
            let _ = nix::mount::umount2(&self.mp, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's closing count: (through io_uring, through /dev/fuse, failed registrations).
fn served(log: &str) -> (u64, u64, u64) {
    let line = log.lines().find(|l| l.contains("FUSE requests served")).unwrap_or_else(|| panic!("{log}"));
    let field = |name: &str| -> u64 {
        let v = line.split(&format!("{name}=")).nth(1).unwrap_or_else(|| panic!("{name} in {line}"));
        v.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    (field("io_uring_requests"), field("dev_fuse_requests"), field("io_uring_register_failures"))
}

fn possible_cpus() -> usize {
    let text = fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    text.trim().split([',', '-']).filter_map(|n| n.parse::<usize>().ok()).max().unwrap() + 1
}

const FILES: usize = 300;

/// Lower content the workload reads, appends to (copy-up), renames and removes.
fn lower_fixture(s: &Scratch) {
    for i in 0..40 {
        s.write(&format!("l1/lower/f{i:03}"), &format!("lower {i}\n"));
    }
}

/// Creates, writes, reads, renames, lists, links and unlinks a few hundred files through the
/// mount, checking every result.
fn workload(mp: &Path) {
    let dirs = ["a", "b", "c/d"];
    for d in dirs {
        fs::create_dir_all(mp.join(d)).unwrap();
    }
    for i in 0..FILES {
        let p = mp.join(dirs[i % 3]).join(format!("file{i:04}"));
        let mut f = fs::File::create(&p).unwrap();
        writeln!(f, "content of {i}").unwrap();
        f.write_all(&vec![b'x'; i * 37]).unwrap();
    }
    for i in 0..FILES {
        let p = mp.join(dirs[i % 3]).join(format!("file{i:04}"));
        let data = fs::read(&p).unwrap();
        assert!(data.starts_with(format!("content of {i}\n").as_bytes()), "{}", p.display());
        assert_eq!(data.len(), format!("content of {i}\n").len() + i * 37, "{}", p.display());
    }
    // renames: within a directory and across directories
    for i in (0..FILES).step_by(3) {
        let from = mp.join("a").join(format!("file{i:04}"));
        let to = if i % 2 == 0 {
            mp.join("a").join(format!("renamed{i:04}"))
        } else {
            mp.join("b").join(format!("moved{i:04}"))
        };
        fs::rename(&from, &to).unwrap();
    }
    // hard links
    for i in (1..FILES).step_by(3).take(50) {
        let src = mp.join("b").join(format!("file{i:04}"));
        let dst = mp.join("c").join(format!("link{i:04}"));
        fs::hard_link(&src, &dst).unwrap();
        assert_eq!(fs::metadata(&src).unwrap().ino(), fs::metadata(&dst).unwrap().ino());
        assert_eq!(fs::metadata(&dst).unwrap().nlink(), 2);
    }
    // unlinks
    for i in (2..FILES).step_by(3).take(60) {
        fs::remove_file(mp.join("c/d").join(format!("file{i:04}"))).unwrap();
    }
    // the lower files: read, append (copy-up), rename one, remove one
    for i in 0..40 {
        let p = mp.join("lower").join(format!("f{i:03}"));
        assert_eq!(fs::read_to_string(&p).unwrap(), format!("lower {i}\n"));
        if i % 4 == 0 {
            fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"more\n").unwrap();
        }
    }
    fs::rename(mp.join("lower/f001"), mp.join("lower/g001")).unwrap();
    fs::remove_file(mp.join("lower/f002")).unwrap();
    // readdir sees exactly what is there
    let a = names(&mp.join("a"));
    assert_eq!(a.len(), FILES / 3 - moved(), "{a:?}");
    assert!(a.iter().all(|n| n.starts_with("renamed")), "{a:?}");
    let b = names(&mp.join("b"));
    assert_eq!(b.len(), FILES / 3 + moved());
    let c = names(&mp.join("c"));
    assert_eq!(c.len(), 50 + 1, "{c:?}"); // the links and d/
    assert_eq!(names(&mp.join("c/d")).len(), FILES / 3 - 60);
    let lower = names(&mp.join("lower"));
    assert_eq!(lower.len(), 39);
    assert!(lower.contains(&"g001".to_string()) && !lower.contains(&"f002".to_string()));
    assert_eq!(fs::read_to_string(mp.join("lower/f004")).unwrap(), "lower 4\nmore\n");
}

/// Files the workload moves from a/ to b/.
fn moved() -> usize {
    (0..FILES).step_by(3).filter(|i| i % 2 == 1).count()
}

/// What the workload left in the upper, checked after unmount.
fn check_upper(s: &Scratch) {
    assert_eq!(names(&s.p("upper/a")).len(), FILES / 3 - moved());
    assert_eq!(fs::read_to_string(s.p("upper/lower/f004")).unwrap(), "lower 4\nmore\n");
    assert!(s.p("upper/lower/.wh.f002").exists());
    let link = s.p("upper/c/link0001");
    assert_eq!(fs::metadata(&link).unwrap().nlink(), 2);
}

#[test]
fn workload_is_served_through_the_ring() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    lower_fixture(&s);
    let Some(d) = Daemon::start(&s, "io_uring", true) else { return };
    let rings = d.ring_fds();
    // Two threads, each with its own ring, per CPU queue (the default: a slow request holds
    // only one of them).
    assert_eq!(rings, 2 * possible_cpus(), "two rings per CPU queue in the daemon: {}", d.log_text());
    workload(&d.mp);
    let completions = d.ring_completions();
    let log = d.finish();
    assert!(log.contains("transport=\"io_uring\""), "{log}");
    let (ring, dev, failed) = served(&log);
    assert!(completions + 10 >= ring && completions > 5 * FILES as u64, "kernel: {completions} completions");
    assert_eq!(failed, 0, "{log}");
    // Every create alone is several requests; with a silent fallback this count is 0.
    assert!(ring > 5 * FILES as u64, "only {ring} requests through io_uring: {log}");
    assert!(ring > 10 * dev, "{ring} through io_uring, {dev} through /dev/fuse: {log}");
    assert!(!log.contains(" WARN ") && !log.contains(" ERROR "), "{log}");
    check_upper(&s);
}

/// Passthrough still keeps file data off the daemon with io_uring on: reading 64 MiB takes a
/// handful of requests, where without passthrough it takes at least one READ per MiB.
#[test]
fn passthrough_keeps_reads_off_the_ring() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    let big = vec![7u8; 64 << 20];
    fs::create_dir_all(s.p("l1")).unwrap();
    fs::write(s.p("l1/big"), &big).unwrap();
    let mut counts = Vec::new();
    for extra in ["io_uring", "io_uring,nopassthrough"] {
        let Some(d) = Daemon::start(&s, extra, true) else { return };
        let read = fs::read(d.mp.join("big")).unwrap();
        assert!(read == big, "{extra}: 64 MiB read back wrong");
        let log = d.finish();
        assert!(log.contains("transport=\"io_uring\""), "{log}");
        let (ring, _, _) = served(&log);
        counts.push(ring);
    }
    assert!(counts[0] < 40, "with passthrough the reads reached the daemon: {} requests", counts[0]);
    assert!(counts[1] >= 64, "without passthrough: only {} requests", counts[1]);
}

#[test]
fn falls_back_to_dev_fuse_when_the_kernel_says_no_or_the_mount_does() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    lower_fixture(&s);
    // The parameter off: the kernel does not offer io_uring in INIT.
    let Some(d) = Daemon::start(&s, "io_uring", false) else { return };
    assert_eq!(d.ring_fds(), 0, "no rings when the kernel does not offer io_uring");
    workload(&d.mp);
    let log = d.finish();
    assert!(log.contains("transport=\"/dev/fuse\""), "{log}");
    assert!(log.contains("the kernel does not offer it"), "the log says why: {log}");
    let (ring, dev, failed) = served(&log);
    assert_eq!((ring, failed), (0, 0), "{log}");
    assert!(dev > 5 * FILES as u64, "{log}");
    check_upper(&s);
    // The parameter on, but the mount opts out.
    fs::remove_dir_all(s.p("upper")).unwrap();
    fs::create_dir(s.p("upper")).unwrap();
    let Some(d) = Daemon::start(&s, "noio_uring", true) else { return };
    assert_eq!(d.ring_fds(), 0);
    workload(&d.mp);
    let log = d.finish();
    assert!(log.contains("transport=\"/dev/fuse\"") && log.contains("not requested"), "{log}");
    assert_eq!(served(&log).0, 0, "{log}");
    check_upper(&s);
}

/// A slow request (the copy-up of a big lower file, made by the OPEN for writing) holds only one
/// of its CPU queue's threads: stats made from the same CPU are answered meanwhile. With one
/// thread per queue they waited for the whole copy.
#[test]
fn a_slow_request_does_not_hold_its_cpu_queue() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    for i in 0..50 {
        s.write(&format!("l1/other/f{i}"), "x");
    }
    let chunk = vec![7u8; 1 << 20];
    let mut big = fs::File::create(s.p("l1/big")).unwrap();
    for _ in 0..512 {
        big.write_all(&chunk).unwrap();
    }
    drop(big);
    let Some(d) = Daemon::start(&s, "io_uring", true) else { return };
    // Every request below comes from CPU 0, so the kernel puts them all on queue 0.
    let on_cpu0 = || {
        let mut set = nix::sched::CpuSet::new();
        set.set(0).unwrap();
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
    };
    fs::symlink_metadata(d.mp.join("other/f0")).unwrap();
    let big = d.mp.join("big");
    let copier = std::thread::spawn(move || {
        on_cpu0();
        let t = Instant::now();
        fs::OpenOptions::new().append(true).open(&big).unwrap().write_all(b"more").unwrap();
        t.elapsed()
    });
    on_cpu0();
    std::thread::sleep(Duration::from_millis(20));
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while !copier.is_finished() {
        let t = Instant::now();
        fs::symlink_metadata(d.mp.join(format!("other/f{}", n % 50))).unwrap();
        let _ = fs::symlink_metadata(d.mp.join(format!("other/missing-{n}")));
        worst = worst.max(t.elapsed());
        n += 1;
    }
    let copy = copier.join().unwrap();
    let mut all = nix::sched::CpuSet::new();
    for c in 0..possible_cpus() {
        let _ = all.set(c);
    }
    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &all);
    assert!(copy > Duration::from_millis(30), "the copy-up was too quick to measure anything ({copy:?})");
    assert!(
        worst < copy / 2,
        "a stat on the copy-up's CPU waited {worst:?} while the copy-up took {copy:?} ({n} stats): {}",
        d.log_text()
    );
    assert!(d.log_text().contains("transport=\"io_uring\""));
}

/// The rings' entries cost memory only as requests fill them: an idle mount has not written
/// (and faulted in) every entry's payload buffer. Zeroing them at set-up cost milliseconds of
/// each io_uring mount and megabytes of memory a mount that reads little never needed.
#[test]
fn idle_ring_entries_take_no_memory() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/f", "x");
    let Some(d) = Daemon::start(&s, "io_uring", true) else { return };
    fs::read(d.mp.join("f")).unwrap();
    let log = d.log_text();
    // "2 queues, 2 thread(s) each, 1024 KiB payload per entry"
    let kib: u64 = log
        .split(" KiB payload per entry")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no payload size in the log: {log}"));
    let entries = d.ring_fds() as u64;
    let status = fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let anon: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{status}"));
    assert!(entries > 0 && kib >= 8, "{entries} entries of {kib} KiB: {log}");
    assert!(
        anon < entries * kib,
        "the daemon holds {anon} KiB of anonymous memory, its {entries} idle ring entries {} KiB",
        entries * kib
    );
    d.finish();
}

/// The daemon's CPU time so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name: state is field 3, utime 14 and stime 15.
    let rest: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
}

/// A spin before sleeping (`STRATA_FUSE_SPIN_US`, at its longest window) happens only right
/// after a request was served: once requests stop, the /dev/fuse threads sleep and an idle mount
/// uses no CPU.
#[test]
fn an_idle_mount_uses_no_cpu_even_with_a_spin() {
    let Some(s) = Scratch::for_fuse(1) else { return };
    s.write("l1/f", "x");
    let Some(d) = Daemon::start_env(&s, "noio_uring", false, &[("STRATA_FUSE_SPIN_US", "1000")]) else {
        return;
    };
    // Lookups of distinct missing names: each one a request.
    for i in 0..2000 {
        assert!(fs::symlink_metadata(d.mp.join(format!("missing{i}"))).is_err());
    }
    assert_eq!(fs::read_to_string(d.mp.join("f")).unwrap(), "x");
    std::thread::sleep(Duration::from_millis(50));
    let pid = d.child.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let idle = cpu_ticks(pid) - before;
    let log = d.finish();
    let (_, dev, _) = served(&log);
    assert!(dev >= 2000, "{dev} requests through /dev/fuse: {log}");
    // A tick is 10 ms: a thread still spinning (even yielding) would use most of the second.
    assert!(idle <= 2, "the idle daemon used {idle} ticks of CPU in 1 s: {log}");
}

/// READ replies written straight into the ring entry's payload: odd offsets and sizes, the
/// largest READ, across and past the end of the file (O_DIRECT, so each read reaches the daemon
/// as asked), and buffered reads through readahead, all served through the ring.
#[test]
fn reads_at_odd_offsets_and_sizes_through_the_ring() {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(s) = Scratch::for_fuse(1) else { return };
    let data = common::registry::noise((3 << 20) + 12345, 11);
    fs::write(s.p("l1/big"), &data).unwrap();
    let Some(d) = Daemon::start(&s, "io_uring,nopassthrough", true) else { return };
    let before = d.ring_completions();
    let direct =
        fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(d.mp.join("big")).unwrap();
    check_reads(&direct, &data, "io_uring, O_DIRECT");
    let buffered = fs::File::open(d.mp.join("big")).unwrap();
    check_reads(&buffered, &data, "io_uring, buffered");
    drop((direct, buffered));
    let completions = d.ring_completions() - before;
    let log = d.finish();
    assert!(log.contains("transport=\"io_uring\""), "{log}");
    // At least one READ per case, and per MiB of the whole-file reads.
    assert!(
        completions >= 2 * read_cases(data.len() as u64).len() as u64,
        "{completions} completions: {log}"
    );
    assert!(!log.contains(" WARN ") && !log.contains(" ERROR "), "{log}");
}

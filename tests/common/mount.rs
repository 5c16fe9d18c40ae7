//! A mount guard for strata-overlay mounts: always unmounts, even when the test panics.
//!
//! Under `CI=true` a missing /dev/fuse or a failed mount fails the test; elsewhere the test is
//! skipped with a message.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The strata-overlay binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_strata-overlay");

pub fn ci() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
}

/// Whether FUSE mounts can run here: root and /dev/fuse. Under CI=true, panics instead of
/// returning false.
pub fn fuse_ready() -> bool {
    let ok = Path::new("/dev/fuse").exists() && nix::unistd::geteuid().is_root();
    if !ok {
        if ci() {
            panic!("CI=true: /dev/fuse missing or not root; FUSE tests can't run");
        }
        eprintln!("skipping: needs root and /dev/fuse");
    }
    ok
}

/// A test prerequisite that is missing: under CI=true a failure naming it, else a skip note.
pub fn missing(what: &str) {
    assert!(!ci(), "CI=true: {what}; the test can't run");
    eprintln!("skipping: {what}");
}

/// Whether `p` is a mount point now (from /proc/self/mountinfo).
pub fn is_mounted(p: &Path) -> bool {
    let info = std::fs::read("/proc/self/mountinfo").unwrap_or_default();
    let want = p.as_os_str().as_bytes();
    info.split(|b| *b == b'\n').any(|l| {
        let f: Vec<&[u8]> = l.split(|b| *b == b' ').collect();
        f.len() > 4 && unescape(f[4]) == want
    })
}

fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 3 < s.len() {
            out.push((s[i + 1] - b'0') * 64 + (s[i + 2] - b'0') * 8 + (s[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// A mounted strata-overlay; unmounted on drop.
pub struct Mount {
    pub mountpoint: PathBuf,
    mounted: bool,
}

impl Mount {
    /// Runs `strata-overlay -o OPTS MOUNTPOINT` (it backgrounds once the mount answers).
    pub fn overlay(opts: &str, mountpoint: &Path) -> Mount {
        Self::run(&[OsString::from("-o"), OsString::from(opts), mountpoint.into()], mountpoint)
    }

    /// Runs strata-overlay with arbitrary arguments; the mount must appear at `mountpoint`.
    pub fn run(args: &[OsString], mountpoint: &Path) -> Mount {
        let mountpoint = std::fs::canonicalize(mountpoint).expect("mountpoint exists");
        let out =
            Command::new(BIN).args(args).env("STRATA_LOG", "warn").output().expect("run strata-overlay");
        assert!(
            out.status.success(),
            "strata-overlay {:?} failed: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            is_mounted(&mountpoint),
            "strata-overlay returned but {} is not mounted",
            mountpoint.display()
        );
        Mount { mountpoint, mounted: true }
    }

    /// Guards a mount made some other way.
    pub fn adopt(mountpoint: &Path) -> Mount {
        Mount { mountpoint: std::fs::canonicalize(mountpoint).expect("mountpoint"), mounted: true }
    }

    /// Stops guarding (the test unmounted by itself).
    pub fn forget(&mut self) {
        self.mounted = false;
    }

    /// `mountpoint/rel`.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(rel)
    }

    /// Unmounts now (lazily if busy) and waits until the mount is gone and the daemon, found
    /// through its command line, has exited.
    pub fn unmount(&mut self) {
        if !self.mounted {
            return;
        }
        self.mounted = false;
        let pids = daemon_pids(&self.mountpoint);
        let c = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::empty());
        if c.is_err() {
            let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
        }
        let start = Instant::now();
        while (is_mounted(&self.mountpoint) || pids.iter().any(|p| alive(*p)))
            && start.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!is_mounted(&self.mountpoint), "{} still mounted", self.mountpoint.display());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            self.mounted = false;
            if nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::empty()).is_err() {
                let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// strace's count of the calls in `trace` (its `-e trace=` syntax) the daemon `pid` makes while
/// `work` runs, every thread traced; `None` when strace is missing (a failure under CI=true).
pub fn daemon_syscalls(pid: i32, trace: &str, work: impl FnOnce()) -> Option<u64> {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    if Command::new("strace").arg("-V").output().is_err() {
        missing("strace is not installed");
        return None;
    }
    let out = tempfile::NamedTempFile::new().unwrap();
    // -f with -p attaches every thread of the daemon.
    let mut tracer = Command::new("strace")
        .args(["-f", "-c", "-e", &format!("trace={trace}"), "-p", &pid.to_string(), "-o"])
        .arg(out.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace");
    let mut lines = std::io::BufReader::new(tracer.stderr.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("strace attaches").unwrap();
        if line.contains("attached") {
            break;
        }
        eprintln!("{line}");
    }
    work();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(tracer.id() as i32), nix::sys::signal::SIGINT).unwrap();
    tracer.wait().unwrap();
    let report = std::fs::read_to_string(out.path()).unwrap();
    // "% time  seconds  usecs/call  calls  [errors]  syscall": calls is the fourth column.
    let calls = report
        .lines()
        .filter(|l| l.split_whitespace().last().is_some_and(|c| c != "total" && c != "syscall"))
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum();
    Some(calls)
}

/// [`daemon_syscalls`] of the daemon serving `m`.
pub fn daemon_calls(m: &Mount, trace: &str, work: impl FnOnce()) -> Option<u64> {
    let pid = *daemon_pids(&m.mountpoint).first().expect("the daemon's pid");
    daemon_syscalls(pid, trace, work)
}

/// Pids of strata-overlay processes whose command line names `mountpoint`.
pub fn daemon_pids(mountpoint: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let is_ours = args.first().map(|a| a.ends_with(b"strata-overlay")).unwrap_or(false);
        let mp = mountpoint.as_os_str().as_bytes();
        if is_ours && args.iter().any(|a| *a == mp || a.ends_with(mp)) {
            out.push(pid);
        }
    }
    out
}

/// Whether a process is alive (not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().map(|r| r.trim_start().starts_with('Z')).unwrap_or(true),
        Err(_) => false,
    }
}

/// A scratch tree: `l1..lN` lower dirs (l1 = top), `upper`, `work`, `mnt`.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    /// Creates the tree with `n` lower dirs.
    pub fn new(n: usize) -> Scratch {
        Scratch::with_dir(n, tempfile::Builder::new().prefix("strata-fs-test").tempdir().expect("tempdir"))
    }

    /// [`Scratch::for_fuse`] on tmpfs (/dev/shm): for tests whose cost would otherwise be the
    /// disk's (e.g. removing a tree 10,000 levels deep takes ext4 half a minute).
    pub fn for_fuse_on_tmpfs(n: usize) -> Option<Scratch> {
        fuse_ready().then(|| {
            let dir =
                tempfile::Builder::new().prefix("strata-fs-test").tempdir_in("/dev/shm").expect("tmpfs dir");
            Scratch::with_dir(n, dir)
        })
    }

    fn with_dir(n: usize, dir: tempfile::TempDir) -> Scratch {
        for i in 1..=n {
            std::fs::create_dir(dir.path().join(format!("l{i}"))).unwrap();
        }
        for d in ["upper", "work", "mnt"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Scratch { dir }
    }

    /// A scratch tree for a FUSE test, or `None` (the test returns) when FUSE can't run here;
    /// under `CI=true` that is a failure, see [`fuse_ready`].
    pub fn for_fuse(n: usize) -> Option<Scratch> {
        fuse_ready().then(|| Scratch::new(n))
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `lowerdir=l1:..:lN,upperdir=upper,workdir=work`.
    pub fn rw_opts(&self, n: usize) -> String {
        let lowers: Vec<String> = (1..=n).map(|i| self.p(&format!("l{i}")).display().to_string()).collect();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            self.p("upper").display(),
            self.p("work").display()
        )
    }

    /// Mounts the lowers with the upper, read-write.
    pub fn mount_rw(&self, n: usize) -> Mount {
        Mount::overlay(&self.rw_opts(n), &self.p("mnt"))
    }

    /// Writes a file (creating parents) in a layer dir.
    pub fn write(&self, rel: &str, data: &str) {
        let p = self.p(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

/// Runs a shell command, panicking with its output on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sorted names in a directory.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// (offset, length) pairs for the read checks: tiny and odd, one page and a byte across a page
/// edge, big enough to be spliced (≥ 32 KiB) at odd offsets, the largest READ the kernel sends
/// (1 MiB: its pipe is bigger than an unprivileged user may make one), a read the kernel splits,
/// across the end of the file (a short reply), at and past the end.
pub fn read_cases(len: u64) -> Vec<(u64, usize)> {
    vec![
        (0, 1),
        (1, 4095),
        (4095, 2),
        (12345, 70001),
        (65536, 1 << 20),
        (7, (1 << 20) + 13),
        (len - 50001, 100_000),
        (len - 1, 10),
        (len, 10),
        (len + 4096, 10),
        (0, len as usize + 1),
    ]
}

/// Reads `f` at every case, each until the end or its length, and compares with `want`.
pub fn check_reads(f: &std::fs::File, want: &[u8], what: &str) {
    use std::os::unix::fs::FileExt;
    for (off, n) in read_cases(want.len() as u64) {
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            match f
                .read_at(&mut buf[got..], off + got as u64)
                .unwrap_or_else(|e| panic!("{what}: read {n} at {off}: {e}"))
            {
                0 => break,
                k => got += k,
            }
        }
        let start = (off as usize).min(want.len());
        let end = (off as usize + n).min(want.len());
        assert_eq!(got, end - start, "{what}: read {n} at {off}: length");
        assert!(buf[..got] == want[start..end], "{what}: read {n} at {off}: wrong bytes");
    }
}

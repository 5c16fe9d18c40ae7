//! Running strata as an ordinary user: CI runs as root, so the tests create unprivileged users
//! (idempotently, under a lock: test processes run in parallel) and run strata as them through
//! `setpriv`, each test with a HOME and XDG directories of its own.
//!
//! - [`TestUser::with_subids`]: `strata-rootless`, with the range [`SUB_START`]…+[`SUB_COUNT`] in
//!   /etc/subuid and /etc/subgid (what `usermod --add-subuids` writes).
//! - [`TestUser::without_subids`]: `strata-nosubids`, with no range at all.
//!
//! Not root and not CI: the test is skipped with a message; under `CI=true` it fails instead.

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::strata::{expect_failure, expect_ok};

pub const SUB_START: u32 = 300_000;
pub const SUB_COUNT: u32 = 65_536;

pub fn ci() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
}

pub struct TestUser {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
    /// The user's HOME for this test (0700, the user's; removed by root at the end).
    pub home: tempfile::TempDir,
    pub subids: bool,
}

impl TestUser {
    /// The user with a subordinate id range; `None` (skip) when not root outside CI.
    pub fn with_subids() -> Option<TestUser> {
        TestUser::setup("strata-rootless", true)
    }

    /// The user without any subordinate ids.
    pub fn without_subids() -> Option<TestUser> {
        TestUser::setup("strata-nosubids", false)
    }

    fn setup(name: &'static str, subids: bool) -> Option<TestUser> {
        if !nix::unistd::geteuid().is_root() {
            assert!(!ci(), "CI=true: the rootless tests create users and need root");
            eprintln!("skipping: creating a test user needs root");
            return None;
        }
        let (uid, gid) = {
            let _lock = lock();
            ensure_user(name);
            set_subids(name, subids);
            let u = nix::unistd::User::from_name(name).unwrap().expect("user just created");
            (u.uid.as_raw(), u.gid.as_raw())
        };
        let home = tempfile::Builder::new().prefix("strata-rootless-").tempdir_in("/tmp").unwrap();
        for d in ["", ".local/share", ".config", "run"] {
            let p = home.path().join(d);
            std::fs::create_dir_all(&p).unwrap();
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        std::os::unix::fs::chown(home.path().join(".local"), Some(uid), Some(gid)).unwrap();
        Some(TestUser { name, uid, gid, home, subids })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.home.path().join(rel)
    }

    /// The default store of this user: `$XDG_DATA_HOME/strata`.
    pub fn store(&self) -> PathBuf {
        self.path(".local/share/strata")
    }

    /// Makes `p` (a file or directory the test made as root) the user's.
    pub fn give(&self, p: &Path) {
        std::os::unix::fs::lchown(p, Some(self.uid), Some(self.gid)).unwrap();
    }

    /// `program args…` as this user, with a clean environment: PATH, HOME, USER, LOGNAME, the XDG
    /// directories in the test's HOME, and CI passed on.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("/usr/bin/setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg("--")
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.home.path())
            .env("USER", self.name)
            .env("LOGNAME", self.name)
            .env("XDG_DATA_HOME", self.path(".local/share"))
            .env("XDG_CONFIG_HOME", self.path(".config"))
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .current_dir(self.home.path())
            .stdin(Stdio::null());
        if let Some(v) = std::env::var_os("CI") {
            c.env("CI", v);
        }
        c
    }

    /// strata as this user, on its default store.
    pub fn strata(&self, args: &[&str]) -> Command {
        self.command(env!("CARGO_BIN_EXE_strata"), args)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.strata(args).output().expect("run strata through setpriv")
    }

    /// Runs strata as the user and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        expect_ok(self.run(args), args)
    }

    /// Runs strata as the user and asserts a clean failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        expect_failure(self.run(args), args)
    }
}

impl Drop for TestUser {
    /// Ends the process that keeps this test's user namespace (strata keeps one per runtime
    /// directory, and each test has a directory of its own), so none outlives the test.
    fn drop(&mut self) {
        if self.path("run/strata/userns.pid").exists() {
            let _ = self.strata(&["system", "migrate"]).output();
        }
    }
}

/// Makes /dev/fuse usable by ordinary users where it is 0600 (some container hosts): 0666 is how
/// Debian ships it. Done under `CI=true` only, and said on stderr; elsewhere a 0600 /dev/fuse
/// skips the test (`false`) with the command to run.
pub fn dev_fuse_for_users() -> bool {
    let Ok(m) = std::fs::metadata("/dev/fuse") else {
        assert!(!ci(), "CI=true: /dev/fuse is missing");
        eprintln!("skipping: no /dev/fuse");
        return false;
    };
    if m.mode() & 0o006 == 0o006 {
        return true;
    }
    if !ci() {
        eprintln!(
            "skipping: /dev/fuse is {:o}; `chmod 0666 /dev/fuse` (Debian's mode) to run this",
            m.mode() & 0o777
        );
        return false;
    }
    eprintln!("CI=true: making /dev/fuse 0666 as Debian ships it (it was {:o})", m.mode() & 0o777);
    std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).expect("chmod /dev/fuse");
    true
}

/// Serialises user and /etc/sub[ug]id changes between test processes.
fn lock() -> nix::fcntl::Flock<std::fs::File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/strata-test-users.lock")
        .expect("lock file");
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e).expect("flock")
}

fn ensure_user(name: &str) {
    if nix::unistd::User::from_name(name).unwrap().is_some() {
        return;
    }
    let out = Command::new("useradd")
        .args(["--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh", "--user-group", name])
        .output()
        .expect("run useradd");
    assert!(out.status.success(), "useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Gives `name` exactly the test range in /etc/subuid and /etc/subgid, or none at all.
fn set_subids(name: &str, subids: bool) {
    let line = format!("{name}:{SUB_START}:{SUB_COUNT}");
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let mut lines: Vec<&str> = text.lines().filter(|l| l.split(':').next() != Some(name)).collect();
        if subids {
            lines.push(&line);
        }
        let mut new = lines.join("\n");
        if !new.is_empty() {
            new.push('\n');
        }
        if new != text {
            // Renamed in whole: newuidmap in another test process never reads half a file.
            let tmp = format!("{file}.strata-test");
            std::fs::write(&tmp, new).unwrap_or_else(|e| panic!("writing {tmp}: {e}"));
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::fs::rename(&tmp, file).unwrap_or_else(|e| panic!("replacing {file}: {e}"));
        }
    }
}

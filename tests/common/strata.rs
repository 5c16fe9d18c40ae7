//! Runs the real `strata` binary against a temporary store.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Strata {
    pub dir: tempfile::TempDir,
}

impl Strata {
    pub fn new() -> Strata {
        Strata { dir: tempfile::Builder::new().prefix("strata-test-").tempdir().expect("tempdir") }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A scratch path inside the test's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.arg("--root").arg(self.root()).args(args).env_remove("STRATA_ROOT").stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run strata")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        expect_ok(self.run(args), args)
    }

    /// Runs and asserts failure with a one-line error; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        expect_failure(self.run(args), args)
    }

    /// Every path in the store with its type, size and mode (lock and tmp/ excluded): compare
    /// before and after a failing command to prove the store did not change.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, (u32, u64)> {
        let mut out = BTreeMap::new();
        let root = self.root();
        if root.exists() {
            walk(&root, &root, &mut out);
        }
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, u64)>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        let p = e.path();
        let rel = p.strip_prefix(root).expect("prefix").to_path_buf();
        if rel == Path::new("lock") || rel.starts_with("tmp") {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).expect("metadata");
        out.insert(rel, (m.mode(), if m.is_dir() { 0 } else { m.size() }));
        if m.is_dir() {
            walk(root, &p, out);
        }
    }
}

/// A small busybox rootfs (static busybox from the host plus a few files) in `dir`.
pub fn busybox_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("busybox-static must be installed (scripts/test.sh installs it)");
    for applet in ["sh", "ls", "cat", "echo", "rm", "touch", "mkdir"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/motd"), "hello from strata\n").unwrap();
}

/// `tar -C dir -c[z|--zstd]f out .` with GNU tar.
pub fn tar_dir(dir: &Path, out: &Path, compress: &str) {
    let mut c = Command::new("tar");
    c.arg("-C").arg(dir).arg("--numeric-owner").arg("--xattrs").arg("--format=pax");
    match compress {
        "gzip" => c.arg("-z"),
        "zstd" => c.arg("--zstd"),
        _ => &mut c,
    };
    let st = c.arg("-cf").arg(out).arg(".").status().expect("run tar");
    assert!(st.success(), "tar failed");
}

/// A store with one imported image `foo:1`; returns its id (64 hex).
pub fn store_with_image(s: &Strata) -> String {
    let rootfs = s.path("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/motd"), "hello\n").unwrap();
    let tar = s.path("rootfs.tar");
    tar_dir(&rootfs, &tar, "plain");
    let id = s.ok(&["import", tar.to_str().unwrap(), "foo:1"]);
    id.trim().strip_prefix("sha256:").unwrap().to_string()
}

/// Asserts a strata run succeeded; returns its stdout.
pub fn expect_ok(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "strata {args:?} failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Asserts a strata run failed with an error message and no panic; returns its stderr.
pub fn expect_failure(out: Output, args: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "strata {args:?} should fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("error"), "error message expected, got {err:?}");
    assert!(!err.contains("panicked"), "strata panicked: {err}");
    err
}

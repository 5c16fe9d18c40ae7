//! Containers run for real: a busybox-static image and the runtime check. Under `CI=true` a
//! missing runtime or FUSE fails the test; elsewhere the test is skipped with a message.

use std::path::Path;
use std::process::Command;

use super::mount::fuse_ready;
use super::strata::{Strata, tar_dir};

fn ci() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
}

/// Whether `runtime` (runc or crun) is installed and FUSE works; panics under CI=true if not.
pub fn runtime_ready(runtime: &str) -> bool {
    if !fuse_ready() {
        return false;
    }
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {runtime}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(!ci(), "CI=true: the runtime {runtime} is not installed");
        eprintln!("skipping: needs {runtime}");
    }
    found
}

/// Applets the tests use, as symlinks to /bin/busybox.
const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "rm", "touch", "mkdir", "id", "env", "pwd", "sleep", "ps", "ip", "hostname",
    "kill", "true", "false", "wc", "grep", "head", "tail", "stat", "test", "printf", "tty", "readlink",
    "mount",
];

/// A busybox-static rootfs with users and groups, in `dir`.
pub fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "etc", "home/app", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("busybox-static must be installed (scripts/test.sh installs it)");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    // As in merged-/usr images: a directory reached through a link.
    std::os::unix::fs::symlink("bin", dir.join("sbin")).unwrap();
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n")
        .unwrap();
    std::fs::write(dir.join("etc/motd"), "hello from the image\n").unwrap();
    std::os::unix::fs::chown(dir.join("home/app"), Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(dir.join("tmp"), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
}

/// Imports a busybox image tagged `tag` with `changes` (`-c` Dockerfile lines); returns its id.
pub fn busybox_image(s: &Strata, tag: &str, changes: &[&str]) -> String {
    let rootfs = s.path(&format!("rootfs-{}", tag.replace([':', '/'], "_")));
    if !rootfs.exists() {
        busybox_rootfs(&rootfs);
    }
    let tar = rootfs.with_extension("tar");
    tar_dir(&rootfs, &tar, "plain");
    let mut args = vec!["import".to_string(), tar.display().to_string(), tag.to_string()];
    for c in changes {
        args.push("-c".into());
        args.push(c.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.ok(&args).trim().to_string()
}

/// The exit code of a finished strata run.
pub fn code(o: &std::process::Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

/// stdout of a run that must exit with `want`.
pub fn run_code(s: &Strata, args: &[&str], want: i32) -> String {
    let o = s.run(args);
    assert_eq!(
        code(&o),
        want,
        "strata {args:?}: stdout {:?} stderr {:?}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Removes every container of the store on drop (rm -f), so a failing test leaves no running
/// container and no mount behind.
pub struct Cleanup<'a>(pub &'a Strata);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let ids = self.0.run(&["ps", "-a", "-q", "--no-trunc"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.0.run(&["rm", "-f", id]);
        }
    }
}

/// Waits (up to 10 s) until `cond` holds.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Where the debootstrap'd Debian rootfs is cached: shared with scripts/bench.sh
/// (`$BENCH_CACHE`, /var/cache/strata-bench by default), so the machine builds it once.
fn debian_cache() -> std::path::PathBuf {
    std::env::var_os("BENCH_CACHE").map_or_else(|| "/var/cache/strata-bench".into(), Into::into)
}

/// A Debian bookworm minbase rootfs made by debootstrap, as a plain tar: the cached one, else
/// built once with `debootstrap --variant=minbase` from the Debian mirror (a few minutes; under a
/// lock, so tests running at once build it once). `None` (skipped) when it can't be had; a
/// failure under `CI=true`.
pub fn debian_rootfs_tar() -> Option<std::path::PathBuf> {
    let cache = debian_cache();
    let (rootfs, tar) = (cache.join("rootfs"), cache.join("debian-rootfs.tar"));
    if tar.is_file() {
        return Some(tar);
    }
    let fail = |why: String| {
        assert!(!ci(), "CI=true: no Debian rootfs for the tests: {why}");
        eprintln!("skipping: no Debian rootfs ({why})");
        None
    };
    if let Err(e) = std::fs::create_dir_all(&cache) {
        return fail(format!("cannot create {}: {e}", cache.display()));
    }
    let lock = std::fs::File::create(cache.join("debian-rootfs.lock")).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    if tar.is_file() {
        return Some(tar); // another test made it meanwhile
    }
    if !rootfs.is_dir() {
        let partial = cache.join("rootfs.tmp");
        let _ = std::fs::remove_dir_all(&partial);
        eprintln!(
            "building the Debian rootfs once: debootstrap --variant=minbase bookworm {}",
            partial.display()
        );
        // Bounded: a mirror that stops answering fails the test instead of hanging it.
        let st = Command::new("timeout")
            .args(["600", "debootstrap", "--variant=minbase", "bookworm"])
            .arg(&partial)
            .arg("http://deb.debian.org/debian")
            .stdout(std::process::Stdio::null())
            .status();
        match st {
            Ok(st) if st.success() => std::fs::rename(&partial, &rootfs).unwrap(),
            other => {
                let _ = std::fs::remove_dir_all(&partial);
                return fail(format!(
                    "debootstrap failed: {other:?} (Debian package debootstrap, and the mirror)"
                ));
            }
        }
    }
    let partial = cache.join("debian-rootfs.tar.tmp");
    super::strata::tar_dir(&rootfs, &partial, "plain");
    std::fs::rename(&partial, &tar).unwrap();
    Some(tar)
}

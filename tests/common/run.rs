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

//! `strata version`, `strata info` (and `system info`), and Docker's exit statuses: 125 for a
//! usage error (clap's and strata's own, like an unknown `--format` field), 1 for a failure.

mod common;

use common::strata::Strata;

#[test]
fn version_names_the_build() {
    let s = Strata::new();
    let out = s.ok(&["version"]);
    assert!(out.starts_with("Client: strata\n"), "{out}");
    assert!(out.contains(&format!(" Version:    {}\n", env!("CARGO_PKG_VERSION"))), "{out}");
    assert!(out.contains(" OS/Arch:    linux/"), "{out}");
}

#[test]
fn info_shows_the_store_and_the_kernel_features() {
    // tests/overlay_uring.rs flips enable_uring (below) under this lock while its mounts start.
    let lock = std::fs::File::create("/tmp/strata-test-enable-uring.lock").unwrap();
    let _uring = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockShared).map_err(|(_, e)| e).unwrap();
    let s = Strata::new();
    s.ok(&["images"]);
    let out = s.ok(&["info"]);
    assert_eq!(out, s.ok(&["system", "info"]));
    assert!(out.contains(&format!(" Root Dir:            {}\n", s.root().display())), "{out}");
    assert!(out.contains(" Default Root:        no (the default is "), "{out}");
    assert!(
        out.contains(" Images:              0\n") && out.contains(" Containers:          0 (mounted: 0)"),
        "{out}"
    );
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(out.contains(&format!(" Kernel Version:      {}\n", release.trim())), "{out}");
    let uring = std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring").ok();
    let expected = match uring.as_deref().map(str::trim) {
        Some("Y" | "1") => "available, enabled",
        Some(_) => "available, disabled",
        None => "not in this kernel",
    };
    assert!(out.contains(&format!(" FUSE over io_uring:  {expected}")), "{out}");
    let root = nix::unistd::geteuid().is_root();
    let passthrough = out.lines().find(|l| l.starts_with(" FUSE passthrough:")).unwrap();
    let mut v = release.trim().split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().unwrap_or(0));
    let new_enough = (v.next().unwrap(), v.next().unwrap()) >= (6, 9);
    assert_eq!(passthrough.contains("yes"), root && new_enough, "{passthrough}");
    let fusermount = std::process::Command::new("fusermount3").arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&fusermount.stdout).to_string()
        + &String::from_utf8_lossy(&fusermount.stderr);
    assert!(
        out.contains(&format!(" fusermount3:         {}\n", v.trim().rsplit(' ').next().unwrap())),
        "{out}"
    );
}

#[test]
fn usage_errors_exit_125_and_failures_1() {
    let s = Strata::new();
    for args in [
        &["images", "--bogus"][..],
        &["nosuchcommand"],
        &["tag", "only-one"],
        &["images", "--format", "{{.Nope}}"],
        &["images", "--filter", "color=red"],
        &["history", "--format", "{{.Nope}}", "x"],
    ] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("strata: error: "), "{args:?}");
    }
    let out = s.run(&["rmi", "no-such-image"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    // A group alone lists its commands, as `docker image` does: on stdout, status 0.
    for group in [&[][..], &["image"], &["system"]] {
        let out = s.run(group);
        assert_eq!(out.status.code(), Some(0), "{group:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: strata"), "{group:?}");
    }
}

//! The same container commands with crun (`--runtime crun`). On this kind of host (cgroup v1 with
//! cgroup v2 also mounted at /sys/fs/cgroup/unified, which crun refuses as a "hybrid" setup),
//! strata runs crun in a mount namespace of its own without that mount.

mod common;

use common::run::{Cleanup, busybox_image, eventually, run_code, runtime_ready};
use common::strata::Strata;

#[test]
fn crun_runs_execs_and_stops() {
    if !runtime_ready("crun") {
        return;
    }
    // The runtime makes the process's stdio the container user's (crun fchowns it): strata must
    // hand it pipes of its own, never the host's /dev/null (the harness's stdin), a terminal or a
    // file, or crun changes the owner of that host file.
    let null_before = std::fs::metadata("/dev/null").unwrap();
    let s = Strata::new();
    let _c = Cleanup(&s);
    busybox_image(&s, "bb:1", &["USER app"]);
    let out = run_code(
        &s,
        &["run", "--rm", "--runtime", "crun", "bb:1", "sh", "-c", "id -u; echo x > /home/app/f; exit 4"],
        4,
    );
    assert_eq!(out, "1000\n");
    run_code(&s, &["run", "--rm", "--runtime", "crun", "bb:1", "nosuch"], 127);
    let links = run_code(
        &s,
        &["run", "--rm", "--runtime", "crun", "--network", "none", "bb:1", "ls", "/sys/class/net"],
        0,
    );
    assert_eq!(links, "lo\n");
    run_code(
        &s,
        &["run", "-d", "--runtime", "crun", "--name", "c", "bb:1", "sh", "-c", "echo up; exec sleep 60"],
        0,
    );
    eventually("up", || s.run(&["logs", "c"]).stdout == b"up\n");
    assert_eq!(run_code(&s, &["exec", "-u", "root", "c", "id", "-u"], 0), "0\n");
    assert_eq!(run_code(&s, &["exec", "c", "id", "-u"], 0), "1000\n");
    // the image's supplementary groups, as runc gives them (crun's exec has no flag for them)
    assert_eq!(run_code(&s, &["exec", "c", "id", "-G"], 0), "1000 2000\n");
    assert_eq!(run_code(&s, &["exec", "-u", "app:app", "c", "id", "-G"], 0), "1000\n");
    // -t: a pty of strata's own, with no terminal here
    // (This assertion failed once in about ten full runs, passing on the retry: the output is in
    // the message for the next time.)
    let tty = run_code(&s, &["exec", "-t", "c", "tty"], 0);
    assert!(tty.starts_with("/dev/pts/"), "exec -t c tty printed {tty:?}");
    assert!(s.ok(&["top", "c"]).contains("sleep 60"));
    s.ok(&["stop", "-t", "1", "c"]);
    assert_eq!(s.ok(&["wait", "c"]), "137\n");
    s.ok(&["rm", "c"]);
    use std::os::unix::fs::MetadataExt;
    let null_after = std::fs::metadata("/dev/null").unwrap();
    assert_eq!(
        (null_after.uid(), null_after.gid(), null_after.mode()),
        (null_before.uid(), null_before.gid(), null_before.mode()),
        "the host's /dev/null changed owner or mode"
    );
    assert!(
        !s.root().join("runtime/crun").read_dir().is_ok_and(|mut d| d.next().is_some()),
        "crun state left"
    );
}

/// A short process's output through crun's terminal (`exec -t`, `run -t`) arrives whole also on
/// a busy machine. crun's own console proxy exited before it had drained the pty: with three busy
/// loops on two CPUs `exec -t C tty` printed nothing about half the time. strata now takes the
/// pty's master over crun's `--console-socket` and drains it itself.
#[test]
fn crun_terminal_output_is_not_lost_under_load() {
    if !runtime_ready("crun") {
        return;
    }
    let s = Strata::new();
    let _c = Cleanup(&s);
    busybox_image(&s, "bb:1", &[]);
    run_code(&s, &["run", "-d", "--runtime", "crun", "--name", "c", "bb:1", "sleep", "60"], 0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burners: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for i in 0..15 {
        let out = run_code(&s, &["exec", "-t", "c", "tty"], 0);
        if !out.starts_with("/dev/pts/") {
            wrong.push(format!("exec {i}: {out:?}"));
        }
    }
    for i in 0..5 {
        let out = run_code(&s, &["run", "--rm", "-t", "--runtime", "crun", "bb:1", "tty"], 0);
        if !out.starts_with("/dev/pts/") {
            wrong.push(format!("run {i}: {out:?}"));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for b in burners {
        let _ = b.join();
    }
    assert!(wrong.is_empty(), "lost terminal output:\n{}", wrong.join("\n"));
}

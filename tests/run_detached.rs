//! Detached containers and their monitor: `run -d`, then `logs` (-f, --tail, -t), `exec`, `top`,
//! `stop` (SIGKILL for a process that ignores SIGTERM), `kill -s`, `wait`, `restart`, `rm`; a
//! monitor killed with -9; `--rm` leaving nothing.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::run::{Cleanup, busybox_image, eventually, run_code, runtime_ready};
use common::strata::Strata;

fn setup() -> Option<Strata> {
    let s = runtime_ready("runc").then(Strata::new)?;
    busybox_image(&s, "bb:1", &["ENV FOO=img"]);
    Some(s)
}

fn state(s: &Strata, id: &str) -> serde_json::Value {
    let p = s.root().join("containers").join(id).join("state.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Mounts under the store (a container's rootfs) still in the mount table.
fn mounts_under(s: &Strata) -> Vec<String> {
    let root = s.root().display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| m.starts_with(&root))
        .collect()
}

#[test]
fn logs_exec_top_and_stop_of_a_process_that_ignores_sigterm() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    // sleep as pid 1 has no SIGTERM handler: the kernel ignores the signal for it
    let id = run_code(
        &s,
        &[
            "run",
            "-d",
            "--name",
            "d",
            "--memory",
            "64m",
            "--pids-limit",
            "30",
            "bb:1",
            "sh",
            "-c",
            "echo hello; echo oops >&2; exec sleep 100",
        ],
        0,
    );
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    let follow = s.command(&["logs", "-f", "d"]).stdout(Stdio::piped()).spawn().unwrap();
    eventually("the output in the log", || s.run(&["logs", "d"]).stdout == b"hello\n");
    let o = s.run(&["logs", "d"]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "oops\n");
    let o = s.run(&["logs", "-t", "--tail", "1", "d"]);
    let line = String::from_utf8(o.stdout).unwrap() + &String::from_utf8(o.stderr).unwrap();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.split(' ').next().unwrap().ends_with('Z') && line.contains("20"), "{line}");
    let raw = std::fs::read_to_string(s.root().join("containers").join(&id).join("log")).unwrap();
    let entries: Vec<serde_json::Value> = raw.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let hello = entries.iter().find(|e| e["log"] == "hello\n").unwrap_or_else(|| panic!("{raw}"));
    assert_eq!(hello["stream"], "stdout", "Docker's json-file format: {raw}");
    assert!(hello["time"].as_str().unwrap().ends_with('Z'), "{raw}");
    assert!(entries.iter().any(|e| e["log"] == "oops\n" && e["stream"] == "stderr"), "{raw}");
    // ps, inspect-able state
    let ps = s.ok(&["ps"]);
    assert!(ps.contains("Up ") && ps.contains("\"sh -c echo hello; e…\""), "{ps}");
    let st = state(&s, &id);
    assert_eq!(st["status"], "running");
    assert!(st["pid"].as_i64().unwrap() > 0);
    let inspect =
        |s: &Strata| -> serde_json::Value { serde_json::from_str(&s.ok(&["inspect", "d"])).unwrap() };
    let i = inspect(&s);
    assert_eq!(i[0]["Id"], id.as_str());
    assert_eq!(i[0]["Name"], "/d");
    assert_eq!(i[0]["State"]["Status"], "running");
    assert_eq!(i[0]["State"]["Running"], true);
    assert_eq!(i[0]["State"]["Pid"], st["pid"]);
    assert!(i[0]["State"]["StartedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(i[0]["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(i[0]["HostConfig"]["PidsLimit"], 30);
    assert_eq!(i[0]["Config"]["Cmd"][0], "sh");
    // exec: env from the container, -e, -u by name, -w, exit codes
    assert_eq!(run_code(&s, &["exec", "d", "sh", "-c", "echo $FOO; pwd; id -u"], 0), "img\n/\n0\n");
    assert_eq!(
        run_code(
            &s,
            &["exec", "-e", "FOO=x", "-u", "app", "-w", "/tmp", "d", "sh", "-c", "echo $FOO; pwd; id -u"],
            0
        ),
        "x\n/tmp\n1000\n"
    );
    run_code(&s, &["exec", "d", "sh", "-c", "exit 5"], 5);
    let o = s.run(&["exec", "d", "nosuch"]);
    assert_eq!(o.status.code(), Some(127));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("strata: error: ") && err.lines().count() == 1, "one error line: {err}");
    // top lists the container's processes
    let top = s.ok(&["top", "d"]);
    assert!(top.starts_with("UID") && top.contains("sleep 100"), "{top}");
    // stop: SIGTERM is ignored, SIGKILL after -t
    let start = Instant::now();
    s.ok(&["stop", "-t", "1", "d"]);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(8), "stop took {took:?}");
    assert_eq!(s.ok(&["wait", "d"]), "137\n");
    let i = inspect(&s);
    assert_eq!(i[0]["State"]["Status"], "exited");
    assert_eq!(i[0]["State"]["Running"], false);
    assert_eq!(i[0]["State"]["ExitCode"], 137);
    assert!(i[0]["State"]["FinishedAt"].as_str().unwrap() >= i[0]["State"]["StartedAt"].as_str().unwrap());
    let ps = s.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (137)"), "{ps}");
    assert_eq!(s.ok(&["ps", "-q"]), "", "ps lists running containers only");
    // logs -f ended when the container stopped, having printed the output
    let out = follow.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert!(mounts_under(&s).is_empty(), "{:?}", mounts_under(&s));
    // what is not running can't be exec'd, killed or topped
    for args in [&["exec", "d", "true"][..], &["kill", "d"][..], &["top", "d"][..]] {
        assert_ne!(s.run(args).status.code(), Some(0), "{args:?}");
    }
}

#[test]
fn kill_signal_wait_restart_and_rm() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    let script = "trap 'echo got-usr1' USR1; trap 'echo bye; exit 7' TERM; echo ready; while true; do sleep 0.05; done";
    run_code(&s, &["run", "-d", "--name", "k", "bb:1", "sh", "-c", script], 0);
    eventually("ready", || s.run(&["logs", "k"]).stdout.starts_with(b"ready\n"));
    s.ok(&["kill", "-s", "USR1", "k"]);
    eventually("USR1 handled", || {
        String::from_utf8_lossy(&s.run(&["logs", "k"]).stdout).contains("got-usr1")
    });
    let err = s.fails(&["rm", "k"]);
    assert!(err.contains("running"), "{err}");
    let wait = s.command(&["wait", "k"]).stdout(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    s.ok(&["stop", "k"]);
    assert!(start.elapsed() < Duration::from_secs(5), "the TERM handler ends it quickly");
    assert_eq!(String::from_utf8_lossy(&wait.wait_with_output().unwrap().stdout), "7\n");
    assert!(String::from_utf8_lossy(&s.run(&["logs", "k"]).stdout).contains("bye"));
    // restart runs it again (same upper, a fresh log appended)
    s.ok(&["restart", "k"]);
    eventually("running again", || s.ok(&["ps", "-q"]).lines().count() == 1);
    s.ok(&["kill", "k"]);
    assert_eq!(s.ok(&["wait", "k"]), "137\n");
    s.ok(&["start", "k"]);
    eventually("started", || s.ok(&["ps", "-q"]).lines().count() == 1);
    // rm -f kills and removes
    s.ok(&["rm", "-f", "k"]);
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    assert!(mounts_under(&s).is_empty(), "{:?}", mounts_under(&s));
}

#[test]
fn a_monitor_killed_with_9_leaves_a_dead_container_that_start_and_rm_clean() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    let id = run_code(
        &s,
        &["run", "-d", "--name", "v", "bb:1", "sh", "-c", "echo kept > /kept; exec sleep 100"],
        0,
    );
    let id = id.trim().to_string();
    eventually("the write", || s.root().join("containers").join(&id).join("upper/kept").exists());
    let kill_monitor = |s: &Strata| {
        let pid = state(s, &id)["monitor_pid"].as_i64().unwrap() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        eventually("the monitor gone", || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |st| st.contains(") Z"))
        });
    };
    kill_monitor(&s);
    let ps = s.ok(&["ps", "-a"]);
    assert!(ps.contains("Dead"), "{ps}");
    // start cleans up (the old process is killed, the mount taken down) and starts again
    s.ok(&["start", "v"]);
    eventually("running again", || s.ok(&["ps"]).contains("Up "));
    assert_eq!(run_code(&s, &["exec", "v", "cat", "/kept"], 0), "kept\n");
    let pid = state(&s, &id)["pid"].as_i64().unwrap();
    kill_monitor(&s);
    assert!(s.ok(&["ps", "-a"]).contains("Dead"));
    // rm of a dead container needs no -f, and leaves no mount and no runtime state
    s.ok(&["rm", "v"]);
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    assert!(mounts_under(&s).is_empty(), "{:?}", mounts_under(&s));
    let runc_state = s.root().join("runtime/runc");
    let left: Vec<_> = std::fs::read_dir(&runc_state)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runc state left: {left:?}");
    // the container's process went with it
    let alive = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(!alive.contains("sleep"), "the container's sleep (pid {pid}) still runs");
}

/// `rm -f` of a container whose monitor was killed: the runtime's process still holds the
/// mount, so it must go first (as plain `rm` does). rm -f waited 60 s for a mount daemon that
/// could not exit, then failed.
#[test]
fn rm_f_of_a_dead_container_stops_its_process_first() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    let id = run_code(&s, &["run", "-d", "--name", "d", "bb:1", "sleep", "100"], 0);
    let id = id.trim().to_string();
    let monitor = state(&s, &id)["monitor_pid"].as_i64().unwrap() as i32;
    let pid = state(&s, &id)["pid"].as_i64().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), nix::sys::signal::Signal::SIGKILL).unwrap();
    eventually("the monitor gone", || {
        std::fs::read_to_string(format!("/proc/{monitor}/stat")).map_or(true, |st| st.contains(") Z"))
    });
    assert!(s.ok(&["ps", "-a"]).contains("Dead"));
    let t = std::time::Instant::now();
    s.ok(&["rm", "-f", "d"]);
    assert!(t.elapsed() < std::time::Duration::from_secs(20), "rm -f took {:?}", t.elapsed());
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    assert!(mounts_under(&s).is_empty(), "{:?}", mounts_under(&s));
    let alive = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(!alive.contains("sleep"), "the container's sleep (pid {pid}) still runs");
}

#[test]
fn rm_detached_leaves_nothing() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    let id = run_code(&s, &["run", "-d", "--rm", "bb:1", "sh", "-c", "sleep 0.3; exit 4"], 0);
    let id = id.trim().to_string();
    assert_eq!(s.ok(&["wait", &id]), "4\n");
    eventually("removed", || !s.root().join("containers").join(&id).exists());
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    assert!(mounts_under(&s).is_empty());
}

#[test]
fn stop_sends_the_images_stop_signal() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    // an image whose config says StopSignal SIGUSR1 (as a Dockerfile's STOPSIGNAL would)
    let rootfs = s.path("rootfs-bb_1");
    let tar = s.path("stop.tar");
    common::strata::tar_dir(&rootfs, &tar, "plain");
    let layer = std::fs::read(&tar).unwrap();
    let diff_id = format!("sha256:{}", common::images::sha256_hex(&layer));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "StopSignal": "SIGUSR1",
                   "Cmd": ["sh", "-c", "trap 'echo usr1; exit 0' USR1; echo ready; while true; do sleep 0.05; done"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "test"}],
    }))
    .unwrap();
    let archive = s.path("stop-archive.tar");
    common::images::docker_archive(&archive, &[layer], Some(config), &["stopper:1"]);
    s.ok(&["load", "-i", archive.to_str().unwrap()]);
    s.ok(&["run", "-d", "--name", "st", "stopper:1"]);
    // Running is not enough: a signal with no handler yet is ignored by the container's
    // PID 1 (the kernel's rule for init), so the stop would wait for its SIGKILL.
    eventually("the trap set", || s.ok(&["logs", "st"]) == "ready\n");
    let start = Instant::now();
    s.ok(&["stop", "-t", "20", "st"]);
    assert!(start.elapsed() < Duration::from_secs(5), "SIGUSR1 ended it, not the SIGKILL after 20 s");
    assert_eq!(s.ok(&["wait", "st"]), "0\n");
    assert_eq!(s.ok(&["logs", "st"]), "ready\nusr1\n");
}

#[test]
fn detached_interactive_keeps_stdin_open_and_start_ai_attaches_it() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    let running = |s: &Strata| s.ok(&["ps", "-q"]).lines().count();
    // -d -i: the shell's stdin stays open (Docker's OpenStdin), so it waits until stopped
    s.ok(&["run", "-d", "-i", "--name", "sh", "bb:1", "sh"]);
    // without -i the shell reads the end of its input at once and exits 0
    s.ok(&["run", "-d", "--name", "once", "bb:1", "sh"]);
    assert_eq!(s.ok(&["wait", "once"]), "0\n");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(running(&s), 1, "{}", s.ok(&["ps", "-a"]));
    assert_eq!(
        run_code(&s, &["exec", "sh", "readlink", "/proc/1/fd/0"], 0).trim_end().get(..5),
        Some("pipe:")
    );
    s.ok(&["stop", "-t", "1", "sh"]);
    assert_eq!(s.ok(&["wait", "sh"]), "137\n");
    // start (detached) keeps it open as well
    s.ok(&["start", "sh"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(running(&s), 1, "{}", s.ok(&["ps", "-a"]));
    s.ok(&["rm", "-f", "sh"]);
    // start -a -i passes this stdin to a container created with -i, and closes it at its end
    let start_ai = |s: &Strata, name: &str| {
        let mut child = s
            .command(&["start", "-a", "-i", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"typed\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    s.ok(&["create", "-i", "--name", "cat", "bb:1", "cat"]);
    assert_eq!(start_ai(&s, "cat"), "typed\n");
    // as Docker's: not to one created without -i (its stdin is closed)
    s.ok(&["create", "--name", "nocat", "bb:1", "cat"]);
    assert_eq!(start_ai(&s, "nocat"), "");
}

/// Whether `child` ends within `secs` seconds.
fn ends_within(child: &mut std::process::Child, secs: u64) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn an_exec_in_progress_blocks_no_other_command() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    s.ok(&["run", "-d", "--name", "x", "bb:1", "sleep", "60"]);
    // an interactive exec waiting for its input, as a shell would
    let mut exec =
        s.command(&["exec", "-i", "x", "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    eventually("the exec runs", || s.ok(&["top", "x"]).contains("cat"));
    // meanwhile a command that takes the store for writing goes on
    let mut create = s.command(&["create", "--name", "y", "bb:1"]).stdout(Stdio::null()).spawn().unwrap();
    let created = ends_within(&mut create, 5);
    drop(exec.stdin.take());
    let _ = exec.wait();
    if !created {
        let _ = create.kill();
    }
    assert!(created, "create waited for the store lock an exec held");
    assert!(s.ok(&["ps", "-a", "--format", "{{.Names}}"]).contains('y'));
}

#[test]
fn a_slow_stop_blocks_no_other_command() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    // sleep as pid 1 ignores SIGTERM: stop waits its whole -t before SIGKILL
    s.ok(&["run", "-d", "--name", "x", "bb:1", "sleep", "60"]);
    let mut stop = s.command(&["stop", "-t", "4", "x"]).stdout(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut create = s.command(&["create", "--name", "y", "bb:1"]).stdout(Stdio::null()).spawn().unwrap();
    let created = ends_within(&mut create, 2);
    let stopping = stop.try_wait().unwrap().is_none();
    let _ = stop.wait();
    if !created {
        let _ = create.wait();
    }
    assert!(stopping, "stop -t 4 ended before its timeout");
    assert!(created, "create waited for the store lock a stop held");
    assert_eq!(s.ok(&["wait", "x"]), "137\n");
}

#[test]
fn rm_f_of_a_running_container_waits_without_the_store_lock() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    let id = run_code(&s, &["run", "-d", "--name", "x", "bb:1", "sleep", "60"], 0).trim().to_string();
    let mount: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.root().join("containers").join(&id).join("mount.json")).unwrap(),
    )
    .unwrap();
    let daemon = nix::unistd::Pid::from_raw(mount["pid"].as_i64().unwrap() as i32);
    // A mount daemon slow to write everything and exit (stopped: it can't), so the monitor's
    // end, and rm -f with it, waits.
    nix::sys::signal::kill(daemon, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let mut rm = s.command(&["rm", "-f", "x"]).stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut ps = s.command(&["ps", "-a", "-q"]).stdout(Stdio::null()).spawn().unwrap();
    let answered = ends_within(&mut ps, 5);
    let waiting = rm.try_wait().unwrap().is_none();
    nix::sys::signal::kill(daemon, nix::sys::signal::Signal::SIGCONT).unwrap();
    if !answered {
        let _ = ps.kill();
    }
    let out = rm.wait_with_output().unwrap();
    assert!(answered, "ps waited for the store lock rm -f held while the container stopped");
    assert!(waiting, "rm -f did not wait for the container to stop");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    assert!(mounts_under(&s).is_empty(), "{:?}", mounts_under(&s));
}

/// A monitor waits for its container's process to start on an inotify watch, and lets go of it
/// shortly after: it lives as long as the container, and inotify instances are limited per user
/// (128 by default), so a kept one per running container would run them out.
#[test]
fn a_running_containers_monitor_holds_no_inotify_instance() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    let id = run_code(&s, &["run", "-d", "bb:1", "sleep", "60"], 0);
    let monitor = state(&s, id.trim())["monitor_pid"].as_i64().unwrap();
    let inotify_fds = || {
        std::fs::read_dir(format!("/proc/{monitor}/fd"))
            .unwrap()
            .flatten()
            .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("inotify")))
            .count()
    };
    eventually("the monitor's inotify fd closed", || inotify_fds() == 0);
    // And it stays so (nothing opens another while the process runs).
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(inotify_fds(), 0);
}

/// `--root` relative to the caller's directory: the monitor, which leaves that directory, still
/// finds the container (it failed with "cannot open log store/containers/…/log").
#[test]
fn run_d_with_a_relative_root() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    let relative = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
        c.current_dir(s.dir.path()).args(["--root", "store"]).args(args);
        c.env_remove("STRATA_ROOT").stdin(Stdio::null()).output().unwrap()
    };
    let o = relative(&["run", "-d", "bb:1", "sh", "-c", "echo from-relative; exit 5"]);
    assert!(o.status.success(), "run -d: {}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert_eq!(String::from_utf8(relative(&["wait", &id]).stdout).unwrap(), "5\n");
    assert_eq!(s.ok(&["logs", &id]), "from-relative\n");
}

/// `rm -f` kills a running container through its first process (PID 1 of its own pid namespace,
/// signalled through a pidfd), without starting the runtime to kill it (`runc kill` is a Go
/// process: about half of `rm -f`'s time); a process `exec -d` started in it dies all the same.
#[test]
fn rm_f_kills_through_the_first_process_without_the_runtime() {
    use std::os::unix::fs::PermissionsExt;
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let runc = std::process::Command::new("sh").args(["-c", "command -v runc"]).output().unwrap();
    let runc = String::from_utf8(runc.stdout).unwrap().trim().to_string();
    // runc, each command line written down first (the file name says which runtime it is).
    let wrapper = dir.path().join("runc-logged");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\nexec '{runc}' \"$@\"\n", calls.display()),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runtime = wrapper.display().to_string();
    run_code(&s, &["run", "-d", "--name", "x", "--runtime", &runtime, "bb:1", "sleep", "60"], 0);
    s.ok(&["exec", "-d", "x", "sleep", "61"]);
    let sleep_61 = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x0061\x00"))
    };
    eventually("the exec'd process runs", sleep_61);
    s.ok(&["rm", "-f", "x"]);
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    eventually("the exec'd process is gone", || !sleep_61());
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert!(calls.lines().any(|l| l.contains(" exec ")), "the wrapper was not used: {calls}");
    assert!(!calls.lines().any(|l| l.contains(" kill ")), "rm -f ran the runtime to kill: {calls}");
}

/// A container's monitor keeps nothing `run -d` inherited: a script's lock (fd 7) is free once
/// its shell exits, while the container runs on.
#[test]
fn the_monitor_keeps_no_descriptor_the_command_inherited() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    let lock = s.path("script.lock");
    let script = "exec 7>>\"$1\" && flock 7 && \"$2\" --root \"$3\" run -d bb:1 sleep 30";
    let out = std::process::Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(&lock)
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg(s.root())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(state(&s, &id)["status"], "running");
    let free = std::process::Command::new("flock").arg("-n").arg(&lock).arg("true").status().unwrap();
    assert!(free.success(), "the container's monitor (or its mount daemon) still holds the script's lock");
}

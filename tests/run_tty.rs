//! Attached runs: `-t` gives the process a pty of this terminal's size (script(1) is the terminal
//! here), logged too; Ctrl-C typed on it reaches the process, and SIGTERM sent to `strata run`
//! reaches it too; `-d -t` logs what the pty shows; `exec -t` gets a pty of strata's own.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use common::run::{Cleanup, busybox_image, eventually, runtime_ready};
use common::strata::Strata;

fn setup() -> Option<Strata> {
    let s = runtime_ready("runc").then(Strata::new)?;
    busybox_image(&s, "bb:1", &[]);
    Some(s)
}

/// `strata ARGS` under script(1), which gives it a terminal; stdin and stdout piped.
fn in_terminal(s: &Strata, args: &str) -> std::process::Child {
    let cmd = format!(
        "stty cols 91 rows 27; {} --root {} {args}",
        env!("CARGO_BIN_EXE_strata"),
        s.root().display()
    );
    Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux")
}

#[test]
fn t_gives_a_pty_and_ctrl_c_reaches_the_process() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    let out = in_terminal(
        &s,
        "run --name tt -t bb:1 sh -c 'tty; test -t 0 && test -t 1 && echo both-ttys; busybox stty size </dev/tty'",
    )
    .wait_with_output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/") && text.contains("both-ttys"), "{text}");
    assert!(out.status.success(), "{out:?}");
    // the container's terminal has this terminal's size, and what it showed is in the log
    assert!(text.contains("27 91"), "{text}");
    let log = String::from_utf8(s.run(&["logs", "tt"]).stdout).unwrap();
    assert!(log.contains("both-ttys\r\n27 91\r\n"), "{log:?}");
    s.ok(&["rm", "tt"]);
    // -it: what is typed reaches the process; Ctrl-C is a SIGINT from its own terminal
    let mut child = in_terminal(
        &s,
        "run --rm -it bb:1 sh -c 'trap \"echo got-int; exit 9\" INT; echo ready; while true; do sleep 0.1; done'",
    );
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "no ready line");
    }
    child.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(rest.contains("got-int"), "{rest}");
    assert_eq!(status.code(), Some(9), "{rest}");
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn sigterm_to_strata_run_reaches_the_process() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    let mut child = s
        .command(&[
            "run",
            "--rm",
            "bb:1",
            "sh",
            "-c",
            "trap 'echo term; exit 5' TERM; echo ready; while true; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "term\n");
    assert_eq!(child.wait().unwrap().code(), Some(5));
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn detached_t_logs_the_pty() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    s.ok(&["run", "-d", "-t", "--name", "t", "bb:1", "sh", "-c", "tty; echo done"]);
    assert_eq!(s.ok(&["wait", "t"]), "0\n");
    eventually("the log", || String::from_utf8_lossy(&s.run(&["logs", "t"]).stdout).contains("done"));
    let log = String::from_utf8(s.run(&["logs", "t"]).stdout).unwrap();
    assert!(log.starts_with("/dev/pts/") && log.contains("\r\n"), "a terminal's output: {log:?}");
}

#[test]
fn exec_t_gets_a_pty_of_its_own() {
    let Some(s) = setup() else { return };
    let _c = Cleanup(&s);
    s.ok(&["run", "-d", "--name", "e", "bb:1", "sleep", "60"]);
    // no terminal here (stdin is a pipe): the runtime still gets one, strata's
    let o =
        s.command(&["exec", "-t", "e", "sh", "-c", "tty; echo $TERM"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("/dev/pts/") && text.contains("xterm\r\n"), "{text:?}");
    // -i -t without a terminal is Docker's error
    let o = s.command(&["exec", "-it", "e", "true"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a TTY"), "{o:?}");
    // -it in a terminal: its size, what is typed, the exit code; the user's terminal is left as
    // it was (the runtime makes its process's terminal the container user's)
    let mut child = in_terminal(
        &s,
        "exec -it -u app e sh -c 'stat -c %u $(tty); stty size; echo ready; read line; echo got-$line; exit 6'; stat -c %u:%a $(tty)",
    );
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("ready") {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "no ready line: {seen}");
        seen.push_str(&line);
    }
    child.stdin.as_mut().unwrap().write_all(b"typed\r").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(seen.contains("1000\r\n27 91\r\n"), "the container's pty, the user's size: {seen:?}");
    assert!(rest.contains("got-typed"), "{rest:?}");
    let terminal = rest.lines().last().unwrap_or_default().trim();
    assert!(terminal.starts_with("0:"), "the user's terminal still root's: {rest:?}");
}

//! The monitor: one process per running container (what conmon is to Podman). It owns the union
//! mount (its daemon inherits the container's lock) and the runtime child, writes the output to
//! the json-file log, records the state (`state.json`: pid, start and finish times, exit code),
//! takes the mount down when the process ends and removes a `--rm` container. Detached, it is a
//! forked daemon; attached (`strata run` without `-d`), it is the strata process itself.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::ForkResult;

use super::console::ConsoleSocket;
use super::engine::{EarlyStart, Gate, Launch, Ready, StartError};
use super::lock::ContainerLock;
use super::logs::{self, LogWriter, StreamLog};
use super::started::Started;
use super::status::{now_ms, process_start};
use super::stdio::RawTerminal;
use crate::store::containers::{ContainerRecord, RunState, write_container_runtime};
use crate::store::{LockMode, Store};
use crate::sys::daemon;

/// How the process's stdio is connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// Output to the log only; stdin closed. `start` returns once the process runs.
    Detached,
    /// Output to the log and to this process's stdout/stderr (or, with a tty, this terminal);
    /// `stdin` passes this process's stdin on. Returns the exit code.
    Foreground { stdin: bool },
}

/// Starts `c`'s process; `lock` is the container's. The store must be closed (only its root is
/// given): a monitor never inherits the store lock. Call while single-threaded (it forks).
/// Detached: returns 0 once the process runs; attached: the process's exit code.
pub fn start(root: &Path, c: &ContainerRecord, lock: ContainerLock, attach: Attach) -> Result<i32> {
    match attach {
        Attach::Foreground { stdin } => {
            let mut first_error = None;
            let code = supervise(root, c, lock, Some(stdin), &mut |r| first_error = r.err());
            match first_error {
                Some(e) => Err(e.into()),
                None => Ok(code),
            }
        }
        Attach::Detached => spawn_detached(root, c, lock),
    }
}

fn spawn_detached(root: &Path, c: &ContainerRecord, lock: ContainerLock) -> Result<i32> {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    match daemon::fork()? {
        ForkResult::Parent { child } => {
            drop(wr);
            drop(lock);
            let _ = nix::sys::wait::waitpid(child, None);
            // One line, not up to EOF: the mount daemon the monitor forks holds the pipe too.
            let mut msg = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(File::from(rd)), &mut msg)
                .context("reading from the monitor")?;
            match msg.trim_end().split_once(' ') {
                _ if msg.trim_end() == "ok" => Ok(0),
                Some(("err", rest)) => {
                    let (code, message) = rest.split_once(' ').unwrap_or(("125", rest));
                    Err(StartError { code: code.parse().unwrap_or(125), message: message.to_string() }.into())
                }
                _ => Err(anyhow!("the monitor of container {} exited before the container started", c.name)),
            }
        }
        ForkResult::Child => {
            drop(rd);
            daemon::detach_from_session();
            daemon::close_inherited();
            let dir = root.join("containers").join(&c.id);
            let _ = redirect_stdio(&dir.join("monitor.log"));
            let _ = std::env::set_current_dir("/");
            let mut wr = Some(File::from(wr));
            supervise(root, c, lock, None, &mut |r| {
                if let Some(mut w) = wr.take() {
                    let _ = match r {
                        Ok(()) => writeln!(w, "ok"),
                        Err(e) => writeln!(w, "err {} {}", e.code, e.message.replace('\n', " ")),
                    };
                }
            });
            daemon::exit_now(0)
        }
    }
}

fn redirect_stdio(log: &Path) -> Result<()> {
    let null = File::options().read(true).write(true).open("/dev/null")?;
    nix::unistd::dup2_stdin(null.as_fd())?;
    let out = File::options().create(true).append(true).open(log)?;
    nix::unistd::dup2_stdout(out.as_fd())?;
    nix::unistd::dup2_stderr(out.as_fd())?;
    Ok(())
}

/// Signals `strata run` passes on to the container (through the runtime, which forwards them).
fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        set.add(s);
    }
    set
}

/// Runs the process to its end and records everything. `attached`: `Some(stdin)` when this is
/// `strata run` itself. `report` hears once whether the process started.
fn supervise(
    root: &Path,
    c: &ContainerRecord,
    lock: ContainerLock,
    attached: Option<bool>,
    report: &mut dyn FnMut(std::result::Result<(), StartError>),
) -> i32 {
    let dir = root.join("containers").join(&c.id);
    let me = std::process::id() as i32;
    let mut st = RunState {
        status: "running".into(),
        monitor_pid: me,
        monitor_start: process_start(me).unwrap_or(0),
        started_at: now_ms(),
        runtime_id: c.id.clone(),
        ..RunState::default()
    };
    let save = |st: &RunState| {
        if let Err(e) = write_container_runtime(&dir, "state.json", Some(st)) {
            tracing::warn!("{e:#}");
        }
    };
    let auto_remove = c.config.as_ref().is_some_and(|x| x.auto_remove);
    // A --rm container goes; its final state stays among the exit records for `wait` (and in
    // its directory only if that can't go).
    let remove = |st: &RunState| {
        if !auto_remove {
            return;
        }
        tracing::debug!("removing (--rm)");
        let mut doomed = record_exit(root, &c.id, st);
        match Store::detach_container_unlocked(root, &c.id) {
            Ok(dir) => doomed.push(dir),
            Err(e) => {
                tracing::warn!("--rm: {e:#}");
                save(st);
            }
        }
        delete_in_background(&doomed);
        tracing::debug!("removed (--rm)");
    };
    // The process did not run: the state says why; a --rm container goes all the same.
    let fail =
        |st: &mut RunState, e: StartError, report: &mut dyn FnMut(std::result::Result<(), StartError>)| {
            st.status = "exited".into();
            st.exit_code = e.code;
            st.error = e.message.clone();
            st.finished_at = now_ms();
            save(st);
            let code = e.code;
            report(Err(e));
            remove(st);
            code
        };
    let log = match LogWriter::open(&logs::path(&dir)) {
        Ok(l) => l,
        Err(e) => return fail(&mut st, StartError { code: 125, message: format!("{e:#}") }, report),
    };
    // runc starts while the union is mounted and the bundle made, when its stdio needs no
    // thread of ours (see `config_pipe`).
    let tty = c.config.as_ref().is_some_and(|x| x.tty);
    let mut early: Option<Wired> = None;
    let prepared = {
        let mut start = |l: &Launch<'_>| -> Result<()> {
            early = Some(wire_runtime(l, attached)?);
            Ok(())
        };
        let start: Option<EarlyStart<'_>> = wires_without_threads(attached, tty).then_some(&mut start);
        Store::open(root, LockMode::Shared).and_then(|store| Ready::prepare_with(store, c, lock, start))
    };
    let wired = match prepared {
        Ok(ready) => match early.take() {
            Some(w) => Ok((ready, w)),
            None => wire_runtime(&ready.launch(), attached).map(|w| (ready, w)),
        },
        Err(e) => {
            // A runtime started early has read no config (it is delivered last): it just goes.
            if let Some(mut w) = early.take() {
                let _ = w.child.kill();
                let _ = w.child.wait();
            }
            Err(e)
        }
    };
    let (ready, wired) = match wired {
        Ok(x) => x,
        Err(e) => return fail(&mut st, StartError { code: 125, message: format!("{e:#}") }, report),
    };
    st.runtime = ready.runtime.name.clone();
    save(&st);
    let signals = attached.map(|_| {
        let set = forwarded_signals();
        let _ = set.thread_block();
        set
    });
    let gate = Gate::default();
    let Spawned { mut child, copiers, pty, _terminal, _stdin, console } = copy_output(wired, &log, &gate);
    if let Some(set) = signals {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = std::thread::Builder::new().name("signals".into()).spawn(move || {
            while let Ok(sig) = set.wait() {
                match (&pty, sig) {
                    // The user's terminal changed size: so does the pty we give the runtime
                    // (which passes it on to the container's).
                    (Some(master), Signal::SIGWINCH) => super::stdio::pass_window_size(master, pid),
                    (None, Signal::SIGWINCH) => {}
                    _ => {
                        let _ = nix::sys::signal::kill(pid, sig);
                    }
                }
            }
        });
    }
    // Started once the runtime has written the pid file; a runtime that ends first failed.
    let mut reported = false;
    let status = match ready.wait_started(&mut child) {
        Ok(Started::Ended(s)) => Ok(s),
        Ok(Started::Running(pid)) => {
            tracing::debug!(pid, "the container's process runs");
            st.pid = pid;
            save(&st);
            gate.decide(true);
            report(Ok(()));
            reported = true;
            child.wait()
        }
        Err(e) => Err(e),
    };
    tracing::debug!("the runtime exited");
    let outcome = match status {
        Ok(s) => ready.outcome(s),
        Err(e) => Err(StartError { code: 125, message: format!("waiting for {}: {e}", ready.runtime.name) }),
    };
    gate.decide(outcome.is_ok());
    // The console relay drains what the container's pty still holds, then lets go of strata's.
    drop(console);
    for c in copiers {
        let _ = c.join();
    }
    if let Ok(code) = outcome {
        st.status = "exited".into();
        st.exit_code = code;
        st.finished_at = now_ms();
    }
    // A --rm container that ran goes as soon as it is unmounted (its mount daemon exits alone).
    let remove_now = auto_remove && outcome.is_ok();
    let finished = if remove_now { ready.finish_removing(|| remove(&st)) } else { ready.finish() };
    if let Err(e) = &finished {
        tracing::warn!("{e:#}");
    }
    let code = match outcome {
        Ok(code) => {
            if !auto_remove {
                save(&st);
            }
            if !reported {
                report(Ok(()));
            }
            code
        }
        Err(e) => return fail(&mut st, e, report),
    };
    if !remove_now {
        remove(&st);
    }
    code
}

/// Deletes what a removed container leaves (its directory, already renamed into `tmp/`, so the
/// container is gone; exit records of past minutes) in a process of its own that outlives this
/// one: on a filesystem mounted with `discard` each freed block waits for the device, and a
/// minute's exit records are one file per run — milliseconds `run --rm` need not spend. `rm` not
/// to be had: deleted here. Should it be killed, what is left is garbage the next writer (or the
/// next removal) clears. `--one-file-system`: a mount left below it (it was unmounted first) is
/// not deleted through.
fn delete_in_background(doomed: &[PathBuf]) {
    if doomed.is_empty() {
        return;
    }
    let spawned = std::process::Command::new("/bin/rm")
        // The C locale: a UTF-8 one has rm read a dozen locale files first.
        .env("LC_ALL", "C")
        .arg("-rf")
        .arg("--one-file-system")
        .arg("--")
        .args(doomed)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if spawned.is_err() {
        for d in doomed {
            if let Err(e) = std::fs::remove_dir_all(d) {
                tracing::warn!("cannot remove {}: {e} (the next writer clears it)", d.display());
            }
        }
    }
}

/// Where the final state of removed (`--rm`) containers stays for a minute, so `strata wait`
/// still learns the exit code of a container that is gone: `runtime/exits/<minute>/<id>.json`,
/// one directory per minute of the clock, so forgetting old ones is one look at a few
/// directories, not at every exit of the last minute.
fn exits_dir(root: &Path) -> std::path::PathBuf {
    root.join("runtime").join("exits")
}

fn unix_minute() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 60)
}

/// The final state a removed container's monitor left, if it is still kept.
pub fn recorded_exit(root: &Path, id: &str) -> Option<RunState> {
    let now = unix_minute();
    [now, now.saturating_sub(1), now.saturating_sub(2)].into_iter().find_map(|m| {
        crate::store::containers::read_container_runtime(
            &exits_dir(root).join(m.to_string()),
            &format!("{id}.json"),
        )
    })
}

/// Records `st` as `id`'s final state; returns the exit records of minutes before the last whole
/// one (kept 60 to 120 s), which are no longer read, for the caller to delete in the background.
fn record_exit(root: &Path, id: &str, st: &RunState) -> Vec<PathBuf> {
    let exits = exits_dir(root);
    let now = unix_minute();
    let dir = exits.join(now.to_string());
    if super::runtime::private_dir(&dir).is_err() {
        return Vec::new();
    }
    if let Err(e) = write_container_runtime(&dir, &format!("{id}.json"), Some(st)) {
        tracing::warn!("{e:#}");
    }
    let Ok(entries) = std::fs::read_dir(&exits) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| {
            let minute = e.file_name().to_str().and_then(|n| n.parse::<u64>().ok());
            minute.is_none_or(|m| m + 1 < now)
        })
        .map(|e| e.path())
        .collect()
}

type Copiers = Vec<std::thread::JoinHandle<()>>;

/// The runtime child and what serves its stdio.
struct Spawned {
    child: Child,
    copiers: Copiers,
    /// The master of the pty standing in for a terminal (`-t`), to pass window sizes on.
    pty: Option<Arc<OwnedFd>>,
    /// The user's terminal, in raw mode until this is dropped.
    _terminal: Option<RawTerminal>,
    /// The writing end of an `-i` container's stdin when nobody's input is attached to it: held
    /// while the process runs, so its stdin stays open (Docker's OpenStdin).
    _stdin: Option<OwnedFd>,
    /// crun's console socket and relay (`-t`): dropped once the runtime is gone, before the
    /// copiers are joined (it holds the pty they read from open while it drains).
    console: Option<ConsoleSocket>,
}

/// The stdin of a process nobody's input is attached to: open for good when the container was
/// created with `-i` (a shell then waits instead of ending at EOF), else at its end at once.
fn unattached_input(open_stdin: bool) -> Result<(std::process::Stdio, Option<OwnedFd>)> {
    Ok(if open_stdin {
        let (input, holder) = super::stdio::held_input()?;
        (input, Some(holder))
    } else {
        (super::stdio::empty_input()?, None)
    })
}

/// Where else an output goes (attached: this process's own stdout or stderr).
type Also = Option<Box<dyn Write + Send>>;

/// The runtime child with its stdio wired, before any thread copies its output.
struct Wired {
    child: Child,
    /// What to copy: the output, its log stream, and where else it goes (attached: our own).
    outputs: Vec<(OwnedFd, &'static str, Also)>,
    pty: Option<Arc<OwnedFd>>,
    terminal: Option<RawTerminal>,
    stdin: Option<OwnedFd>,
    console: Option<ConsoleSocket>,
}

/// Whether [`wire_runtime`] starts no thread for `attached` and `tty`: then the runtime may start
/// before the mount daemon forks (`Ready::prepare_with`).
fn wires_without_threads(attached: Option<bool>, tty: bool) -> bool {
    !tty && attached != Some(true)
}

/// Spawns the runtime with its stdio wired to pipes or a pty of ours (and, attached, this
/// process's own stdin).
fn wire_runtime(launch: &Launch<'_>, attached: Option<bool>) -> Result<Wired> {
    let tty = launch.config.tty;
    let out = || -> Also { Some(Box::new(std::io::stdout())) };
    let err = || -> Also { Some(Box::new(std::io::stderr())) };
    let wired = match attached {
        // A pty of ours stands between this terminal and the runtime's (so the output is logged
        // too); the runtime sets up the container's own from it.
        Some(stdin) if tty => {
            let (master, slave, [i, o, e]) = super::stdio::open_pty()?;
            let console = ConsoleSocket::for_runtime(launch.runtime, &slave);
            drop(slave);
            let child = launch.spawn(i, o, e, true, console.as_ref().map(ConsoleSocket::path))?;
            let terminal = if stdin { RawTerminal::new() } else { None };
            if stdin {
                super::stdio::forward_input_to(&master);
            }
            let outputs = vec![(master.try_clone()?, "stdout", out())];
            Wired { child, outputs, pty: Some(master), terminal, stdin: None, console }
        }
        Some(stdin) => {
            let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let (input, holder) = if stdin {
                (super::stdio::forwarded_input()?, None)
            } else {
                unattached_input(launch.config.open_stdin)?
            };
            // Its own process group: a Ctrl-C reaches the container once, through us.
            let child = launch.spawn(input, out_w.into(), err_w.into(), true, None)?;
            let outputs = vec![(out_r, "stdout", out()), (err_r, "stderr", err())];
            Wired { child, outputs, pty: None, terminal: None, stdin: holder, console: None }
        }
        None if tty => {
            // No terminal here: the pty alone stands in for one (the runtime proxies it).
            let (master, slave, [i, o, e]) = super::stdio::open_pty()?;
            let console = ConsoleSocket::for_runtime(launch.runtime, &slave);
            drop(slave);
            let child = launch.spawn(i, o, e, true, console.as_ref().map(ConsoleSocket::path))?;
            let outputs = vec![(master.try_clone()?, "stdout", None)];
            Wired { child, outputs, pty: None, terminal: None, stdin: None, console }
        }
        None => {
            let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let (input, holder) = unattached_input(launch.config.open_stdin)?;
            let child = launch.spawn(input, out_w.into(), err_w.into(), true, None)?;
            let outputs = vec![(out_r, "stdout", None), (err_r, "stderr", None)];
            Wired { child, outputs, pty: None, terminal: None, stdin: holder, console: None }
        }
    };
    Ok(wired)
}

/// The threads that copy the runtime's output to the log (and our own stdio), held back by `gate`.
fn copy_output(w: Wired, log: &LogWriter, gate: &Gate) -> Spawned {
    let copiers = w
        .outputs
        .into_iter()
        .map(|(from, stream, also)| copier(from, log.stream(stream), also, gate))
        .collect();
    Spawned {
        child: w.child,
        copiers,
        pty: w.pty,
        _terminal: w.terminal,
        _stdin: w.stdin,
        console: w.console,
    }
}

fn copier(from: OwnedFd, mut log: StreamLog, mut also: Also, gate: &Gate) -> std::thread::JoinHandle<()> {
    let gate = gate.clone();
    std::thread::spawn(move || {
        let mut f = File::from(from);
        // Until the decision, the output waits in the pipe (the process started a few ms ago).
        let pass = gate.wait();
        let mut buf = [0u8; 16384];
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // A pty's master answers EIO once the last slave is closed.
                Err(_) => break,
            };
            if !pass {
                continue;
            }
            log.write(&buf[..n]);
            if let Some(w) = also.as_mut() {
                if w.write_all(&buf[..n]).and_then(|_| w.flush()).is_err() {
                    also = None;
                }
            }
        }
        log.flush();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exit records of past minutes are handed to the background deletion, not deleted on the way
    /// out of `run --rm` (one file per run of that minute); this run's record stays readable.
    #[test]
    fn past_minutes_exit_records_are_deleted_in_the_background() {
        let root = tempfile::tempdir().unwrap();
        let old = exits_dir(root.path()).join((unix_minute() - 5).to_string());
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("old.json"), "{}").unwrap();
        let st = RunState { status: "exited".into(), exit_code: 3, ..RunState::default() };
        let stale = record_exit(root.path(), "abc", &st);
        assert_eq!(stale, std::slice::from_ref(&old));
        assert!(old.join("old.json").exists(), "deleted on the way out");
        delete_in_background(&stale);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while old.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!old.exists(), "the background deletion left {}", old.display());
        assert_eq!(recorded_exit(root.path(), "abc").map(|s| s.exit_code), Some(3));
    }
}

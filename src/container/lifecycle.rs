//! What the container commands do beyond one start: create with a process, start (cleaning up
//! after a killed monitor first), stop, kill, wait, remove, exec, top.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::engine::StartError;
use super::lock::ContainerLock;
use super::monitor::{self, Attach};
use super::mounting::{self, MountState};
use super::runtime::{self, Runtime};
use super::spec::{self, RunFlags};
use super::started::Started;
use super::status::{self, Status, now_ms};
use crate::store::containers::{ContainerRecord, RunState, new_container_id, read_container_runtime};
use crate::store::{ImageRecord, Store};

/// How long `rm -f` and `start` wait for a container's lock (a monitor or mount finishing).
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Creates a container of `image` that records its process (from the image config and `flags`).
pub fn create(
    store: &Store,
    image: &ImageRecord,
    image_name: &str,
    name: Option<&str>,
    flags: &RunFlags,
    need_command: bool,
) -> Result<ContainerRecord> {
    let config = store.image_config(image)?;
    let id = new_container_id()?;
    let cfg = spec::run_config(&config, flags, &id, need_command)?;
    // To run, the runtime must be there before anything is made (a clear error naming the package).
    if need_command {
        Runtime::find(&cfg.runtime, store.root())?;
    }
    store.create_container_with_id(id, &image.id, image_name, name, Some(cfg))
}

/// Re-reads a container's record (its state changes under us).
pub fn reload(store: &Store, c: &ContainerRecord) -> Result<ContainerRecord> {
    store.resolve_container(&c.id)
}

pub(crate) fn runtime_of(store: &Store, c: &ContainerRecord) -> Result<Runtime> {
    let name = c.state.as_ref().map(|s| s.runtime.as_str()).filter(|r| !r.is_empty());
    let cfg = c.config.as_ref().map(|c| c.runtime.as_str()).unwrap_or("runc");
    // The configured one (maybe a path) when it is of the kind that ran it.
    let spec = match name {
        Some(n) if !cfg.contains(n) => n,
        _ => cfg,
    };
    Runtime::find(spec, store.root())
}

/// A container whose monitor was killed: stop what the runtime still runs, take the mount down,
/// and record it as exited (Docker's 137 for a process killed by SIGKILL).
pub fn clean_dead(store: &Store, c: &ContainerRecord) -> Result<()> {
    // The monitor writes its final state, then exits: one caught in between is not dead, and its
    // state (the real exit code) stays.
    let now = read_container_runtime::<RunState>(&store.container_dir(&c.id), "state.json");
    if now.is_some_and(|s| s.status == "exited") {
        return Ok(());
    }
    if let Ok(rt) = runtime_of(store, c) {
        rt.delete(&c.id);
    }
    let dir = store.container_dir(&c.id);
    match mounting::current_mount_state(store, &c.id) {
        MountState::Mounted { mountpoint, pid } => crate::fs::mount::unmount_and_wait(
            &mountpoint,
            Some(nix::unistd::Pid::from_raw(pid)),
            mounting::UNMOUNT_TIMEOUT,
        )?,
        MountState::Dead { mountpoint } => crate::fs::mount::unmount(&mountpoint)?,
        MountState::Unmounted => {}
    }
    let _lock = ContainerLock::acquire_within(&dir, LOCK_WAIT, || Ok(()))?
        .with_context(|| format!("container {} is still held by another process", c.name))?;
    crate::store::containers::write_mount_record(&dir, None)?;
    let mut st = c.state.clone().unwrap_or_default();
    st.status = "exited".into();
    if st.exit_code == 0 {
        st.exit_code = 137;
    }
    st.finished_at = now_ms();
    st.error = format!("the monitor (pid {}) was killed; the container was stopped", st.monitor_pid);
    crate::store::containers::write_container_runtime(&dir, "state.json", Some(&st))
}

/// Starts a container (created, exited, or dead after a killed monitor). The store is closed
/// here (a monitor never holds it). Detached: 0 once the process runs; attached: its exit code.
pub fn start(store: Store, c: &ContainerRecord, attach: Attach) -> Result<i32> {
    match status::status(c) {
        Status::Running => bail!("container {} is already running", c.name),
        Status::Dead => clean_dead(&store, c)?,
        _ => {}
    }
    let dir = store.container_dir(&c.id);
    let Some(lock) = ContainerLock::try_acquire(&dir)? else { return Err(mounting::busy_error(&store, c)) };
    if let MountState::Mounted { mountpoint, .. } | MountState::Dead { mountpoint } =
        mounting::current_mount_state(&store, &c.id)
    {
        bail!(
            "container {} is mounted at {}: strata umount it before starting it",
            c.name,
            mountpoint.display()
        );
    }
    let root = store.root().to_path_buf();
    drop(store);
    monitor::start(&root, c, lock, attach)
}

/// Waits until the container's monitor is gone (or the container was removed); whether it was
/// in `timeout`. Needs no store lock: `dir` is the container's directory, whose state it reads.
pub fn wait_stopped(dir: &Path, c: &ContainerRecord, timeout: Duration) -> bool {
    let start = Instant::now();
    let handle = c
        .state
        .as_ref()
        .filter(|s| status::monitor_alive(s))
        .and_then(|s| crate::sys::daemon::ProcessHandle::open(s.monitor_pid).ok().flatten());
    if let Some(h) = handle {
        return h.wait_exit(timeout).unwrap_or(false);
    }
    let running = || {
        let mut now = c.clone();
        now.state = status::settled_state(|| read_container_runtime(dir, "state.json"));
        dir.exists() && status::status(&now) == Status::Running
    };
    while running() {
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Sends `signal` to the container's first process (`all`: to every process).
pub fn kill(store: &Store, c: &ContainerRecord, signal: &str, all: bool) -> Result<()> {
    if status::status(c) != Status::Running {
        bail!("container {} is not running", c.name);
    }
    let sig = normalize_signal(signal)?;
    runtime_of(store, c)?.kill(&c.id, &sig, all)
}

/// Kills every process of a running container (`rm -f`): see [`kill_first_process`], else
/// through the runtime. Errors are ignored: the process may have ended meanwhile.
pub fn force_kill(store: &Store, c: &ContainerRecord) {
    if !kill_first_process(c) {
        let _ = kill(store, c, "SIGKILL", true);
    }
}

/// SIGKILL to a running container's first process through a pidfd, without starting the runtime
/// (`runc kill` is a Go process: milliseconds of `rm -f`). That process is PID 1 of the
/// container's own pid namespace, so every other process there dies with it, as `kill --all`
/// would have them. Only if the recorded pid still is that process: PID 1 of a namespace of its
/// own whose parent (the runtime) is the monitor's child, checked once the pidfd names it, so a
/// reused pid is never signalled. `false`: not done, the runtime is to kill.
fn kill_first_process(c: &ContainerRecord) -> bool {
    let Some(st) = c.state.as_ref().filter(|s| s.pid > 0 && status::monitor_alive(s)) else { return false };
    let Ok(Some(handle)) = crate::sys::daemon::ProcessHandle::open(st.pid) else { return false };
    let field = |pid: i32, key: &str| -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        text.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string())
    };
    let ppid = |pid: i32| field(pid, "PPid:").and_then(|v| v.parse::<i32>().ok());
    let first_of_its_namespace = field(st.pid, "NSpid:").is_some_and(|v| {
        let ids: Vec<&str> = v.split_whitespace().collect();
        ids.len() > 1 && ids.last() == Some(&"1")
    });
    let runtime_of_monitor = ppid(st.pid).and_then(ppid) == Some(st.monitor_pid);
    first_of_its_namespace && runtime_of_monitor && handle.kill().is_ok()
}

/// `TERM`, `SIGTERM`, `15` → what the runtimes take (`SIGTERM`, `15`).
pub fn normalize_signal(s: &str) -> Result<String> {
    if s.parse::<u8>().is_ok_and(|n| (1..=64).contains(&n)) {
        return Ok(s.to_string());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    name.parse::<nix::sys::signal::Signal>().map_err(|_| anyhow::anyhow!("invalid signal {s:?}"))?;
    Ok(name)
}

/// Docker's stop: the stop signal, then SIGKILL after `timeout`; waits until it has ended. The
/// store is given back first: no other command waits for a slow stop.
pub fn stop(store: Store, c: &ContainerRecord, timeout: Duration, signal: Option<&str>) -> Result<()> {
    if status::status(c) != Status::Running {
        return Ok(());
    }
    let cfg_signal = c.config.as_ref().map(|x| x.stop_signal.as_str()).filter(|s| !s.is_empty());
    let sig = normalize_signal(signal.or(cfg_signal).unwrap_or("SIGTERM"))?;
    let rt = runtime_of(&store, c)?;
    let dir = store.container_dir(&c.id);
    drop(store);
    // The process may end between our look and the signal: that is a stop too.
    let _ = rt.kill(&c.id, &sig, false);
    if wait_stopped(&dir, c, timeout) {
        return Ok(());
    }
    let _ = rt.kill(&c.id, "SIGKILL", true);
    if !wait_stopped(&dir, c, Duration::from_secs(30)) {
        bail!("container {} did not stop after SIGKILL", c.name);
    }
    Ok(())
}

/// Waits for the container to stop; its exit code.
pub fn wait(dir: &Path, c: &ContainerRecord) -> Result<i32> {
    let mut last: Option<RunState> = c.state.clone();
    loop {
        if !dir.exists() {
            // Removed (--rm): its monitor left the final state for us.
            let root = dir.parent().and_then(Path::parent).unwrap_or(dir);
            if let Some(st) = super::monitor::recorded_exit(root, &c.id) {
                last = Some(st);
            }
            return last
                .filter(|s| s.status == "exited")
                .map(|s| s.exit_code)
                .with_context(|| format!("container {} was removed", c.name));
        }
        let mut now = c.clone();
        now.state = status::settled_state(|| read_container_runtime(dir, "state.json"));
        match status::status(&now) {
            Status::Exited { code, .. } => return Ok(code),
            Status::Dead => {
                return Ok(now.state.map_or(137, |s| if s.exit_code == 0 { 137 } else { s.exit_code }));
            }
            _ => {}
        }
        if now.state.is_some() {
            last = now.state;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes a container: a running one only with `force` (killed first), as Docker; a mounted one
/// only with `force` (unmounted first). The container's lock is held while it is deleted, so an
/// upper is never deleted under a starting daemon.
pub fn remove(store: &Store, c: &ContainerRecord, force: bool) -> Result<()> {
    match status::status(c) {
        Status::Running if !force => bail!(
            "cannot remove container {}: container is running: stop the container before removing or force remove (rm -f)",
            c.name
        ),
        Status::Running => {
            force_kill(store, c);
            if !wait_stopped(&store.container_dir(&c.id), c, LOCK_WAIT) {
                bail!("container {} did not stop after SIGKILL", c.name);
            }
            if !store.container_dir(&c.id).exists() {
                return Ok(()); // --rm: its monitor removed it
            }
        }
        Status::Dead => clean_dead(store, c)?,
        _ => {}
    }
    let dir = store.container_dir(&c.id);
    let state = mounting::current_mount_state(store, &c.id);
    if state.is_mounted() && !force {
        let at = c.mount.as_ref().map_or_else(|| "?".into(), |m| m.mountpoint.display().to_string());
        bail!("container {} is mounted at {at}: unmount it first, or use rm -f", c.name);
    }
    let lock = ContainerLock::acquire_within(&dir, if force { LOCK_WAIT } else { Duration::ZERO }, || {
        // A mount being set up finishes and shows in mount.json; then it can be unmounted.
        if force && mounting::current_mount_state(store, &c.id).is_mounted() {
            let mut fresh = c.clone();
            fresh.mount = read_container_runtime(&dir, "mount.json");
            mounting::unmount_container(store, &fresh)?;
        }
        Ok(())
    })?;
    let Some(_lock) = lock else { return Err(mounting::busy_error(store, c)) };
    if force && mounting::current_mount_state(store, &c.id).is_mounted() {
        bail!("container {} was mounted again meanwhile", c.name);
    }
    if let Ok(rt) = runtime_of(store, c) {
        rt.delete(&c.id);
    }
    store.remove_container(&c.id)
}

/// `exec` options.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    pub detach: bool,
}

/// Runs another process in a running container; its exit code (Docker's 126/127 when it can't
/// be run). The runtime gets a process spec of the container's own (capabilities, limits) with
/// the command, env, cwd and user (supplementary groups included) of this exec. The store is
/// given back before the process runs: an exec lasts as long as it likes, and no other command
/// waits for it.
pub fn exec(store: Store, c: &ContainerRecord, o: &ExecOptions) -> Result<i32> {
    use std::io::IsTerminal;
    if status::status(c) != Status::Running {
        bail!("container {} is not running", c.name);
    }
    if o.tty && o.detach {
        bail!(
            "exec -d -t is not supported: a detached exec's output goes to a file, with no terminal; drop -t"
        );
    }
    if o.tty && o.interactive && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY (-t with -i needs a terminal on stdin)");
    }
    let cfg = c.config.clone().unwrap_or_default();
    let image = store.image(&c.image)?;
    let stack = crate::union::Stack::new(
        &mounting::image_lowers(&store, &image),
        Some(&store.container_upper(&c.id)),
    )?;
    let user = super::user::resolve(&stack, o.user.as_deref().unwrap_or(&cfg.user))?;
    drop(stack);
    let rt = runtime_of(&store, c)?;
    let dir = store.container_dir(&c.id);
    drop(store);
    let scratch = Scratch::new(&dir, &format!("exec-{}", std::process::id()));
    let process = exec_process(&dir, &cfg, &user, o)?;
    std::fs::write(scratch.path("json"), serde_json::to_vec(&process)?)
        .with_context(|| format!("cannot write {}", scratch.path("json").display()))?;
    let log = scratch.path("log");
    let mut cmd = rt.command(Some(&log));
    cmd.arg("exec").arg("--process").arg(scratch.path("json"));
    if o.detach {
        cmd.arg("--detach");
    } else {
        cmd.arg("--pid-file").arg(scratch.path("pid"));
    }
    // Pipes (or a pty) of our own, never this process's stdio (see `stdio`). The output is held
    // back until the process runs: what the runtime prints when it can't start it is our error.
    let gate = super::engine::Gate::default();
    let mut copiers = Vec::new();
    let mut pty = None;
    let mut _terminal = None;
    let mut console = None;
    if o.tty {
        // SIGWINCH waits for the thread that passes window sizes on (threads inherit the mask).
        let mut winch = nix::sys::signal::SigSet::empty();
        winch.add(nix::sys::signal::Signal::SIGWINCH);
        let _ = winch.thread_block();
        let (master, slave, [i, out, err]) = super::stdio::open_pty()?;
        console = super::console::ConsoleSocket::for_runtime(&rt, &slave);
        drop(slave);
        cmd.stdin(i).stdout(out).stderr(err);
        if o.interactive {
            _terminal = super::stdio::RawTerminal::new();
            super::stdio::forward_input_to(&master);
        }
        copiers.push(super::stdio::copy_out(master.try_clone()?, std::io::stdout(), &gate)?);
        pty = Some((master, winch));
    } else {
        cmd.stdin(if o.interactive {
            super::stdio::forwarded_input()?
        } else {
            super::stdio::empty_input()?
        });
        if o.detach {
            let out = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("exec.log"))?;
            cmd.stdout(out.try_clone()?).stderr(out);
        } else {
            let (out, a) = super::stdio::gated_output(std::io::stdout(), &gate)?;
            let (err, b) = super::stdio::gated_output(std::io::stderr(), &gate)?;
            cmd.stdout(out).stderr(err);
            copiers = vec![a, b];
        }
    }
    if let Some(socket) = &console {
        cmd.arg("--console-socket").arg(socket.path());
    }
    cmd.arg(&c.id);
    let spawned = cmd.spawn().with_context(|| format!("cannot run {}", rt.path.display()));
    // Our copies of the process's stdio go, so its output ends when it does.
    drop(cmd);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            gate.decide(false);
            return Err(e);
        }
    };
    if let Some((master, winch)) = pty {
        let runtime = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = std::thread::Builder::new().name("winch".into()).spawn(move || {
            while winch.wait().is_ok() {
                super::stdio::pass_window_size(&master, runtime);
            }
        });
    }
    // A detached exec's runtime exits once the process runs; else the pid file says it runs.
    let status = if o.detach {
        child.wait()
    } else {
        match super::started::wait(&mut child, &scratch.path("pid")) {
            Ok(Started::Running(_)) => {
                gate.decide(true);
                child.wait()
            }
            Ok(Started::Ended(s)) => Ok(s),
            Err(e) => Err(e),
        }
    };
    let status = status.with_context(|| format!("waiting for {}", rt.name));
    let err = runtime::last_error(&log);
    use std::os::unix::process::ExitStatusExt;
    let code = status.as_ref().map_or(125, |s| s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)));
    gate.decide(status.is_ok() && (code == 0 || err.is_none()));
    // The console relay drains what the container's pty still holds, then lets go of strata's.
    drop(console);
    for c in copiers {
        let _ = c.join();
    }
    status?;
    match err {
        Some(msg) if code != 0 => {
            Err(StartError { code: runtime::classify(&msg) as i32, message: format!("{}: {msg}", rt.name) }
                .into())
        }
        _ => Ok(code),
    }
}

/// The process spec of an exec: the container's own (capabilities, rlimits, no-new-privileges as
/// its bundle has them) with this exec's command, env, cwd, user and terminal.
fn exec_process(
    dir: &Path,
    cfg: &crate::store::containers::RunConfig,
    user: &super::user::ResolvedUser,
    o: &ExecOptions,
) -> Result<serde_json::Value> {
    let bundle = dir.join("config.json");
    let config: serde_json::Value = super::config_pipe::read(dir)
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(serde_json::from_slice(&b)?))
        .with_context(|| format!("reading the container's runtime bundle {}", bundle.display()))?;
    let mut p = config["process"].clone();
    if !p.is_object() {
        bail!("the container's runtime bundle {} has no process", bundle.display());
    }
    let mut env = cfg.env.clone();
    for e in &o.env {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    if o.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let cwd = match o.workdir.as_deref().filter(|w| !w.is_empty()) {
        Some(w) => w,
        None if cfg.working_dir.is_empty() => "/",
        None => &cfg.working_dir,
    };
    p["args"] = serde_json::json!(o.args);
    p["env"] = serde_json::json!(env);
    p["cwd"] = serde_json::json!(cwd);
    p["user"] = serde_json::json!({"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids});
    if super::rootless::rootless() && super::rootless::root_only(&super::rootless::id_maps()?) {
        super::rootless::root_only_process(&mut p)?;
    }
    p["terminal"] = serde_json::json!(o.tty);
    match super::bundle::console_size().filter(|_| o.tty) {
        Some(size) => p["consoleSize"] = size,
        None => {
            if let Some(m) = p.as_object_mut() {
                m.remove("consoleSize");
            }
        }
    }
    Ok(p)
}

/// Files of one exec in the container's directory (`<stem>.json`, `.log`, `.pid`), removed
/// when dropped.
struct Scratch {
    dir: std::path::PathBuf,
    stem: String,
}

impl Scratch {
    fn new(dir: &Path, stem: &str) -> Scratch {
        Scratch { dir: dir.to_path_buf(), stem: stem.to_string() }
    }

    fn path(&self, ext: &str) -> std::path::PathBuf {
        self.dir.join(format!("{}.{ext}", self.stem))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for ext in ["json", "log", "pid"] {
            let _ = std::fs::remove_file(self.path(ext));
        }
    }
}

/// The container's processes, as `ps -f` shows them (Docker's top columns).
pub fn top(store: &Store, c: &ContainerRecord, ps_args: &[String]) -> Result<String> {
    if status::status(c) != Status::Running {
        bail!("container {} is not running", c.name);
    }
    let rt = runtime_of(store, c)?;
    let out = rt.command(None).args(["ps", "--format", "json", &c.id]).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!("{} ps: {}", rt.name, String::from_utf8_lossy(&out.stderr).trim());
    }
    let pids: Vec<i64> =
        serde_json::from_slice(&out.stdout).with_context(|| format!("{} ps output", rt.name))?;
    let list: Vec<String> = pids.iter().map(i64::to_string).collect();
    let mut ps = std::process::Command::new("ps");
    if ps_args.is_empty() {
        ps.arg("-f");
    } else {
        ps.args(ps_args);
    }
    let out = ps.arg("-p").arg(list.join(",")).stdin(Stdio::null()).output().context("running ps")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where a container's log is.
pub fn log_path(store: &Store, c: &ContainerRecord) -> std::path::PathBuf {
    super::logs::path(&store.container_dir(&c.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LockMode;
    use crate::store::containers::write_container_runtime;

    /// `rm` or `start` that saw a container running under a monitor gone by the time it looked
    /// (the monitor had written its final state and exited in between) keeps the real exit code.
    #[test]
    fn a_monitor_caught_between_its_final_state_and_its_exit_is_not_dead() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path(), LockMode::Exclusive).unwrap();
        let id = "ab".repeat(32);
        let dir = store.container_dir(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let exited = RunState { status: "exited".into(), exit_code: 0, ..RunState::default() };
        write_container_runtime(&dir, "state.json", Some(&exited)).unwrap();
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let monitor_pid = gone.id() as i32;
        gone.wait().unwrap();
        let seen = RunState { status: "running".into(), monitor_pid, ..RunState::default() };
        let c = ContainerRecord {
            id: id.clone(),
            name: "x".into(),
            image: crate::oci::Digest::from_hex(&"cd".repeat(32)).unwrap(),
            image_name: "x".into(),
            created: 0,
            config: None,
            mount: None,
            state: Some(seen),
        };
        assert_eq!(status::status(&c), Status::Dead);
        clean_dead(&store, &c).unwrap();
        let st: RunState = read_container_runtime(&dir, "state.json").unwrap();
        assert_eq!((st.status.as_str(), st.exit_code), ("exited", 0));
    }
}

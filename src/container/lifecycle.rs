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
use super::status::{self, Status, now_ms};
use crate::store::containers::{
    ContainerRecord, MountRecord, RunState, new_container_id, read_container_runtime,
};
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
    crate::store::containers::write_container_runtime::<MountRecord>(&dir, "mount.json", None)?;
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

/// Whether the container still runs (its monitor is alive).
pub fn is_running(store: &Store, c: &ContainerRecord) -> bool {
    reload(store, c).is_ok_and(|c| status::status(&c) == Status::Running)
}

/// Waits until the container's monitor is gone (or it disappeared); whether it did in `timeout`.
pub fn wait_stopped(store: &Store, c: &ContainerRecord, timeout: Duration) -> bool {
    let start = Instant::now();
    let handle = c
        .state
        .as_ref()
        .filter(|s| status::monitor_alive(s))
        .and_then(|s| crate::sys::daemon::ProcessHandle::open(s.monitor_pid).ok().flatten());
    if let Some(h) = handle {
        return h.wait_exit(timeout).unwrap_or(false);
    }
    while is_running(store, c) {
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

/// Docker's stop: the stop signal, then SIGKILL after `timeout`; waits until it has ended.
pub fn stop(store: &Store, c: &ContainerRecord, timeout: Duration, signal: Option<&str>) -> Result<()> {
    if status::status(c) != Status::Running {
        return Ok(());
    }
    let cfg_signal = c.config.as_ref().map(|x| x.stop_signal.as_str()).filter(|s| !s.is_empty());
    let sig = signal.or(cfg_signal).unwrap_or("SIGTERM");
    // The process may end between our look and the signal: that is a stop too.
    let _ = kill(store, c, sig, false);
    if wait_stopped(store, c, timeout) {
        return Ok(());
    }
    let _ = kill(store, c, "SIGKILL", true);
    if !wait_stopped(store, c, Duration::from_secs(30)) {
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
            let exits = super::monitor::exits_dir(root);
            if let Some(st) = read_container_runtime::<RunState>(&exits, &format!("{}.json", c.id)) {
                last = Some(st);
            }
            return last
                .filter(|s| s.status == "exited")
                .map(|s| s.exit_code)
                .with_context(|| format!("container {} was removed", c.name));
        }
        let mut now = c.clone();
        now.state = read_container_runtime(dir, "state.json");
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
            let _ = kill(store, c, "SIGKILL", true);
            if !wait_stopped(store, c, LOCK_WAIT) {
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
/// be run).
pub fn exec(store: &Store, c: &ContainerRecord, o: &ExecOptions) -> Result<i32> {
    if status::status(c) != Status::Running {
        bail!("container {} is not running", c.name);
    }
    let cfg = c.config.clone().unwrap_or_default();
    let image = store.image(&c.image)?;
    let stack = crate::union::Stack::new(
        &mounting::image_lowers(store, &image),
        Some(&store.container_upper(&c.id)),
    )?;
    let user = super::user::resolve(&stack, o.user.as_deref().unwrap_or(&cfg.user))?;
    drop(stack);
    let rt = runtime_of(store, c)?;
    let log = store.container_dir(&c.id).join(format!("exec-{}.log", std::process::id()));
    let mut cmd = rt.command(Some(&log));
    cmd.arg("exec");
    cmd.arg("--cwd").arg(
        o.workdir.as_deref().filter(|w| !w.is_empty()).unwrap_or(if cfg.working_dir.is_empty() {
            "/"
        } else {
            &cfg.working_dir
        }),
    );
    let mut env = cfg.env.clone();
    for e in &o.env {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    for e in &env {
        cmd.arg("--env").arg(e);
    }
    cmd.arg("--user").arg(format!("{}:{}", user.uid, user.gid));
    // crun 1.8's exec has no --additional-gids: there the process gets the user's own group only.
    if rt.name == "runc" {
        for g in &user.additional_gids {
            cmd.arg("--additional-gids").arg(g.to_string());
        }
    }
    if o.tty {
        cmd.arg("--tty");
    }
    if o.detach {
        cmd.arg("--detach");
    }
    cmd.arg(&c.id).args(&o.args);
    // Pipes of our own (see `stdio`), but for `-t`, where the runtime needs the terminal itself,
    // and `-d`, whose output goes to a file of the container's.
    let mut copiers = Vec::new();
    if !o.tty {
        cmd.stdin(if o.interactive {
            super::stdio::forwarded_input()?
        } else {
            super::stdio::empty_input()?
        });
        if o.detach {
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(store.container_dir(&c.id).join("exec.log"))?;
            cmd.stdout(out.try_clone()?).stderr(out);
        } else {
            let (out, a) = super::stdio::forwarded_output(std::io::stdout())?;
            let (err, b) = super::stdio::forwarded_output(std::io::stderr())?;
            cmd.stdout(out).stderr(err);
            copiers = vec![a, b];
        }
    }
    let status = cmd.status().with_context(|| format!("cannot run {}", rt.path.display()));
    drop(cmd);
    for c in copiers {
        let _ = c.join();
    }
    let err = runtime::last_error(&log);
    let _ = std::fs::remove_file(&log);
    let status = status?;
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    match err {
        Some(msg) if code != 0 => {
            Err(StartError { code: runtime::classify(&msg) as i32, message: format!("{}: {msg}", rt.name) }
                .into())
        }
        _ => Ok(code),
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

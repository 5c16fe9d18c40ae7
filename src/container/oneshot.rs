//! The library API for one process run to completion in a new container of an image, as a
//! Dockerfile `RUN` step needs it: create the container, mount it, run the process with the
//! runtime, unmount, and hand the container (its upper holding what the process wrote) back to
//! the caller to commit or remove.

use std::io::{Read, Write};
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::engine::{Gate, Ready};
use super::lock::ContainerLock;
use super::runtime::Runtime;
use super::started::Started;
use crate::oci::Digest;
use crate::store::containers::{ContainerRecord, MountSpec, RunConfig};
use crate::store::{LockMode, Store};

/// `PATH` when the image sets none (Docker's).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run and how: everything is explicit (the image config's defaults are the caller's
/// business; `ProcessSpec::from_image` applies the usual ones).
#[derive(Clone, Debug, Default)]
pub struct ProcessSpec {
    /// The command line (not run through a shell: pass `["/bin/sh", "-c", …]` for that).
    pub args: Vec<String>,
    /// `KEY=VALUE`; Docker's default `PATH` is added when missing, `HOSTNAME` and `HOME` too.
    pub env: Vec<String>,
    /// Absolute; created (in the init layer, out of the upper) when missing. Empty = `/`.
    pub cwd: String,
    /// `""` (root), `name`, `uid`, `name:group`, `uid:gid`, resolved in the image's passwd/group.
    pub user: String,
    /// No network namespace (`false`, the host's network) or one with loopback only (`true`).
    pub network_none: bool,
    /// Bind mounts (`kind: "bind"`, `source` on the host) and tmpfs mounts (`kind: "tmpfs"`).
    pub mounts: Vec<MountSpec>,
}

impl ProcessSpec {
    /// The image config's `Env` and `WorkingDir` and `User`, for `args`.
    pub fn from_image(config: &serde_json::Value, args: Vec<String>) -> ProcessSpec {
        let c = &config["config"];
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default()
        };
        ProcessSpec {
            args,
            env: strings(&c["Env"]),
            cwd: c["WorkingDir"].as_str().unwrap_or_default().to_string(),
            user: c["User"].as_str().unwrap_or_default().to_string(),
            ..ProcessSpec::default()
        }
    }
}

/// Where the process's output goes.
pub enum Output<'a> {
    /// This process's own stdin (null), stdout and stderr.
    Inherit,
    /// Copied into these writers as it comes.
    Capture { stdout: &'a mut (dyn Write + Send), stderr: &'a mut (dyn Write + Send) },
}

/// The run is over: the store (exclusive again), the container (unmounted, its upper holding
/// what the process wrote) and the process's exit code (128 + N when killed by signal N).
pub struct Finished {
    pub store: Store,
    pub container: ContainerRecord,
    pub exit_code: i32,
}

/// Stops a run from another thread (a signal watcher): once cancelled, the run's process is
/// killed through the runtime (SIGKILL) as soon as it runs, and the run ends as a killed process
/// does (exit code 137) with its container handed back as usual.
#[derive(Default)]
pub struct Cancel(Mutex<CancelState>);

#[derive(Default)]
struct CancelState {
    cancelled: bool,
    /// The process running now: its runtime and container id.
    running: Option<(Runtime, String)>,
}

impl Cancel {
    pub fn cancel(&self) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.cancelled = true;
        if let Some((runtime, id)) = &s.running {
            kill(runtime, id);
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).cancelled
    }

    /// The process runs (the runtime wrote its pid): killed at once if cancelled already.
    fn running(&self, runtime: &Runtime, id: &str) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if s.cancelled {
            kill(runtime, id);
        }
        s.running = Some((runtime.clone(), id.to_string()));
    }

    fn ended(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).running = None;
    }
}

fn kill(runtime: &Runtime, id: &str) {
    // The container's first process: the others die with its pid namespace.
    if let Err(e) = runtime.kill(id, "KILL", false) {
        tracing::warn!("cancelling the run: {e:#}");
    }
}

/// Runs `spec` to completion in a new container of `image`. `store` must be opened exclusive; it
/// is released while the process runs (other strata commands go on) and reopened exclusive.
/// Forks a mount daemon: call while the process is single-threaded.
///
/// A process that can't be started (`StartError` with code 127 when not found, 126 when not
/// executable, 125 otherwise; downcast the error) leaves no container behind.
pub fn run_to_completion(
    store: Store,
    image: &Digest,
    spec: &ProcessSpec,
    output: Output<'_>,
) -> Result<Finished> {
    run_cancellable(store, image, spec, output, &Cancel::default())
}

/// [`run_to_completion`] that `cancel` can stop from another thread.
pub fn run_cancellable(
    store: Store,
    image: &Digest,
    spec: &ProcessSpec,
    output: Output<'_>,
    cancel: &Cancel,
) -> Result<Finished> {
    let root = store.root().to_path_buf();
    let image_rec = store.image(image)?;
    let config = run_config(spec)?;
    let c = store.create_container(&image_rec.id, &image_rec.id.to_string(), None, Some(config))?;
    let dir = store.container_dir(&c.id);
    let lock = ContainerLock::try_acquire(&dir)?.context("a new container is locked by someone else")?;
    let run = run_in(store, &c, lock, output, cancel);
    let store = Store::open(&root, LockMode::Exclusive)?;
    match run {
        Ok(exit_code) => {
            let container = store.resolve_container(&c.id)?;
            Ok(Finished { store, container, exit_code })
        }
        Err(e) => {
            if let Err(rm) = store.remove_container(&c.id) {
                tracing::warn!("removing container {} after a failed run: {rm:#}", c.short_id());
            }
            Err(e)
        }
    }
}

fn run_config(spec: &ProcessSpec) -> Result<RunConfig> {
    anyhow::ensure!(!spec.args.is_empty(), "no command to run");
    let hostname = host_name();
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={hostname}"));
    }
    Ok(RunConfig {
        args: spec.args.clone(),
        cmd: spec.args.clone(),
        env,
        working_dir: spec.cwd.clone(),
        user: spec.user.clone(),
        hostname,
        network: if spec.network_none { "none" } else { "host" }.into(),
        mounts: spec.mounts.clone(),
        runtime: "runc".into(),
        stop_signal: "SIGTERM".into(),
        ..RunConfig::default()
    })
}

/// The host's name (what a container on the host's network is called, as with Docker).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn run_in(
    store: Store,
    c: &ContainerRecord,
    lock: ContainerLock,
    output: Output<'_>,
    cancel: &Cancel,
) -> Result<i32> {
    let ready = Ready::prepare(store, c, lock)?;
    let status = match output {
        Output::Inherit => {
            let (out, out_copier) = super::stdio::forwarded_output(std::io::stdout())?;
            let (err, err_copier) = super::stdio::forwarded_output(std::io::stderr())?;
            let mut child = ready.launch().spawn(super::stdio::empty_input()?, out, err, false, None)?;
            let status = match ready.wait_started(&mut child) {
                Ok(Started::Running(_)) => {
                    cancel.running(&ready.runtime, &ready.id);
                    child.wait()
                }
                Ok(Started::Ended(s)) => Ok(s),
                Err(e) => Err(e),
            };
            cancel.ended();
            drop(child);
            let _ = (out_copier.join(), err_copier.join());
            status?
        }
        Output::Capture { stdout, stderr } => {
            let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let mut child = ready.launch().spawn(
                super::stdio::empty_input()?,
                out_w.into(),
                err_w.into(),
                false,
                None,
            )?;
            // The output waits in the pipes until the start is decided: what the runtime prints
            // when the process can't start is the StartError's message, not the output.
            let gate = Gate::default();
            std::thread::scope(|s| {
                s.spawn(|| copy(std::fs::File::from(out_r), stdout, &gate));
                s.spawn(|| copy(std::fs::File::from(err_r), stderr, &gate));
                let status = match ready.wait_started(&mut child) {
                    Ok(Started::Running(_)) => {
                        gate.decide(true);
                        cancel.running(&ready.runtime, &ready.id);
                        child.wait()
                    }
                    Ok(Started::Ended(s)) => Ok(s),
                    Err(e) => Err(e),
                };
                cancel.ended();
                let ok = status.as_ref().is_ok_and(|s| ready.outcome(*s).is_ok());
                gate.decide(ok);
                status
            })?
        }
    };
    let outcome = ready.outcome(status);
    let finished = ready.finish();
    let code = outcome.map_err(anyhow::Error::from)?;
    finished?;
    Ok(code)
}

/// Copies a pipe into a writer until the pipe closes; a writer that fails stops the copy (the
/// process then gets EPIPE or blocks no longer: the pipe is drained into nothing).
fn copy(mut from: impl Read, to: &mut (dyn Write + Send), gate: &Gate) {
    let mut buf = [0u8; 16384];
    let mut ok = gate.wait();
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if ok => ok = to.write_all(&buf[..n]).and_then(|_| to.flush()).is_ok(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

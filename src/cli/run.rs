//! Running containers: run, create, start, stop, kill, restart, wait, exec, logs, top. The work
//! is in `crate::container`; this is arguments, output and Docker's exit codes (125 when strata
//! fails, 126 when the command can't be invoked, 127 when it is not found).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{Global, open_store};
use crate::container::StartError;
use crate::container::lifecycle::{self, ExecOptions};
use crate::container::logs::{self, ReadOptions};
use crate::container::monitor::Attach;
use crate::container::spec::RunFlags;
use crate::container::status::{self, Status};
use crate::store::containers::ContainerRecord;
use crate::store::{ImageRecord, LockMode, Store};

/// The flags `run` and `create` share.
#[derive(Args, Clone, Debug)]
pub struct ContainerFlags {
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (KEY=VALUE, or KEY to take this environment's value).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file of KEY=VALUE lines.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container (created if missing).
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name or uid, with :group or :gid), resolved in the image's /etc/passwd and /etc/group.
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Overwrite the image's ENTRYPOINT ("" clears it); the image's CMD is then dropped too.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Container host name (default: the host's with --network host, else the short id).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Bind mount a host path (must exist): HOST:CONTAINER[:ro|rw].
    #[arg(short, long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    pub volume: Vec<String>,
    /// Mount a tmpfs at PATH.
    #[arg(long, value_name = "PATH")]
    pub tmpfs: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// host (the default: strata has no bridge network) or none (loopback only).
    #[arg(long, value_name = "host|none")]
    pub network: Option<String>,
    /// OCI runtime: runc (default), crun, or a path to one.
    #[arg(long, value_name = "runc|crun|PATH")]
    pub runtime: Option<String>,
    /// Add Linux capabilities (ALL for all).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities (ALL for all).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Every capability and device, no masked paths, writable /sys.
    #[arg(long)]
    pub privileged: bool,
    /// Memory limit (e.g. 512m, 1g).
    #[arg(short, long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// Limit the number of processes.
    #[arg(long = "pids-limit", value_name = "N")]
    pub pids_limit: Option<i64>,
    /// Run tini (the host's tini-static, Debian package tini) as the first process.
    #[arg(long)]
    pub init: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Publish ports: refused, strata has no bridge network (use --network host).
    #[arg(short = 'p', long = "publish", value_name = "PORTS", hide = true)]
    pub publish: Vec<String>,
    /// Pull the image: missing (default), always, never.
    #[arg(long, value_name = "missing|always|never", default_value = "missing")]
    pub pull: String,
    // One positional, so that everything after the image is the container's, as with Docker:
    // clap takes no more flags once a trailing positional has its first value.
    /// The image, then the command and its arguments (default: the image's Entrypoint and Cmd).
    #[arg(required = true, trailing_var_arg = true, num_args = 1.., value_names = ["IMAGE", "COMMAND"])]
    image_and_command: Vec<String>,
}

impl ContainerFlags {
    /// The image named on the command line.
    pub fn image(&self) -> &str {
        self.image_and_command.first().map_or("", String::as_str)
    }

    /// COMMAND [ARG…] after the image.
    pub fn command(&self) -> &[String] {
        self.image_and_command.get(1..).unwrap_or_default()
    }

    fn flags(&self, rm: bool) -> Result<RunFlags> {
        if !self.publish.is_empty() {
            bail!(
                "-p/--publish is not supported: strata has no bridge network; the container shares the host's with --network host (the default)"
            );
        }
        Ok(RunFlags {
            env: self.env.clone(),
            env_files: self.env_file.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            entrypoint: self.entrypoint.clone(),
            hostname: self.hostname.clone(),
            volumes: self.volume.clone(),
            tmpfs: self.tmpfs.clone(),
            read_only: self.read_only,
            network: self.network.clone(),
            runtime: self.runtime.clone(),
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            memory: self.memory.clone(),
            pids_limit: self.pids_limit,
            init: self.init,
            tty: self.tty,
            interactive: self.interactive,
            rm,
            command: self.command().to_vec(),
        })
    }
}

/// Runs `f`; an error is printed and becomes Docker's exit code (its StartError code, else 125).
fn docker_exit(f: impl FnOnce() -> Result<i32>) -> Result<ExitCode> {
    match f() {
        Ok(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Err(e) => {
            let code = e.downcast_ref::<StartError>().map_or(125, |s| s.code);
            eprintln!("strata: error: {e:#}");
            Ok(ExitCode::from(code as u8))
        }
    }
}

/// The image, pulled first as `--pull` says.
fn image_for(g: &Global, store: Store, name: &str, pull: &str) -> Result<(Store, ImageRecord)> {
    let have = store.resolve_image(name);
    // Only a missing image is pulled: a damaged store stays an error.
    let missing = matches!(&have, Err(e) if e.to_string().starts_with("no such image"));
    if let (Err(_), false) = (&have, missing) {
        return Err(have.unwrap_err());
    }
    let want_pull = match pull {
        "always" => true,
        "missing" => missing,
        "never" => false,
        p => bail!("invalid --pull {p:?}: missing, always or never"),
    };
    if !want_pull {
        let image = have.with_context(|| format!("no such image {name} (--pull never)"))?;
        return Ok((store, image));
    }
    drop(store);
    let reference = crate::oci::Reference::parse(name)?.with_default_tag();
    let opts = crate::registry::PullOptions { platform: None, client: Default::default() };
    let progress = crate::registry::Progress::new(true);
    let open = |mode| open_store(g, mode);
    let pulled = crate::registry::pull(&open, &reference, &opts, &progress)
        .with_context(|| format!("unable to find image {name} locally; pull {}", reference.familiar()))?;
    let store = open_store(g, LockMode::Exclusive)?;
    let image = store.resolve_image(&pulled.reference.to_string())?;
    Ok((store, image))
}

/// `run` needs a command (the image's or one given); `create` also makes containers to mount.
fn create_from(
    g: &Global,
    a: &ContainerFlags,
    rm: bool,
    need_command: bool,
) -> Result<(Store, ContainerRecord)> {
    let flags = a.flags(rm)?;
    let store = open_store(g, LockMode::Exclusive)?;
    let (store, image) = image_for(g, store, a.image(), &a.pull)?;
    let c = lifecycle::create(&store, &image, a.image(), a.name.as_deref(), &flags, need_command)?;
    Ok((store, c))
}

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub flags: ContainerFlags,
}

pub fn create(g: &Global, a: CreateArgs) -> Result<ExitCode> {
    docker_exit(|| {
        let (_, c) = create_from(g, &a.flags, false, false)?;
        writeln!(std::io::stdout(), "{}", c.id)?;
        Ok(0)
    })
}

#[derive(Args)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when its process ends.
    #[arg(long)]
    pub rm: bool,
    #[command(flatten)]
    pub flags: ContainerFlags,
}

pub fn run(g: &Global, a: RunArgs) -> Result<ExitCode> {
    docker_exit(|| {
        use std::io::IsTerminal;
        if a.flags.tty && !a.detach && a.flags.interactive && !std::io::stdin().is_terminal() {
            bail!("the input device is not a TTY (-t with -i needs a terminal on stdin)");
        }
        let (store, c) = create_from(g, &a.flags, a.rm, true)?;
        if a.detach {
            lifecycle::start(store, &c, Attach::Detached)?;
            writeln!(std::io::stdout(), "{}", c.id)?;
            return Ok(0);
        }
        lifecycle::start(store, &c, Attach::Foreground { stdin: a.flags.interactive })
    })
}

#[derive(Args)]
pub struct StartArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
    /// Attach: wait for the process, show its output, return its exit code.
    #[arg(short, long)]
    pub attach: bool,
    /// Attach stdin (implies -a) if the container was created with -i.
    #[arg(short, long)]
    pub interactive: bool,
}

pub fn start(g: &Global, a: StartArgs) -> Result<ExitCode> {
    if a.attach || a.interactive {
        if a.containers.len() != 1 {
            return docker_exit(|| bail!("you cannot start and attach multiple containers at once"));
        }
        return docker_exit(|| {
            use std::io::IsTerminal;
            let store = open_store(g, LockMode::Shared)?;
            let c = store.resolve_container(&a.containers[0])?;
            // As Docker: -i attaches stdin only to a container created with -i (its stdin open).
            let cfg = c.config.as_ref();
            let stdin = a.interactive && cfg.is_some_and(|x| x.open_stdin);
            if stdin && cfg.is_some_and(|x| x.tty) && !std::io::stdin().is_terminal() {
                bail!(
                    "the input device is not a TTY (-i of a container created with -t needs a terminal on stdin)"
                );
            }
            lifecycle::start(store, &c, Attach::Foreground { stdin })
        });
    }
    each(g, &a.containers, |g, name| {
        let store = open_store(g, LockMode::Shared)?;
        let c = store.resolve_container(name)?;
        if status::status(&c) != Status::Running {
            lifecycle::start(store, &c, Attach::Detached)?;
        }
        Ok(())
    })
}

/// Runs `f` for each container, printing its name on success and the error otherwise, as Docker's
/// multi-container commands do; exit 1 when one failed.
fn each(g: &Global, names: &[String], f: impl Fn(&Global, &str) -> Result<()>) -> Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for name in names {
        match f(g, name) {
            Ok(()) => writeln!(std::io::stdout(), "{name}")?,
            Err(e) => {
                eprintln!("strata: error: {e:#}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

#[derive(Args)]
pub struct StopArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
    /// Seconds to wait after the stop signal before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    /// Signal to send (default: the image's StopSignal, else SIGTERM).
    #[arg(short, long)]
    pub signal: Option<String>,
}

pub fn stop(g: &Global, a: StopArgs) -> Result<ExitCode> {
    each(g, &a.containers, |g, name| {
        let store = open_store(g, LockMode::Shared)?;
        let c = store.resolve_container(name)?;
        lifecycle::stop(store, &c, Duration::from_secs(a.time), a.signal.as_deref())
    })
}

#[derive(Args)]
pub struct RestartArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
    /// Seconds to wait after the stop signal before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
}

pub fn restart(g: &Global, a: RestartArgs) -> Result<ExitCode> {
    each(g, &a.containers, |g, name| {
        let store = open_store(g, LockMode::Shared)?;
        let c = store.resolve_container(name)?;
        lifecycle::stop(store, &c, Duration::from_secs(a.time), None)?;
        let store = open_store(g, LockMode::Shared)?;
        let c = lifecycle::reload(&store, &c)?;
        lifecycle::start(store, &c, Attach::Detached).map(|_| ())
    })
}

#[derive(Args)]
pub struct KillArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
    /// Signal to send.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
}

pub fn kill(g: &Global, a: KillArgs) -> Result<ExitCode> {
    lifecycle::normalize_signal(&a.signal)?;
    each(g, &a.containers, |g, name| {
        let store = open_store(g, LockMode::Shared)?;
        let c = store.resolve_container(name)?;
        lifecycle::kill(&store, &c, &a.signal, false)
    })
}

#[derive(Args)]
pub struct WaitArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub fn wait(g: &Global, a: WaitArgs) -> Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for name in &a.containers {
        let res = open_store(g, LockMode::Shared).and_then(|store| {
            let c = store.resolve_container(name)?;
            let dir = store.container_dir(&c.id);
            // Waiting holds no store lock: other commands go on meanwhile.
            drop(store);
            lifecycle::wait(&dir, &c)
        });
        match res {
            Ok(exit) => writeln!(std::io::stdout(), "{exit}")?,
            Err(e) => {
                eprintln!("strata: error: {e:#}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

#[derive(Args)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// Run in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// Set environment variables.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name or uid, with :group or :gid).
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    pub container: String,
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND [ARG...]"
    )]
    pub command: Vec<String>,
}

pub fn exec(g: &Global, a: ExecArgs) -> Result<ExitCode> {
    docker_exit(|| {
        let store = open_store(g, LockMode::Shared)?;
        let c = store.resolve_container(&a.container)?;
        let env = a
            .env
            .iter()
            .map(|e| {
                if e.contains('=') {
                    Ok(e.clone())
                } else {
                    std::env::var(e)
                        .map(|v| format!("{e}={v}"))
                        .map_err(|_| anyhow::anyhow!("{e} is not set"))
                }
            })
            .filter_map(Result::ok)
            .collect();
        let o = ExecOptions {
            args: a.command.clone(),
            env,
            workdir: a.workdir.clone(),
            user: a.user.clone(),
            tty: a.tty,
            interactive: a.interactive,
            detach: a.detach,
        };
        lifecycle::exec(store, &c, &o)
    })
}

#[derive(Args)]
pub struct LogsArgs {
    pub container: String,
    /// Follow the output until the container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Show only the last N lines ("all" for all).
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<String>,
    /// Show timestamps.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show lines since a time (RFC 3339, unix seconds, or a duration like 10m).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
}

pub fn logs(g: &Global, a: LogsArgs) -> Result<ExitCode> {
    let tail = match a.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => {
            Some(n.parse::<usize>().with_context(|| format!("invalid --tail {n:?}: a number or all"))?)
        }
    };
    let since_nanos = a.since.as_deref().map(logs::parse_since).transpose()?;
    let store = open_store(g, LockMode::Shared)?;
    let c = store.resolve_container(&a.container)?;
    let path = lifecycle::log_path(&store, &c);
    let root = store.root().to_path_buf();
    drop(store);
    let mut running = || {
        Store::open(&root, LockMode::Shared)
            .and_then(|s| s.resolve_container(&c.id))
            .is_ok_and(|c| matches!(status::status(&c), Status::Running | Status::Created))
    };
    let o = ReadOptions { tail, since_nanos, timestamps: a.timestamps };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    logs::read(&path, &o, a.follow, &mut running, &mut out, &mut err)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct TopArgs {
    pub container: String,
    /// ps options (default -f).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "PS OPTIONS")]
    pub ps_args: Vec<String>,
}

pub fn top(g: &Global, a: TopArgs) -> Result<ExitCode> {
    let store = open_store(g, LockMode::Shared)?;
    let c = store.resolve_container(&a.container)?;
    let table = lifecycle::top(&store, &c, &a.ps_args)?;
    write!(std::io::stdout(), "{table}")?;
    Ok(ExitCode::SUCCESS)
}

//! Starting a container's process: under its lock, build the init layer, the host files and the
//! runtime bundle, mount the union (a mount daemon inheriting the lock), run the runtime in the
//! foreground, and take it all down again. The monitor, `strata run` and the build's `RUN` share it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};

use anyhow::{Context, Result, bail};
use nix::unistd::Pid;

use super::config_pipe::ConfigPipe;
use super::lock::ContainerLock;
use super::mounting::{self, MountState, UNMOUNT_TIMEOUT};
use super::runtime::{self, Runtime};
use super::started::Started;
use super::{init_layer, user};
use crate::store::Store;
use crate::store::containers::{ContainerRecord, MountRecord, RunConfig, write_mount_record};
use crate::sys::daemon::ProcessHandle;
use crate::union::Stack;

/// The runtime could not start the process: Docker's exit code for it and the runtime's message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartError {
    /// 125, 126 or 127.
    pub code: i32,
    pub message: String,
}

/// A container mounted and ready for its runtime. It holds the container's lock; [`Ready::finish`]
/// takes everything down (dropping it without finishing still unmounts).
pub struct Ready {
    pub id: String,
    pub name: String,
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub runtime: Runtime,
    pub config: RunConfig,
    mount_pid: Option<Pid>,
    /// Where a runtime started early read its config (held until the container is down).
    _config_pipe: Option<ConfigPipe>,
    _lock: ContainerLock,
}

/// What starting the runtime takes, known before the container is mounted.
pub struct Launch<'a> {
    pub id: &'a str,
    pub dir: &'a Path,
    pub runtime: &'a Runtime,
    pub config: &'a RunConfig,
}

/// Starts the runtime early (see `config_pipe`): given a [`Launch`], spawns it and keeps the
/// child. Called at most once, before the mount daemon forks: it must start no thread.
pub type EarlyStart<'s> = &'s mut dyn FnMut(&Launch<'_>) -> Result<()>;

impl Ready {
    /// Mounts `c` and writes its bundle (while the mount daemon starts); the store is dropped
    /// before the daemon forks (call while single-threaded). `lock` is the container's, taken by
    /// the caller.
    pub fn prepare(store: Store, c: &ContainerRecord, lock: ContainerLock) -> Result<Ready> {
        Self::prepare_with(store, c, lock, None)
    }

    /// [`Ready::prepare`] that, for runc, calls `early` to start the runtime before the image's
    /// layers are opened and the init layer, the mount and the bundle are made; it gets its
    /// config only once the union is mounted and recorded. An error after `early` ran leaves the
    /// runtime to the caller to kill: it has read no config (that is the last step; only if the
    /// final rename of `config.json` failed may it have, and a later start deletes what it left).
    pub fn prepare_with(
        store: Store,
        c: &ContainerRecord,
        lock: ContainerLock,
        early: Option<EarlyStart<'_>>,
    ) -> Result<Ready> {
        let cfg = c.config.clone().with_context(|| {
            format!("container {} was created without a process (by an older strata): it can be mounted, not started", c.name)
        })?;
        if cfg.args.is_empty() {
            bail!("no command specified for container {}: its image has no Entrypoint or Cmd", c.name);
        }
        // Absolute: the runtime takes the rootfs from config.json relative to the bundle.
        let dir = std::path::absolute(store.container_dir(&c.id))
            .with_context(|| format!("the directory of container {}", c.name))?;
        let runtime = Runtime::find(&cfg.runtime, store.root())?;
        match mounting::current_mount_state(&store, &c.id) {
            MountState::Unmounted => {}
            MountState::Dead { mountpoint } => crate::fs::mount::unmount(&mountpoint)?,
            MountState::Mounted { mountpoint, .. } => {
                bail!("container {} is mounted at {}: strata umount it first", c.name, mountpoint.display())
            }
        }
        // Started before anything else is read or made: all of it overlaps the runtime's own start.
        let config_pipe = match early {
            Some(start) if runtime.reads_config_once() => {
                let pipe = ConfigPipe::new(&dir)?;
                start(&Launch { id: &c.id, dir: &dir, runtime: &runtime, config: &cfg })?;
                tracing::debug!(container = %c.short_id(), "runtime started");
                Some(pipe)
            }
            _ => None,
        };
        let image = store.image(&c.image).with_context(|| format!("the image of container {}", c.name))?;
        let upper = store.container_upper(&c.id);
        let stack = Stack::new(&mounting::image_lowers(&store, &image), Some(&upper))
            .with_context(|| format!("opening the layers of {}", c.image_name))?;
        let mut dirs = vec![PathBuf::from("proc"), PathBuf::from("sys"), PathBuf::from("dev")];
        let mut files: Vec<PathBuf> =
            ["etc/hosts", "etc/hostname", "etc/resolv.conf"].iter().map(PathBuf::from).collect();
        if !cfg.working_dir.is_empty() {
            dirs.push(init_layer::container_path(&cfg.working_dir)?);
        }
        for m in &cfg.mounts {
            let dest = init_layer::container_path(&m.destination)?;
            if m.kind == "bind" {
                let meta = std::fs::metadata(&m.source).with_context(|| {
                    format!(
                        "invalid mount {}:{}: bind source path does not exist",
                        m.source.display(),
                        m.destination
                    )
                })?;
                if meta.is_dir() { dirs.push(dest) } else { files.push(dest) }
            } else {
                dirs.push(dest);
            }
        }
        // A fresh --rm container without mounts or a working directory of its own shares its
        // image's init layer (one per image: a `-w` of every run's own would make one each).
        let fresh = std::fs::read_dir(&upper).is_ok_and(|mut d| d.next().is_none());
        let images_workdir = || {
            cfg.working_dir.is_empty()
                || store
                    .image_config(&image)
                    .is_ok_and(|c| c["config"]["WorkingDir"] == cfg.working_dir.as_str())
        };
        let shared_init = if cfg.auto_remove && cfg.mounts.is_empty() && fresh && images_workdir() {
            Some(init_layer::shared(&store, image.id.hex(), &stack, &dirs, &files)?)
        } else {
            init_layer::prepare(&init_layer::path(&store, &c.id), &stack, &dirs, &files)?;
            None
        };
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).with_context(|| format!("cannot create {}", rootfs.display()))?;
        let rootless = super::rootless::rootless();
        let maps = if rootless { Some(super::rootless::id_maps()?) } else { None };
        // allow_other: the container's users are not the daemon's (permission checks stay the kernel's).
        // Rootless, only where fusermount3 permits it (else the container's root alone can).
        let allow_other = !rootless || super::rootless::allow_other_permitted();
        let mut opts = mounting::container_mount_options(&store, c, allow_other)?;
        opts.read_only = cfg.read_only;
        if let Some(init) = shared_init {
            opts.lowers.insert(0, init);
        }
        // Root alone mapped: the daemon serves from a namespace with that mapping too, so what
        // the container's root makes is root's in the layer (owned by the user on disk).
        if let Some(maps) = maps.as_ref().filter(|m| super::rootless::root_only(m)) {
            opts.namespace_frame = Some(maps.clone());
        }
        drop(store);
        // The daemon mounts (a fork, the layers, the kernel's handshake) while the rest of the
        // bundle is written here: the user from the image, the host files, config.json.
        tracing::debug!(container = %c.short_id(), "layers ready; mounting");
        let pending = crate::fs::mount::spawn_daemon(&opts, &rootfs)
            .with_context(|| format!("mounting container {}", c.name))?;
        let bundle = (|| -> Result<Vec<u8>> {
            let user = user::resolve(&stack, &cfg.user)?;
            // What a killed monitor may have left: the runtime's state.
            runtime.delete(&c.id);
            super::bundle::write_host_files(&dir, &cfg)?;
            let mut config = super::bundle::runtime_config(&cfg, &user, &rootfs, &dir, &c.id)?;
            if let Some(maps) = &maps {
                super::rootless::adapt(&mut config, maps, runtime.in_user_namespace())?;
            }
            let config = serde_json::to_vec_pretty(&config)?;
            if config_pipe.is_none() {
                super::config_pipe::write(&dir, &config)?;
            }
            Ok(config)
        })();
        drop(stack);
        tracing::debug!(container = %c.short_id(), "bundle ready");
        let mounted = pending.wait();
        let mut ready = Ready {
            id: c.id.clone(),
            name: c.name.clone(),
            dir,
            rootfs,
            runtime,
            config: cfg,
            mount_pid: mounted.as_ref().ok().copied(),
            _config_pipe: None,
            _lock: lock,
        };
        // A bundle that could not be made: dropping `ready` takes the mount down again.
        let config = bundle?;
        let pid = mounted.with_context(|| format!("mounting container {}", c.name))?;
        let record = MountRecord { mountpoint: ready.rootfs.clone(), pid: pid.as_raw() };
        write_mount_record(&ready.dir, Some(&record))?;
        tracing::debug!(container = %c.short_id(), "mounted");
        // Mounted: a runtime started early may go on now.
        if let Some(mut pipe) = config_pipe {
            pipe.deliver(&config)?;
            ready._config_pipe = Some(pipe);
        }
        Ok(ready)
    }

    pub fn launch(&self) -> Launch<'_> {
        Launch { id: &self.id, dir: &self.dir, runtime: &self.runtime, config: &self.config }
    }

    pub fn runtime_log(&self) -> PathBuf {
        self.launch().runtime_log()
    }

    pub fn pid_file(&self) -> PathBuf {
        self.launch().pid_file()
    }

    /// The container's exit code from the runtime's, or why the process never started.
    pub fn outcome(&self, status: ExitStatus) -> std::result::Result<i32, StartError> {
        use std::os::unix::process::ExitStatusExt;
        let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        match runtime::last_error(&self.runtime_log()) {
            Some(msg) if code != 0 => Err(StartError {
                code: runtime::classify(&msg) as i32,
                message: format!("{}: {msg}", self.runtime.name),
            }),
            _ => Ok(code),
        }
    }

    /// Waits until the process runs (the runtime wrote the pid file) or the runtime ended before
    /// that (its status).
    pub fn wait_started(&self, child: &mut Child) -> std::io::Result<Started> {
        let warm = super::warm::WarmUp::start(&self.rootfs, &self.config);
        let started = super::started::wait(child, &self.pid_file());
        // The runtime is done with the rootfs's set-up: what the warm-up has not done by now
        // it would do too late.
        warm.finish();
        started
    }

    /// Deletes what the runtime keeps, unmounts (waiting for the daemon to write everything) and
    /// releases the container.
    pub fn finish(mut self) -> Result<()> {
        self.take_down(None)
    }

    /// For a container that goes (`--rm`): unmounts, then runs `remove` at once, and does not
    /// wait for the mount daemon to exit (it lets go of the renamed directory on its own; should
    /// a straggler still leave a file there, it is the next writer's garbage in `tmp/`), since
    /// nothing it could still flush is kept. Unmounting failed: the daemon is waited for, then
    /// `remove` runs, as after `finish`.
    pub fn finish_removing(mut self, remove: impl FnOnce()) -> Result<()> {
        let mut remove = Some(remove);
        let mut run = || {
            if let Some(f) = remove.take() {
                f()
            }
        };
        self.take_down(Some(&mut run))
    }

    /// `removing`: what `finish_removing` runs once the union is unmounted.
    fn take_down(&mut self, mut removing: Option<&mut dyn FnMut()>) -> Result<()> {
        let Some(pid) = self.mount_pid.take() else { return Ok(()) };
        self.runtime.delete(&self.id);
        // Taken before unmounting, so it names the daemon even if its pid is reused once it exits
        // (a removed container's daemon is not waited for: see `finish_removing`).
        let handle = removing.is_none().then(|| ProcessHandle::open(pid.as_raw()));
        let unmounted = crate::fs::mount::unmount(&self.rootfs);
        tracing::debug!(container = %self.id.get(..12).unwrap_or(&self.id), "unmounted");
        if unmounted.is_ok()
            && let Some(f) = removing.as_mut()
        {
            f();
            return Ok(());
        }
        let exited = unmounted.and_then(|()| crate::fs::mount::wait_daemon(pid, handle, UNMOUNT_TIMEOUT));
        if exited.is_ok() {
            // Our child (`spawn_daemon`): no zombie left for a long-lived caller (a build).
            crate::fs::mount::reap_daemon(pid);
        }
        let forgotten = write_mount_record(&self.dir, None);
        if let Some(f) = removing {
            f();
        }
        forgotten?;
        exited.with_context(|| format!("unmounting container {}", self.name))
    }
}

impl Launch<'_> {
    pub fn runtime_log(&self) -> PathBuf {
        self.dir.join("runtime.log")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("pid")
    }

    /// `RUNTIME run` for the container, not yet spawned: the caller sets its stdio.
    pub fn command(&self, console: Option<&Path>) -> Command {
        let _ = std::fs::remove_file(self.runtime_log());
        let _ = std::fs::remove_file(self.pid_file());
        let mut c = self.runtime.command(Some(&self.runtime_log()));
        c.arg("run").arg("--bundle").arg(self.dir).arg("--pid-file").arg(self.pid_file());
        if let Some(socket) = console {
            c.arg("--console-socket").arg(socket);
        }
        c.arg(self.id);
        c
    }

    /// Spawns the runtime with the given stdio (and `console`, a console socket: see `console`).
    pub fn spawn(
        &self,
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
        own_group: bool,
        console: Option<&Path>,
    ) -> Result<Child> {
        let mut c = self.command(console);
        c.stdin(stdin).stdout(stdout).stderr(stderr);
        if own_group {
            use std::os::unix::process::CommandExt;
            c.process_group(0);
        }
        c.spawn().with_context(|| format!("cannot run {}", self.runtime.path.display()))
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        if let Err(e) = self.take_down(None) {
            tracing::warn!("{e:#}");
        }
    }
}

/// Holds the output back until the process is known to have started: what the runtime prints
/// when it can't start the process is strata's error, not the container's output.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<Option<bool>>, Condvar)>);

impl Gate {
    pub fn decide(&self, pass: bool) {
        let (m, cv) = &*self.0;
        let mut d = m.lock().unwrap_or_else(|p| p.into_inner());
        if d.is_none() {
            *d = Some(pass);
        }
        cv.notify_all();
    }

    pub fn wait(&self) -> bool {
        let (m, cv) = &*self.0;
        let mut d = m.lock().unwrap_or_else(|p| p.into_inner());
        while d.is_none() {
            d = cv.wait(d).unwrap_or_else(|p| p.into_inner());
        }
        d.unwrap_or(false)
    }
}

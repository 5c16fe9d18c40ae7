//! Containers and images on the mount: the store says what to stack, this mounts it under the
//! container's lock, records the daemon in the container's record, and tells live, dead and
//! unmounted apart.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::unistd::Pid;

use super::lock::ContainerLock;
use super::umount;
use crate::fs::mount::{MountOptions, is_alive, is_mounted, mount_foreground, spawn_daemon};
use crate::store::LockMode;
use crate::store::containers::{ContainerRecord, MountRecord, read_container_runtime, write_mount_record};
use crate::store::mounts::ImageMount;
use crate::store::{ImageRecord, Store};
use crate::sys::daemon::ProcessHandle;

/// How long `umount` waits for the daemon to write everything and exit.
pub const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a container's mount record is worth right now.
#[derive(Debug, PartialEq, Eq)]
pub enum MountState {
    Unmounted,
    Mounted {
        mountpoint: PathBuf,
        pid: i32,
    },
    /// The record says mounted but the daemon is gone (killed): the kernel answers ENOTCONN.
    Dead {
        mountpoint: PathBuf,
    },
}

impl MountState {
    pub fn is_mounted(&self) -> bool {
        !matches!(self, MountState::Unmounted)
    }
}

impl fmt::Display for MountState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MountState::Unmounted => "Created",
            MountState::Mounted { .. } => "Mounted",
            MountState::Dead { .. } => "Dead (daemon gone; strata umount clears it)",
        })
    }
}

pub fn mount_state(c: &ContainerRecord) -> MountState {
    state_of(c.mount.as_ref())
}

fn state_of(m: Option<&MountRecord>) -> MountState {
    let Some(m) = m else { return MountState::Unmounted };
    let mounted = is_mounted(&m.mountpoint).unwrap_or(false);
    match (mounted, is_alive(Pid::from_raw(m.pid))) {
        (true, true) => MountState::Mounted { mountpoint: m.mountpoint.clone(), pid: m.pid },
        (true, false) => MountState::Dead { mountpoint: m.mountpoint.clone() },
        (false, _) => MountState::Unmounted,
    }
}

/// The mount state as the container's directory says now (not as a record read earlier).
pub fn current_mount_state(store: &Store, id: &str) -> MountState {
    state_of(read_container_runtime::<MountRecord>(&store.container_dir(id), "mount.json").as_ref())
}

/// The image's layer trees, top first (what the union stacks).
pub fn image_lowers(store: &Store, image: &ImageRecord) -> Vec<PathBuf> {
    image.layers.iter().rev().map(|l| store.layer_fs(&l.diff_id)).collect()
}

/// A container's lower layers, top first: its init layer (mountpoints for the runtime, kept out
/// of the upper so they never show in a diff or a commit) when it has one, then the image's.
pub fn container_lowers(store: &Store, c: &ContainerRecord, image: &ImageRecord) -> Vec<PathBuf> {
    let init = super::init_layer::path(store, &c.id);
    let mut lowers: Vec<PathBuf> = init.is_dir().then_some(init).into_iter().collect();
    lowers.extend(image_lowers(store, image));
    lowers
}

pub struct MountRequest {
    pub mountpoint: PathBuf,
    pub allow_other: bool,
    pub foreground: bool,
    /// Mount a container read-only (its writable layer then serves as the top lower).
    pub read_only: bool,
}

/// The error for a container someone else holds: where it is mounted, if it says.
pub fn busy_error(store: &Store, c: &ContainerRecord) -> anyhow::Error {
    match read_container_runtime::<MountRecord>(&store.container_dir(&c.id), "mount.json") {
        Some(m) => anyhow::anyhow!("container {} is already mounted at {}", c.name, m.mountpoint.display()),
        None => anyhow::anyhow!("container {} is in use: it is being mounted, run or removed", c.name),
    }
}

/// The mount options of a container's read-write union.
pub fn container_mount_options(
    store: &Store,
    c: &ContainerRecord,
    allow_other: bool,
) -> Result<MountOptions> {
    let image = store.image(&c.image).with_context(|| format!("the image of container {}", c.name))?;
    Ok(MountOptions {
        lowers: container_lowers(store, c, &image),
        upper: Some(store.container_upper(&c.id)),
        work: Some(store.container_work(&c.id)),
        allow_other,
        fsname: format!("strata:{}", c.short_id()),
        log_file: Some(store.container_dir(&c.id).join("mount.log")),
        control_socket: Some(store.container_dir(&c.id).join(CONTROL_SOCKET)),
        namespace_frame: crate::sys::userns::frame_for_mounts(),
        ..MountOptions::default()
    })
}

/// Mounts a container read-write. The container's lock is taken first and inherited by the
/// daemon, which holds it until it exits: a second mount gets "already mounted at …". The store
/// is given back (dropped) before the daemon forks, so the daemon never inherits the store lock.
pub fn mount_container(store: Store, c: &ContainerRecord, req: &MountRequest) -> Result<()> {
    let dir = store.container_dir(&c.id);
    let Some(lock) = ContainerLock::try_acquire(&dir)? else { return Err(busy_error(&store, c)) };
    if let state @ (MountState::Mounted { .. } | MountState::Dead { .. }) = current_mount_state(&store, &c.id)
    {
        bail!("container {} is already mounted ({state}): strata umount {} first", c.name, c.name);
    }
    super::mountpoint::check_and_warn(&req.mountpoint)?;
    let mut opts = container_mount_options(&store, c, req.allow_other)?;
    opts.read_only = req.read_only;
    opts.done_fd = (!req.foreground).then(|| lock.raw_fd());
    let mountpoint = crate::fs::mount::absolute(&req.mountpoint)?;
    let record = |pid: i32| -> Result<()> {
        let m = (pid != 0).then(|| MountRecord { mountpoint: mountpoint.clone(), pid });
        crate::store::containers::write_mount_record(&dir, m.as_ref())
    };
    // Recorded (with this process's pid) before the store is given back, so a second mount,
    // which gets the store next, is told where this one is going while it is being set up.
    record(std::process::id() as i32)?;
    drop(store);
    if req.foreground {
        let served = mount_foreground(&opts, &mountpoint);
        record(0)?;
        drop(lock);
        return served;
    }
    // One fork (`spawn_daemon`): the daemon is this short-lived process's child until it exits
    // (init or a subreaper adopts it then), so its pid is known at once and the record names it
    // while it mounts, instead of after: no intermediate process, no record written last.
    let served = spawn_daemon(&opts, &mountpoint).and_then(|pending| {
        let early = pending.pid();
        if let Some(pid) = early {
            record(pid.as_raw())?;
        }
        let pid = pending.wait()?;
        if early != Some(pid) {
            record(pid.as_raw())?;
        }
        Ok(pid)
    });
    if let Err(e) = served {
        record(0)?;
        return Err(e);
    }
    drop(lock);
    Ok(())
}

/// Mounts an image read-only (no container); the mount is recorded so `rmi` and `umount` know it.
pub fn mount_image(store: Store, image: &ImageRecord, req: &MountRequest) -> Result<()> {
    super::mountpoint::check_and_warn(&req.mountpoint)?;
    let opts = MountOptions {
        lowers: image_lowers(&store, image),
        read_only: true,
        allow_other: req.allow_other,
        fsname: format!("strata:{}", image.id.short()),
        namespace_frame: crate::sys::userns::frame_for_mounts(),
        ..MountOptions::default()
    };
    let root = store.root().to_path_buf();
    drop(store);
    let mountpoint = crate::fs::mount::absolute(&req.mountpoint)?;
    let record = |pid: Option<i32>| -> Result<()> {
        let store = Store::open(&root, crate::store::LockMode::Exclusive)?;
        match pid {
            Some(pid) => store.record_image_mount(&ImageMount {
                mountpoint: mountpoint.clone(),
                pid,
                image: image.id.clone(),
            }),
            None => store.forget_image_mount(&mountpoint),
        }
    };
    if req.foreground {
        record(Some(std::process::id() as i32))?;
        let served = mount_foreground(&opts, &mountpoint);
        record(None)?;
        return served;
    }
    // As for a container: one fork, recorded while the daemon mounts.
    let pending = spawn_daemon(&opts, &mountpoint)?;
    let early = pending.pid();
    if let Some(pid) = early {
        record(Some(pid.as_raw()))?;
    }
    match pending.wait() {
        Ok(pid) if early == Some(pid) => Ok(()),
        Ok(pid) => record(Some(pid.as_raw())),
        Err(e) => {
            record(None)?;
            Err(e)
        }
    }
}

/// Unmounts a container and waits until its daemon has written everything and exited; a dead
/// daemon's mount is cleared too; a busy mount is refused, naming its users. The record is
/// cleared unless a new mount holds the container.
pub fn unmount_container(store: &Store, c: &ContainerRecord) -> Result<()> {
    let what = format!("container {}", c.name);
    match current_mount_state(store, &c.id) {
        MountState::Mounted { mountpoint, pid } => {
            umount::unmount_and_wait(&mountpoint, Some(Pid::from_raw(pid)), false, &what, UNMOUNT_TIMEOUT)?
        }
        MountState::Dead { mountpoint } => umount::detach(&mountpoint, false, &what)?,
        MountState::Unmounted if c.mount.is_none() => bail!("container {} is not mounted", c.name),
        MountState::Unmounted => {}
    }
    clear_mount_record(store, c)
}

/// Clears a container's mount record once its daemon is gone; its `strata mount` parent may
/// still be finishing: wait for it briefly.
fn clear_mount_record(store: &Store, c: &ContainerRecord) -> Result<()> {
    clear_mount_record_at(&store.container_dir(&c.id))
}

/// [`clear_mount_record`] by the container's directory, under the container's lock alone (the
/// record is the container's, and whoever removes a container takes that lock too): `umount`
/// needs no second store opening after its wait. A container removed meanwhile has nothing
/// left to clear.
fn clear_mount_record_at(dir: &std::path::Path) -> Result<()> {
    match ContainerLock::acquire_within(dir, Duration::from_secs(5), || Ok(())) {
        Ok(Some(_lock)) => write_mount_record(dir, None),
        Ok(None) => Ok(()),
        Err(_) if !dir.exists() => Ok(()),
        Err(e) => Err(e),
    }
}

/// `strata umount` of a container: unmounts at once (or refuses a busy mount, naming its users;
/// `lazy` detaches it anyway), then gives the store back before waiting for the daemon to write
/// everything and exit. Until it has, the daemon holds the container's lock, so an interrupted
/// wait never lets a second daemon serve the same writable layer. After a lazy detach the record
/// stays: the daemon still serves the files open under the old mountpoint.
pub fn unmount_container_released(store: Store, c: &ContainerRecord, lazy: bool) -> Result<()> {
    let what = format!("container {}", c.name);
    let (mountpoint, pid) = match current_mount_state(&store, &c.id) {
        MountState::Mounted { mountpoint, pid } => (mountpoint, Some(Pid::from_raw(pid))),
        MountState::Dead { mountpoint } => (mountpoint, None),
        MountState::Unmounted if c.mount.is_none() => bail!("container {} is not mounted", c.name),
        MountState::Unmounted => {
            if let Some(pid) = c.mount.as_ref().map(|m| Pid::from_raw(m.pid)).filter(|p| is_alive(*p)) {
                bail!(
                    "{what} is detached already; its daemon {pid} still serves files open under it (used by {})",
                    holders_of(c)
                );
            }
            return clear_mount_record(&store, c);
        }
    };
    let handle = pid.map(|p| ProcessHandle::open(p.as_raw()));
    // Asked before detaching: a detached mount's files no longer show under the mountpoint.
    let users = if lazy { holders_of(c) } else { String::new() };
    umount::detach(&mountpoint, lazy, &what)?;
    if lazy {
        eprintln!(
            "strata: {} detached; the mount ends when its last user lets go ({users})",
            mountpoint.display()
        );
        return Ok(());
    }
    let dir = store.container_dir(&c.id);
    drop(store);
    let Some(pid) = pid else { return clear_mount_record_at(&dir) };
    // The daemon holds the container's lock until it has written everything (a `strata mount`
    // daemon closes it just before it exits, `MountOptions::done_fd`; an older one, or one a
    // container's monitor forked, at its exit): waiting for the lock, woken by the kernel when
    // it is let go, returns before the daemon's teardown, which holds nothing then. A daemon
    // that exited without the lock coming free (a new mount took it meanwhile) ends the wait,
    // and the record is then cleared as before; so does the timeout.
    let handle = match handle {
        Some(Ok(Some(h))) => h,
        other => {
            crate::fs::mount::wait_daemon(pid, other, UNMOUNT_TIMEOUT)?;
            return clear_mount_record_at(&dir);
        }
    };
    let start = std::time::Instant::now();
    let daemon_running = || !handle.wait_exit(Duration::ZERO).unwrap_or(true);
    match ContainerLock::wait(&dir, LOCK_TICK, || daemon_running() && start.elapsed() < UNMOUNT_TIMEOUT) {
        Ok(Some(_lock)) => write_mount_record(&dir, None),
        Ok(None) if daemon_running() => bail!("mount daemon {pid} still running after {UNMOUNT_TIMEOUT:?}"),
        Ok(None) => clear_mount_record_at(&dir),
        Err(_) if !dir.exists() => Ok(()),
        Err(e) => Err(e),
    }
}

/// How often `umount` looks whether the daemon it waits for has exited without the lock coming
/// free, or its time is up.
const LOCK_TICK: Duration = Duration::from_millis(100);

/// Who uses the files under a container's recorded mountpoint, for messages.
fn holders_of(c: &ContainerRecord) -> String {
    let hs = c.mount.as_ref().map(|m| umount::holders(&m.mountpoint)).unwrap_or_default();
    if hs.is_empty() {
        return "no process strata can see".into();
    }
    let list: Vec<String> = hs.iter().map(ToString::to_string).collect();
    format!("pid {}", list.join(", "))
}

/// `strata umount` of a read-only image mount, or of any FUSE mount strata has no record of
/// (`m.pid` 0): as [`unmount_container_released`], and the record is forgotten once the daemon
/// is gone.
pub fn unmount_image_released(store: Store, m: &ImageMount, lazy: bool) -> Result<()> {
    let pid = Some(Pid::from_raw(m.pid)).filter(|p| p.as_raw() > 0 && is_alive(*p));
    if !is_mounted(&m.mountpoint).unwrap_or(false) {
        if let Some(pid) = pid {
            bail!(
                "the mount at {} is detached already; its daemon {pid} still serves files open under it",
                m.mountpoint.display()
            );
        }
        return store.forget_image_mount(&m.mountpoint);
    }
    let handle = pid.map(|p| ProcessHandle::open(p.as_raw()));
    umount::detach(&m.mountpoint, lazy, "the mount")?;
    if lazy {
        eprintln!("strata: {} detached; the mount ends when its last user lets go", m.mountpoint.display());
        return Ok(());
    }
    let root = store.root().to_path_buf();
    drop(store);
    if let Some(pid) = pid {
        crate::fs::mount::wait_daemon(pid, handle, UNMOUNT_TIMEOUT)?;
    }
    Store::open(&root, LockMode::Exclusive)?.forget_image_mount(&m.mountpoint)
}

/// Where a container's mount daemon answers freezes (fs/freeze.rs).
pub const CONTROL_SOCKET: &str = "control.sock";

/// Holds a container's mount still while its upper is read (a commit of a mount in use): the
/// daemon finishes the changes in flight and holds new ones until the returned connection is
/// dropped (or this process dies). `None` when the container is not mounted.
pub fn freeze_mount(store: &Store, c: &ContainerRecord) -> Result<Option<std::os::unix::net::UnixStream>> {
    if !matches!(current_mount_state(store, &c.id), MountState::Mounted { .. }) {
        return Ok(None);
    }
    let sock = store.container_dir(&c.id).join(CONTROL_SOCKET);
    let frozen = crate::fs::freeze::freeze(&sock)
        .with_context(|| format!("freezing the mount of container {}", c.name))?;
    if frozen.is_none() {
        eprintln!(
            "strata: warning: the mount of container {} cannot be frozen (its daemon predates freezing):              changes made during the commit may make it fail",
            c.name
        );
    }
    Ok(frozen)
}

/// Makes everything written through a container's mount durable in its upper dir: syncfs on the
/// mount flushes pages the kernel still holds (shared writable mmaps) to the daemon, then syncfs
/// on the upper makes them durable.
pub fn sync_mount(store: &Store, c: &ContainerRecord) -> Result<()> {
    if let MountState::Mounted { mountpoint, .. } = mount_state(c) {
        let f = std::fs::File::open(&mountpoint)
            .with_context(|| format!("cannot open {}", mountpoint.display()))?;
        nix::unistd::syncfs(&f).with_context(|| format!("syncfs {}", mountpoint.display()))?;
    }
    let upper = store.container_upper(&c.id);
    let f = std::fs::File::open(&upper).with_context(|| format!("cannot open {}", upper.display()))?;
    nix::unistd::syncfs(&f).with_context(|| format!("syncfs {}", upper.display()))
}

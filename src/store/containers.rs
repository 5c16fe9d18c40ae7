//! `containers/<id>/{upper,work,meta.json}`: an image plus one writable layer, and `mount.json`
//! while a daemon serves it, `state.json` once it has run (runtime state, written without fsync,
//! by whoever holds the container's `lock`, without the store lock).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::layers::now_unix;
use super::{Store, records, staging};
use crate::oci::Digest;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits, random.
    pub id: String,
    pub name: String,
    pub image: Digest,
    /// What the user called the image when creating the container.
    pub image_name: String,
    pub created: i64,
    /// What `run`/`create` recorded: the process and how to run it (absent for containers made
    /// before strata ran containers: they can be mounted, not started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    /// Set while a mount daemon serves this container (kept in `mount.json`).
    #[serde(skip)]
    pub mount: Option<MountRecord>,
    /// The last run's state, as the monitor wrote it (kept in `state.json`).
    #[serde(skip)]
    pub state: Option<RunState>,
}

/// A container's process and the way it runs, Docker's `Config` and `HostConfig` in one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RunConfig {
    /// The command line: entrypoint then command, after Docker's override rules.
    pub args: Vec<String>,
    /// The image's Entrypoint or `--entrypoint` (shown by inspect).
    pub entrypoint: Vec<String>,
    /// The image's Cmd or the command given (shown by inspect).
    pub cmd: Vec<String>,
    /// `KEY=VALUE`, complete (image, then `--env-file`, then `-e`; PATH and HOSTNAME filled in).
    pub env: Vec<String>,
    pub working_dir: String,
    /// As given: `name`, `uid`, `name:group`, `uid:gid` (resolved in the image at start).
    pub user: String,
    pub hostname: String,
    /// `host` or `none`.
    pub network: String,
    pub mounts: Vec<MountSpec>,
    pub read_only: bool,
    /// `runc`, `crun` or a path.
    pub runtime: String,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// Bytes; 0 = no limit.
    pub memory: u64,
    /// 0 = no limit.
    pub pids_limit: i64,
    pub init: bool,
    pub tty: bool,
    pub open_stdin: bool,
    pub auto_remove: bool,
    /// From the image (`SIGTERM` when it has none).
    pub stop_signal: String,
}

/// A bind mount (`-v HOST:CTR[:ro]`) or a tmpfs (`--tmpfs PATH`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountSpec {
    /// `bind` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The host path (empty for tmpfs).
    pub source: PathBuf,
    pub destination: String,
    #[serde(rename = "RW")]
    pub rw: bool,
}

/// What the monitor recorded of the container's last run (Docker's `State`, raw).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunState {
    /// `running` or `exited` as the monitor last wrote it (liveness is checked on reading).
    pub status: String,
    /// The container's first process, as seen from the host.
    pub pid: i32,
    /// The monitor owning the mount and the runtime child, and its start time (clock ticks since
    /// boot, /proc/PID/stat) so a reused pid is not taken for it.
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub exit_code: i32,
    /// Unix milliseconds; 0 = never.
    pub started_at: i64,
    pub finished_at: i64,
    /// Why the container could not start, or why its monitor gave up.
    pub error: String,
    /// The runtime that ran it, and the id it knows the container by.
    pub runtime: String,
    pub runtime_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountRecord {
    pub mountpoint: PathBuf,
    pub pid: i32,
}

impl ContainerRecord {
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

impl Store {
    /// The init layers `run --rm` containers of one image share (`container::init_layer::shared`):
    /// each named `<image id hex>-…`, so that collecting garbage removes those of images gone.
    pub fn shared_init_dir(&self) -> PathBuf {
        self.root.join("runtime").join("init")
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    pub fn container_upper(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("upper")
    }

    pub fn container_work(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("work")
    }

    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        let dir = self.root.join("containers");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let e = e?;
            let meta = e.path().join("meta.json");
            if let Some(mut rec) = records::read_optional::<ContainerRecord>(&meta)? {
                // The id names the directory and is cut to a 12-digit short id: it must be the
                // 64 hex digits the directory is called.
                if e.file_name() != rec.id.as_str() || Digest::from_hex(&rec.id).is_err() {
                    bail!("corrupt store file {}: it records container id {:?}", meta.display(), rec.id);
                }
                rec.mount = records::read_runtime(&e.path().join("mount.json"));
                rec.state = records::read_runtime(&e.path().join("state.json"));
                out.push(rec);
            }
        }
        out.sort_by(|a: &ContainerRecord, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }

    /// Finds a container by name, full id or unique id prefix.
    pub fn resolve_container(&self, input: &str) -> Result<ContainerRecord> {
        let all = self.containers()?;
        if let Some(c) = all.iter().find(|c| c.name == input || c.id == input) {
            return Ok(c.clone());
        }
        let matches: Vec<_> =
            all.into_iter().filter(|c| !input.is_empty() && c.id.starts_with(input)).collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().expect("one match")),
            0 => bail!("no such container: {input}"),
            n => bail!("container id prefix {input:?} is ambiguous: it matches {n} containers"),
        }
    }

    /// Creates a container of `image` with empty upper and work directories.
    pub fn create_container(
        &self,
        image: &Digest,
        image_name: &str,
        name: Option<&str>,
        config: Option<RunConfig>,
    ) -> Result<ContainerRecord> {
        self.create_container_with_id(new_container_id()?, image, image_name, name, config)
    }

    /// [`Store::create_container`] with an id from [`new_container_id`] (a config may name it).
    pub fn create_container_with_id(
        &self,
        id: String,
        image: &Digest,
        image_name: &str,
        name: Option<&str>,
        config: Option<RunConfig>,
    ) -> Result<ContainerRecord> {
        self.ensure_writable()?;
        anyhow::ensure!(Digest::from_hex(&id).is_ok(), "invalid container id {id:?}");
        self.check_layers(&self.image(image)?)?;
        let existing = self.containers()?;
        let name = match name {
            Some(n) => {
                let valid = !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                    && n.as_bytes()[0].is_ascii_alphanumeric();
                if !valid {
                    bail!("invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
                }
                if existing.iter().any(|c| c.name == n) {
                    bail!("the container name {n:?} is already in use");
                }
                n.to_string()
            }
            None => format!("strata_{}", &id[..8]),
        };
        let rec = ContainerRecord {
            id: id.clone(),
            name,
            image: image.clone(),
            image_name: image_name.to_string(),
            created: now_unix(),
            config,
            mount: None,
            state: None,
        };
        let stage = staging::tmp_path(&self.tmp_dir(), "container");
        for d in ["upper", "work"] {
            std::fs::create_dir_all(stage.join(d))
                .with_context(|| format!("cannot create {}", stage.display()))?;
        }
        std::fs::write(stage.join("meta.json"), serde_json::to_vec_pretty(&rec)?)?;
        if rec.config.as_ref().is_some_and(|c| c.auto_remove) {
            // A --rm container does not outlive its process: a crash may forget it whole (not
            // half: the rename is atomic, and its staging dir is cleared by the next writer), so
            // its creation costs no journal commit.
            std::fs::rename(&stage, self.container_dir(&id)).with_context(|| {
                format!("cannot move {} to {}", stage.display(), self.container_dir(&id).display())
            })?;
        } else {
            staging::rename_in(&stage, &self.container_dir(&id))?;
        }
        Ok(rec)
    }

    /// Records (or, with `None`, forgets) the daemon serving container `id`.
    pub fn set_container_mount(&self, id: &str, mount: Option<&MountRecord>) -> Result<()> {
        write_mount_record(&self.container_dir(id), mount)
    }

    /// Deletes a container without the store lock, as a `--rm` container's monitor does when its
    /// process ends (holding the container's lock): renamed into tmp/ (garbage a crash may leave
    /// there for the next writer), then deleted.
    pub fn remove_container_unlocked(root: &Path, id: &str) -> Result<()> {
        let doomed = Store::detach_container_unlocked(root, id)?;
        if let Err(e) = std::fs::remove_dir_all(&doomed) {
            tracing::warn!("cannot remove {}: {e} (the next writer clears it)", doomed.display());
        }
        Ok(())
    }

    /// The first half of [`Store::remove_container_unlocked`]: the container's directory renamed
    /// into `tmp/` (returned), where it is garbage for whoever deletes it (the caller, else the
    /// next writer).
    pub fn detach_container_unlocked(root: &Path, id: &str) -> Result<PathBuf> {
        let doomed = staging::tmp_path(&root.join("tmp"), "removed-container");
        std::fs::rename(root.join("containers").join(id), &doomed)
            .with_context(|| format!("cannot remove container {id}"))?;
        Ok(doomed)
    }

    /// Deletes a container and its writable layer (renamed into tmp first: never half-deleted).
    pub fn remove_container(&self, id: &str) -> Result<()> {
        let doomed = self.detach_container(id)?;
        std::fs::remove_dir_all(&doomed).with_context(|| format!("cannot remove {}", doomed.display()))
    }

    /// Takes a container out of the store for removal: its directory is renamed into `tmp/`
    /// (returned), where the caller may still read or consume it (a build step's upper) before
    /// deleting it; after a crash the next writer clears it.
    pub fn detach_container(&self, id: &str) -> Result<PathBuf> {
        self.ensure_writable()?;
        let doomed = staging::tmp_path(&self.tmp_dir(), "removed-container");
        std::fs::rename(self.container_dir(id), &doomed)
            .with_context(|| format!("cannot remove container {id}"))?;
        Ok(doomed)
    }
}

/// Writes (or, with `None`, removes) a runtime record of a container (`state.json`; the mount
/// record has [`write_mount_record`]): staged in the container's own directory and renamed, so it
/// needs no store lock, only the container's lock (see `container::lock`).
pub fn write_container_runtime<T: Serialize>(dir: &Path, name: &str, value: Option<&T>) -> Result<()> {
    let path = dir.join(name);
    match value {
        Some(v) => {
            let staged = dir.join(format!(".{name}.{}", std::process::id()));
            std::fs::write(&staged, serde_json::to_vec_pretty(v)?)
                .with_context(|| format!("cannot write {}", staged.display()))?;
            std::fs::rename(&staged, &path).with_context(|| format!("cannot write {}", path.display()))
        }
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        },
    }
}

/// `mount.json`, written at every mount and cleared at every unmount, keeps its inodes: it is
/// staged in one of two spare files (`.mount.json.spare0`, `.spare1`) left by earlier writes,
/// renamed into place (or exchanged with the record it replaces, which becomes a spare), and
/// cleared by a rename back to a spare name. On an ext4 without a journal every new inode scans
/// past those freed in the last minute, and a freed one is truncated and evicted at once: a
/// mount + umount pair made two and freed two (the unlink alone was 0.35 ms of `strata umount`).
/// A reader sees the whole old record, the whole new one, or none, as with a staged rename.
/// Every writer holds the container's lock, so the spares are never written by two at once.
pub fn write_mount_record(dir: &Path, value: Option<&MountRecord>) -> Result<()> {
    let path = &dir.join("mount.json");
    let spares = [dir.join(".mount.json.spare0"), dir.join(".mount.json.spare1")];
    let Some(v) = value else {
        let result = match spares.iter().find(|s| std::fs::symlink_metadata(s).is_err()) {
            Some(free) => std::fs::rename(path, free),
            None => std::fs::remove_file(path),
        };
        return match result {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        };
    };
    let bytes = serde_json::to_vec_pretty(v)?;
    let staged = spares.iter().find(|s| s.is_file()).unwrap_or(&spares[0]);
    let written = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(staged).and_then(
        |mut f| {
            use std::io::Write;
            f.write_all(&bytes)?;
            f.set_len(bytes.len() as u64)
        },
    );
    written.with_context(|| format!("cannot write {}", staged.display()))?;
    let wrote = |r: std::io::Result<()>| r.with_context(|| format!("cannot write {}", path.display()));
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        staged,
        rustix::fs::CWD,
        path,
        rustix::fs::RenameFlags::EXCHANGE,
    ) {
        Ok(()) => Ok(()),
        // No record to exchange with (the usual case), or a filesystem without RENAME_EXCHANGE.
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL) => wrote(std::fs::rename(staged, path)),
        Err(e) => wrote(Err(e.into())),
    }
}

/// Reads a container's runtime record; an absent or unreadable one is `None`.
pub fn read_container_runtime<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Option<T> {
    records::read_runtime(&dir.join(name))
}

/// A fresh container id: 64 random hex digits.
pub fn new_container_id() -> Result<String> {
    let mut buf = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(hex::encode(buf))
}

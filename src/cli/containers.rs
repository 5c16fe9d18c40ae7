//! Container commands: ps, rm, mount, umount, diff, commit (running them: `run.rs`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::images::{fixed_time, parse_tag};
use super::output::{self, Format, Row, human_size, time_ago};
use super::{Global, open_store};
use crate::container::lifecycle;
use crate::container::mounting::{self as containers, MountRequest};
use crate::container::status::{self, Status};
use crate::inspect::{change, container_diff};
use crate::layer::{Compression, PackOptions};
use crate::oci::Reference;
use crate::oci::image::HistoryEntry;
use crate::store::LockMode;
use crate::store::containers::ContainerRecord;
use crate::store::derive::Derivation;
use crate::store::usage::dir_size;

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows running and mounted ones).
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Go-template-like format or `json`. Fields: ID, Image, Command, CreatedSince, Status, State, Mountpoint, Size, Names.
    #[arg(long)]
    pub format: Option<String>,
    /// Filter: status=created|mounted|dead|…, name=PART, ancestor=IMAGE (or an image built on it).
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Show the SIZE column: the writable layer, and (virtual) with the image.
    #[arg(short, long)]
    pub size: bool,
}

const PS_FIELDS: &[&str] =
    &["ID", "Image", "Command", "CreatedSince", "Status", "State", "Mountpoint", "Size", "Names"];

/// Docker's STATUS column: `Up 3 minutes`, `Exited (0) 2 seconds ago`, `Created`, `Dead`; a
/// container mounted by `strata mount` (not running) shows its mount state.
fn status_text(c: &ContainerRecord, mount: &containers::MountState, now: i64) -> String {
    let since = |ms: i64| time_ago(ms / 1000, now);
    match status::status(c) {
        Status::Running => {
            let up = since(c.state.as_ref().map_or(0, |s| s.started_at));
            format!("Up {}", up.trim_end_matches(" ago"))
        }
        Status::Dead => "Dead".into(),
        _ if mount.is_mounted() => mount.to_string(),
        Status::Exited { code, finished_at } => format!("Exited ({code}) {}", since(finished_at)),
        Status::Created => "Created".into(),
    }
}

/// Docker's COMMAND column: the command line, quoted, cut to 20 characters.
fn command_text(c: &ContainerRecord, full: bool) -> String {
    let line = c.config.as_ref().map(|x| x.args.join(" ")).unwrap_or_default();
    let shown = if full { line } else { output::ellipsis(&line, 20) };
    format!("\"{shown}\"")
}

pub fn ps(g: &Global, a: PsArgs) -> Result<ExitCode> {
    let store = open_store(g, LockMode::Shared)?;
    let format = a.format.as_deref().map(|f| Format::parse(f, PS_FIELDS)).transpose()?;
    let filters = super::ps_filter::PsFilters::parse(&store, &a.filters)?;
    let now = output::now_unix();
    let mut rows = Vec::new();
    for c in store.containers()?.into_iter().rev() {
        let state = containers::mount_state(&c);
        let status_now = status::status(&c);
        let running = status_now == Status::Running;
        // A container `strata mount` serves but runs nothing shows as mounted.
        let word = if !running && state.is_mounted() { "mounted" } else { status_now.word() };
        let all = a.all || filters.wants_stopped();
        if (!all && !running && !state.is_mounted()) || !filters.keep(&store, &c, word) {
            continue;
        }
        let mut r = Row::new();
        r.insert("ID", if a.no_trunc { c.id.clone() } else { c.short_id().to_string() });
        r.insert("Image", super::ps_filter::image_column(&store, &c));
        r.insert("Command", command_text(&c, a.no_trunc));
        r.insert("CreatedSince", time_ago(c.created, now));
        r.insert("Status", status_text(&c, &state, now));
        r.insert("State", status::status(&c).word().to_string());
        r.insert(
            "Mountpoint",
            c.mount.as_ref().map_or(String::new(), |m| m.mountpoint.display().to_string()),
        );
        // A walk of the writable layer: only when shown (-s, or a format that may ask for it).
        if a.size || a.format.is_some() {
            let size = dir_size(&store.container_upper(&c.id));
            let virtual_size = store.image(&c.image).map(|i| store.image_size(&i)).unwrap_or(0) + size;
            r.insert(
                "Size",
                if a.size {
                    format!("{} (virtual {})", human_size(size), human_size(virtual_size))
                } else {
                    human_size(size)
                },
            );
        }
        r.insert("Names", c.name.clone());
        rows.push(r);
    }
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in &rows {
            writeln!(out, "{}", r["ID"])?;
        }
    } else if let Some(f) = format {
        f.render(&mut out, &rows, &|f| match f {
            "ID" => "CONTAINER ID".into(),
            "CreatedSince" => "CREATED".into(),
            other => other.to_uppercase(),
        })?;
    } else {
        let mut cols = vec![
            ("ID", "CONTAINER ID"),
            ("Image", "IMAGE"),
            ("Command", "COMMAND"),
            ("CreatedSince", "CREATED"),
            ("Status", "STATUS"),
            ("Mountpoint", "MOUNTPOINT"),
            ("Names", "NAMES"),
        ];
        // As Docker: the SIZE column (a walk of every writable layer) only with -s.
        if a.size {
            cols.push(("Size", "SIZE"));
        }
        output::print_table(&mut out, &cols, &rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct RmArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
    /// Kill a running container, unmount a mounted one, first.
    #[arg(short, long)]
    pub force: bool,
}

pub fn rm(g: &Global, a: RmArgs) -> Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for name in &a.containers {
        match remove_one(g, name, a.force) {
            Ok(()) => writeln!(std::io::stdout(), "{name}")?,
            Err(e) => {
                eprintln!("strata: error: {e:#}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

fn remove_one(g: &Global, name: &str, force: bool) -> Result<()> {
    let store = open_store(g, LockMode::Exclusive)?;
    let c = store.resolve_container(name)?;
    if force && status::status(&c) == Status::Running {
        // Killed, then waited for (its monitor unmounts and lets the daemon write everything)
        // without the store lock; then removed, unless it was a --rm one its monitor removed.
        lifecycle::force_kill(&store, &c);
        let dir = store.container_dir(&c.id);
        drop(store);
        if !lifecycle::wait_stopped(&dir, &c, std::time::Duration::from_secs(60)) {
            bail!("container {} did not stop after SIGKILL", c.name);
        }
        let store = open_store(g, LockMode::Exclusive)?;
        return match store.resolve_container(&c.id) {
            Ok(c) => lifecycle::remove(&store, &c, force),
            Err(_) if !dir.exists() => Ok(()),
            Err(e) => Err(e),
        };
    }
    let mounted = containers::current_mount_state(&store, &c.id).is_mounted();
    if force && mounted && !matches!(status::status(&c), Status::Running | Status::Dead) {
        // As `strata umount`: the wait for the daemon to write everything and exit holds no
        // store lock, so other commands go on meanwhile; then the container goes. (A Dead one's
        // process, which a killed monitor left, still holds the mount: `remove` stops it first.)
        containers::unmount_container_released(store, &c, false)?;
        let store = open_store(g, LockMode::Exclusive)?;
        let c = store.resolve_container(&c.id)?;
        return lifecycle::remove(&store, &c, force);
    }
    lifecycle::remove(&store, &c, force)
}

#[derive(Args)]
#[command(
    after_help = "Reproducible layers: the same changes always give the same layer digests (entries are \
    sorted, owners numeric, no atimes). For an identical image id too, fix the creation time with \
    SOURCE_DATE_EPOCH=SECONDS (it also clamps newer file mtimes to that time), or --created."
)]
pub struct CommitArgs {
    /// Pause a running container while committing (Docker's default; --pause=false does not).
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub pause: bool,
    pub container: String,
    /// Name for the new image.
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
    /// Commit message.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author (e.g. "Jane Doe <jane@example.com>").
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply a Dockerfile instruction to the config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME).
    #[arg(short, long = "change", value_name = "CHANGE")]
    pub changes: Vec<String>,
    /// Layer compression.
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd", "none"])]
    pub compression: String,
    /// Creation time, unix seconds (default: SOURCE_DATE_EPOCH, else now).
    #[arg(long, value_name = "SECONDS")]
    pub created: Option<i64>,
}

pub fn commit(g: &Global, a: CommitArgs) -> Result<ExitCode> {
    let tags: Vec<Reference> = a.reference.as_deref().map(parse_tag).transpose()?.into_iter().collect();
    // A fixed time also clamps newer file mtimes, so the layer is reproducible too.
    let fixed = fixed_time(a.created)?;
    let created = fixed.unwrap_or_else(output::now_unix);
    let compression = match a.compression.as_str() {
        "zstd" => Compression::Zstd,
        "none" => Compression::None,
        _ => Compression::Gzip,
    };
    let store = open_store(g, LockMode::Exclusive)?;
    let c = store.resolve_container(&a.container)?;
    let base = store.image(&c.image).with_context(|| format!("the image of container {}", c.name))?;
    // Check what can fail before packing the layer, so a failed commit leaves nothing behind.
    let mut scratch = store.base_config(&base)?;
    for change in &a.changes {
        crate::oci::changes::apply(&mut scratch, change)?;
    }
    containers::sync_mount(&store, &c)?;
    // A running container's processes stop, and changes through the mount wait, while the
    // upper is packed (resumed and thawed when these drop).
    let paused = if a.pause { crate::container::pause::pause(&store, &c)? } else { None };
    let frozen = containers::freeze_mount(&store, &c)?;
    let upper = store.container_upper(&c.id);
    let layer = store
        .ingest_upper(&upper, &PackOptions { compression, clamp_mtime: fixed })
        .with_context(|| format!("committing container {}", c.name))?;
    drop(frozen);
    drop(paused);
    let history = HistoryEntry {
        created,
        // Not the container's name: the same changes to the same image must give the same id.
        created_by: std::iter::once("strata commit".to_string())
            .chain(a.changes.iter().map(|c| format!("-c {c:?}")))
            .collect::<Vec<_>>()
            .join(" "),
        author: a.author,
        comment: a.message,
        empty_layer: false,
    };
    let id = store.derive_image(Derivation {
        base: Some(&base),
        layer,
        history,
        changes: &a.changes,
        tags: &tags,
    })?;
    writeln!(std::io::stdout(), "{id}")?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
#[command(
    after_help = "A container is mounted read-write (its writable layer over the image's layers); an image \
    is mounted read-only. The command returns once the mount answers; the daemon logs to the container's \
    mount.log. Unmount with strata umount."
)]
pub struct MountArgs {
    /// A container (read-write) or an image (read-only); none: list what is mounted.
    #[arg(value_name = "CONTAINER|IMAGE", requires = "mountpoint")]
    pub target: Option<String>,
    pub mountpoint: Option<PathBuf>,
    /// Mount options, comma-separated: ro (a container read-only), rw, allow_other.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// Serve in the foreground instead of as a daemon.
    #[arg(short, long)]
    pub foreground: bool,
}

pub fn mount(g: &Global, a: MountArgs) -> Result<ExitCode> {
    let (Some(target), Some(mountpoint)) = (a.target, a.mountpoint) else {
        return list_mounts(g);
    };
    let o = crate::container::mountpoint::parse_options(a.options.iter().map(String::as_str))?;
    let req = MountRequest {
        mountpoint,
        allow_other: o.allow_other,
        foreground: a.foreground,
        read_only: o.read_only,
    };
    let store = open_store(g, LockMode::Exclusive)?;
    match store.resolve_container(&target) {
        Ok(c) => containers::mount_container(store, &c, &req)?,
        Err(_) => {
            let image = store
                .resolve_image(&target)
                .with_context(|| format!("{target:?} is neither a container nor an image"))?;
            containers::mount_image(store, &image, &req)?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `strata mount` with no arguments (as `podman mount`): every mount strata serves, containers'
/// (read-write) and images' (read-only).
fn list_mounts(g: &Global) -> Result<ExitCode> {
    let store = open_store(g, LockMode::Shared)?;
    let mut rows = Vec::new();
    for c in store.containers()? {
        match containers::mount_state(&c) {
            containers::MountState::Mounted { mountpoint, .. } => {
                rows.push((c.name.clone(), "container", mountpoint))
            }
            containers::MountState::Dead { mountpoint } => {
                rows.push((c.name.clone(), "container (dead)", mountpoint))
            }
            containers::MountState::Unmounted => {}
        }
    }
    for m in store.image_mounts()? {
        if !crate::fs::mount::is_mounted(&m.mountpoint).unwrap_or(false) {
            continue;
        }
        let name = store.tags_of(&m.image)?.into_iter().next().map_or_else(
            || m.image.short().to_string(),
            |t| crate::oci::Reference::parse(&t).map(|r| r.familiar()).unwrap_or(t),
        );
        rows.push((name, "image", m.mountpoint));
    }
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:width$}   {:16}   MOUNTPOINT", "NAME", "KIND")?;
    for (name, kind, at) in rows {
        writeln!(out, "{name:width$}   {kind:16}   {}", at.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct UmountArgs {
    /// A mountpoint, a mounted container, or a mounted image.
    #[arg(value_name = "MOUNTPOINT|CONTAINER|IMAGE")]
    pub target: String,
    /// Detach a busy mount now (as fusermount3 -z); it ends when its last user lets go.
    #[arg(short, long)]
    pub lazy: bool,
}

pub fn umount(g: &Global, a: UmountArgs) -> Result<ExitCode> {
    use crate::container::umount::{self, Target};
    let store = open_store(g, LockMode::Exclusive)?;
    match umount::resolve(&store, &a.target)? {
        Target::Container(c) if status::status(&c) == Status::Running => {
            bail!("container {} is running: its mount ends when it stops (strata stop {})", c.name, c.name)
        }
        Target::Container(c) => containers::unmount_container_released(store, &c, a.lazy)?,
        Target::Image(m) => containers::unmount_image_released(store, &m, a.lazy)?,
        Target::Path(path) => {
            drop(store);
            umount::detach(&path, a.lazy, "the mount")?
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
#[command(after_help = super::inspect::DIFF_HELP)]
pub struct DiffArgs {
    /// A container (its writable layer against its image), or two images (the second against the first).
    #[arg(required = true, num_args = 1..=2, value_name = "CONTAINER | IMAGE IMAGE")]
    pub targets: Vec<String>,
    /// `json`: one object per change.
    #[arg(long)]
    pub format: Option<String>,
}

pub fn diff(g: &Global, a: DiffArgs) -> Result<ExitCode> {
    if let [x, y] = &a.targets[..] {
        return super::inspect::diff_images(g, x, y, a.format.as_deref());
    }
    let store = open_store(g, LockMode::Shared)?;
    let c = store.resolve_container(&a.targets[0])?;
    let image = store.image(&c.image)?;
    let lower = crate::union::Stack::new(&containers::image_lowers(&store, &image), None)
        .with_context(|| format!("opening the layers of {}", c.image_name))?;
    let changes = container_diff::upper_changes(&store.container_upper(&c.id), &lower)?;
    let mut out = std::io::stdout().lock();
    match a.format.as_deref() {
        None => change::print(&mut out, &changes)?,
        Some("json") => change::print_json(&mut out, &changes)?,
        Some(f) => bail!("invalid --format {f:?}: only json is supported"),
    }
    Ok(ExitCode::SUCCESS)
}

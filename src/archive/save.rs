//! `save`: resolve what the user typed, then write one of the three layouts.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::shown::ShownSink;
use super::sink::{DirSink, Sink, TarSink};
use super::{SaveFormat, SaveTarget, docker_out, oci_out};
use crate::oci::Reference;
use crate::progress::Progress;
use crate::store::{ImageRecord, Store};

/// One image to write and the tags the user named it by (none when named by id or digest,
/// as `docker save` does).
pub struct Selected {
    pub record: ImageRecord,
    pub tags: Vec<Reference>,
}

/// Writes `images` (names, ids or digests as typed) from `store` to `out` in `format`.
pub fn save(store: &Store, images: &[String], format: SaveFormat, out: SaveTarget) -> Result<()> {
    save_with(store, images, format, out, &Progress::hidden())
}

/// [`save`], showing each layer written on `progress`.
pub fn save_with(
    store: &Store,
    images: &[String],
    format: SaveFormat,
    out: SaveTarget,
    progress: &Progress,
) -> Result<()> {
    let selected = select(store, images)?;
    for dir in partial_dirs(&out) {
        remove_partials(&dir, Owner::Gone);
    }
    match (format, out) {
        (SaveFormat::OciDir, SaveTarget::Dir(dir)) => {
            let existing = oci_out::existing_index(&dir)?;
            let mut sink = DirSink::new(&dir)?;
            let mut sink = ShownSink { inner: &mut sink, progress };
            oci_out::write(store, &selected, &mut sink, existing)
                .with_context(|| format!("cannot save to {}", dir.display()))
        }
        (SaveFormat::OciDir, _) => bail!("the oci-dir format writes a directory: give one with -o DIR"),
        (_, SaveTarget::Dir(dir)) => {
            bail!("{} is a directory; this format writes a single file (use --format oci-dir)", dir.display())
        }
        (format, SaveTarget::Writer(w)) => {
            let mut sink = TarSink::new(BufWriter::with_capacity(1 << 20, w));
            write_archive(store, &selected, format, &mut ShownSink { inner: &mut sink, progress })?;
            sink.finish()?.flush().context("cannot write the archive")
        }
        (format, SaveTarget::File(path)) => save_file(store, &selected, format, &path, progress),
    }
}

/// Writes beside `path` and renames in on success, so a failed save leaves no half archive.
fn save_file(
    store: &Store,
    selected: &[Selected],
    format: SaveFormat,
    path: &Path,
    progress: &Progress,
) -> Result<()> {
    let staged = partial_path(path)?;
    let result = (|| {
        let file = File::create(&staged).with_context(|| format!("cannot create {}", staged.display()))?;
        let mut sink = TarSink::new(BufWriter::with_capacity(1 << 20, file));
        write_archive(store, selected, format, &mut ShownSink { inner: &mut sink, progress })?;
        let file = sink.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all().with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::rename(&staged, path).with_context(|| format!("cannot write {}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    result
}

fn write_archive(
    store: &Store,
    selected: &[Selected],
    format: SaveFormat,
    sink: &mut dyn Sink,
) -> Result<()> {
    match format {
        SaveFormat::DockerArchive => docker_out::write(store, selected, sink),
        _ => oci_out::write(store, selected, sink, Vec::new()),
    }
}

/// Resolves names, merging several names of one image into one entry (first-named order).
fn select(store: &Store, typed: &[String]) -> Result<Vec<Selected>> {
    anyhow::ensure!(!typed.is_empty(), "no image to save");
    let tags = store.tags()?;
    let mut out: Vec<Selected> = Vec::new();
    for t in typed {
        let record = store.resolve_image(t)?;
        let tag = Reference::parse_with_default_tag(t)
            .ok()
            .filter(|r| r.digest.is_none() && tags.get(&r.to_string()) == Some(&record.id));
        match out.iter_mut().find(|s| s.record.id == record.id) {
            Some(s) => s.tags.extend(tag.filter(|r| !s.tags.contains(r))),
            None => out.push(Selected { record, tags: tag.into_iter().collect() }),
        }
    }
    Ok(out)
}

/// The hidden file a save writes before renaming it in: `.NAME.strata-PID` beside `path`.
pub fn partial_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().with_context(|| format!("{} is not a file name", path.display()))?;
    Ok(path.with_file_name(format!(".{}{PARTIAL_MARK}{}", name.to_string_lossy(), std::process::id())))
}

const PARTIAL_MARK: &str = ".strata-";

/// The directories a save to `target` writes partial files in (an OCI layout: its root and blobs).
pub fn partial_dirs(target: &SaveTarget) -> Vec<PathBuf> {
    match target {
        SaveTarget::File(path) => {
            vec![path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf()]
        }
        SaveTarget::Dir(dir) => vec![dir.clone(), dir.join("blobs/sha256")],
        SaveTarget::Writer(_) => Vec::new(),
    }
}

/// Whose partial files to remove.
#[derive(Clone, Copy, Debug)]
pub enum Owner {
    /// Those of saves whose process no longer exists (killed, crashed).
    Gone,
    /// This process's own (it is being interrupted).
    Me,
}

/// Removes partial files (`.NAME.strata-PID`) in `dir` that `owner` says are garbage. Best effort:
/// a file that cannot be removed stays for the next save.
pub fn remove_partials(dir: &Path, owner: Owner) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let me = std::process::id();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = partial_pid(&name.to_string_lossy()) else { continue };
        let remove = match owner {
            Owner::Me => pid == me,
            Owner::Gone => pid != me && !process_exists(pid),
        };
        if remove && e.file_type().is_ok_and(|t| t.is_file()) {
            tracing::info!("removing {}, left by an interrupted save (pid {pid})", e.path().display());
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// `.NAME.strata-PID` → PID.
fn partial_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (stem, pid) = rest.rsplit_once(PARTIAL_MARK)?;
    if stem.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

fn process_exists(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else { return false };
    // Signal 0 checks existence only; EPERM means it exists under another user.
    !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None), Err(nix::errno::Errno::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::partial_pid;

    #[test]
    fn partial_names() {
        assert_eq!(partial_pid(".out.tar.strata-123"), Some(123));
        assert_eq!(partial_pid(".a.strata-b.strata-7"), Some(7));
        for other in ["out.tar.strata-123", ".strata-123", ".out.tar.strata-", ".out.strata-12x", ".x"] {
            assert_eq!(partial_pid(other), None, "{other}");
        }
    }
}

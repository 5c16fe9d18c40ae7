//! `save`: resolve what the user typed, then write one of the three layouts.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::sink::{DirSink, Sink, TarSink};
use super::{SaveFormat, SaveTarget, docker_out, oci_out};
use crate::oci::Reference;
use crate::store::{ImageRecord, Store};

/// One image to write and the tags the user named it by (none when named by id or digest,
/// as `docker save` does).
pub struct Selected {
    pub record: ImageRecord,
    pub tags: Vec<Reference>,
}

/// Writes `images` (names, ids or digests as typed) from `store` to `out` in `format`.
pub fn save(store: &Store, images: &[String], format: SaveFormat, out: SaveTarget) -> Result<()> {
    let selected = select(store, images)?;
    match (format, out) {
        (SaveFormat::OciDir, SaveTarget::Dir(dir)) => {
            let existing = oci_out::existing_index(&dir)?;
            let mut sink = DirSink::new(&dir)?;
            oci_out::write(store, &selected, &mut sink, existing)
                .with_context(|| format!("cannot save to {}", dir.display()))
        }
        (SaveFormat::OciDir, _) => bail!("the oci-dir format writes a directory: give one with -o DIR"),
        (_, SaveTarget::Dir(dir)) => {
            bail!("{} is a directory; this format writes a single file (use --format oci-dir)", dir.display())
        }
        (format, SaveTarget::Writer(w)) => {
            let mut sink = TarSink::new(BufWriter::with_capacity(1 << 20, w));
            write_archive(store, &selected, format, &mut sink)?;
            sink.finish()?.flush().context("cannot write the archive")
        }
        (format, SaveTarget::File(path)) => save_file(store, &selected, format, &path),
    }
}

/// Writes beside `path` and renames in on success, so a failed save leaves no half archive.
fn save_file(store: &Store, selected: &[Selected], format: SaveFormat, path: &Path) -> Result<()> {
    let name = path.file_name().with_context(|| format!("{} is not a file name", path.display()))?;
    let staged = path.with_file_name(format!(".{}.strata-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let file = File::create(&staged).with_context(|| format!("cannot create {}", staged.display()))?;
        let mut sink = TarSink::new(BufWriter::with_capacity(1 << 20, file));
        write_archive(store, selected, format, &mut sink)?;
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

//! Work a killed writer may leave half done, finished by the next writer.
//!
//! Both live in `tmp/` (a crash leaves nothing else outside it), and the next writer reads them
//! before it clears `tmp/` of the rest.
//!
//! - `gc-pending`: written (durably) before a writer first puts something outside `tmp/` that
//!   may end up unreferenced: a staged blob or layer about to be renamed in, an image being
//!   removed, a record whose old manifest is replaced. The writer collects garbage when its handle
//!   is dropped and removes the marker; after a kill, the next writer finds it and collects.
//! - `removing.json`: `rmi`'s intent (image id and tags), written before the image record goes.
//!   The next writer finishes the removal; a retried `rmi` of the same image reports it done.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{Store, records, staging};
use crate::oci::{Digest, Reference};

pub(crate) const GC_MARKER: &str = "gc-pending";
pub(crate) const REMOVING: &str = "removing.json";

/// An image removal in progress.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Removing {
    pub id: Digest,
    /// Full tag names that pointed at it.
    pub tags: Vec<String>,
    pub repo_digests: Vec<String>,
}

impl Removing {
    /// True when `input` (what a user gave `rmi`) names this image.
    pub fn matches(&self, input: &str) -> bool {
        let hex = input.strip_prefix("sha256:").unwrap_or(input);
        if hex.len() >= 4 && self.id.hex().starts_with(hex) {
            return true;
        }
        Reference::parse_with_default_tag(input).is_ok_and(|r| self.tags.contains(&r.to_string()))
    }
}

impl Store {
    pub(crate) fn gc_marker(&self) -> PathBuf {
        self.tmp_dir().join(GC_MARKER)
    }

    pub(crate) fn removing_path(&self) -> PathBuf {
        self.tmp_dir().join(REMOVING)
    }

    /// Notes, durably and once per handle, that this writer may leave unreferenced content.
    pub(crate) fn expect_garbage(&self) -> Result<()> {
        self.ensure_writable()?;
        if self.gc_marked.load(Ordering::Relaxed) {
            return Ok(());
        }
        staging::write_atomic(&self.tmp_dir(), &self.gc_marker(), b"")?;
        self.gc_marked.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Records that `image` is being removed (before anything of it goes).
    pub(crate) fn begin_removal(&self, r: &Removing) -> Result<()> {
        self.expect_garbage()?;
        records::write(&self.tmp_dir(), &self.removing_path(), r)
    }

    pub(crate) fn end_removal(&self) -> Result<()> {
        remove_if_present(&self.removing_path())
    }

    /// Finishes what a killed writer left (called by a writer on open, lock held). Returns the
    /// removal it finished, if any.
    pub(crate) fn finish_pending(&self) -> Result<Option<Removing>> {
        let removing: Option<Removing> = records::read_optional(&self.removing_path())?;
        if let Some(r) = &removing {
            self.gc_marked.store(true, Ordering::Relaxed);
            self.remove_image_and_tags(r)?;
            self.end_removal()?;
        }
        if removing.is_some() || self.gc_marker().exists() {
            self.gc_marked.store(true, Ordering::Relaxed);
            self.collect_garbage().context("collecting what an interrupted command left")?;
        }
        Ok(removing)
    }

    /// The tags (each only if it still points at the image), then the image record: a kill in
    /// between leaves an untagged image for the intent's replay, never a tag naming nothing.
    pub(crate) fn remove_image_and_tags(&self, r: &Removing) -> Result<()> {
        let mut all = self.tags()?;
        let before = all.len();
        all.retain(|t, id| !(id == &r.id && r.tags.contains(t)));
        if all.len() != before {
            self.write_tags(&all)?;
        }
        if self.has_image(&r.id) {
            self.remove_image_record(&r.id)?;
        }
        Ok(())
    }

    pub(crate) fn clear_garbage_mark(&self) -> Result<()> {
        remove_if_present(&self.gc_marker())?;
        self.gc_marked.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// On drop of a writer that marked: collect, then clear the mark (kept if collecting fails,
    /// so the next writer tries again).
    pub(crate) fn collect_marked(&self) {
        if !self.gc_marked.load(Ordering::Relaxed) || !self.is_writable() {
            return;
        }
        match self.collect_garbage() {
            Ok(_) => {}
            Err(e) => tracing::warn!("collecting garbage: {e:#} (the next writer retries)"),
        }
    }
}

fn remove_if_present(p: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", p.display()))
        }
        _ => Ok(()),
    }
}

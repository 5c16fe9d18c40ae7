//! `layers/<diff_id hex>/{fs,meta}`: unpacked layer trees, shared by every image that uses them.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::blobs::Expected;
use super::{Store, records, staging};
use crate::oci::Digest;

/// `layers/<diff_id>/meta`: facts about an unpacked layer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerMeta {
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    /// Bytes of file content in the layer.
    pub data_bytes: u64,
    pub entries: u64,
    /// Unix seconds when the layer was stored.
    pub stored: i64,
    /// How it was made: "import", "load", "pull", "commit".
    pub origin: String,
    /// What the unpacked tree held when stored, so `system check` can tell a damaged tree
    /// (absent in layers stored by older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<TreeSummary>,
}

/// Names in a layer tree (not counting its root) and bytes of its regular files (hard links once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeSummary {
    pub names: u64,
    pub bytes: u64,
}

impl TreeSummary {
    /// Walks `dir` without following symlinks.
    pub fn of(dir: &std::path::Path) -> Result<TreeSummary> {
        TreeSummary::walk(dir, |_, _| {})
    }

    /// `of`, showing each entry (its path and metadata) to `visit` on the way.
    pub fn walk(
        dir: &std::path::Path,
        mut visit: impl FnMut(&std::path::Path, &std::fs::Metadata),
    ) -> Result<TreeSummary> {
        use std::os::unix::fs::MetadataExt;
        let mut seen = std::collections::HashSet::new();
        let mut sum = TreeSummary { names: 0, bytes: 0 };
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
                let e = e.with_context(|| format!("cannot read {}", d.display()))?;
                let m = e.metadata().with_context(|| format!("cannot stat {}", e.path().display()))?;
                sum.names += 1;
                visit(&e.path(), &m);
                if m.is_dir() {
                    todo.push(e.path());
                } else if m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))) {
                    sum.bytes += m.len();
                }
            }
        }
        Ok(sum)
    }
}

/// What a caller knows about a layer blob before reading it (from a manifest).
#[derive(Clone, Debug, Default)]
pub struct LayerExpectation {
    pub blob: Option<Expected>,
    pub diff_id: Option<Digest>,
    pub media_type: Option<String>,
}

impl Store {
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    /// The unpacked tree of a layer (what the union mount stacks).
    pub fn layer_fs(&self, diff_id: &Digest) -> PathBuf {
        self.layer_dir(diff_id).join("fs")
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).join("meta").is_file()
    }

    pub fn layer_meta(&self, diff_id: &Digest) -> Result<LayerMeta> {
        let p = self.layer_dir(diff_id).join("meta");
        records::read(&p, || format!("layer {diff_id} is missing from the store"))
    }

    pub fn list_layers(&self) -> Result<Vec<Digest>> {
        super::digest_names(&self.root.join("layers"), "")
    }

    /// Removes a layer directory (garbage collection only): renamed into tmp first so a crash midway
    /// never leaves a half-deleted layer under `layers/`.
    pub(crate) fn remove_layer(&self, diff_id: &Digest) -> Result<()> {
        let dir = self.layer_dir(diff_id);
        if !dir.exists() {
            return Ok(());
        }
        let doomed = staging::tmp_path(&self.tmp_dir(), "removed-layer");
        std::fs::rename(&dir, &doomed).with_context(|| format!("cannot remove layer {diff_id}"))?;
        std::fs::remove_dir_all(&doomed).with_context(|| format!("cannot remove {}", doomed.display()))
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

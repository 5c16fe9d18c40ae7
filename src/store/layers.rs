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

//! `layers/<diff_id hex>/{fs,meta}`: unpacked layer trees, shared by every image that uses them.

use std::io::{BufWriter, Read};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::blobs::{Expected, verify};
use super::{LayerRef, Store, staging};
use crate::layer::unpack::unpack;
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
        let bytes =
            std::fs::read(&p).with_context(|| format!("layer {diff_id} is missing from the store"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("corrupt layer metadata {}", p.display()))
    }

    pub fn list_layers(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("layers");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            if let Ok(d) = Digest::from_hex(&e?.file_name().to_string_lossy()) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Streams one layer blob (plain tar, gzip or zstd) into the store: in one pass the raw bytes go to
    /// `blobs/`, the tar is unpacked into a staged tree, and both digests are computed; then both are
    /// checked against `expect` and renamed in. On any error nothing new is visible in the store.
    pub fn ingest_layer(
        &self,
        input: impl Read,
        expect: &LayerExpectation,
        origin: &str,
    ) -> Result<LayerRef> {
        self.ensure_writable()?;
        let stage = staging::tmp_path(&self.tmp_dir(), "layer");
        let fs = stage.join("fs");
        std::fs::create_dir_all(&fs).with_context(|| format!("cannot create {}", fs.display()))?;
        let result = self.ingest_staged(input, expect, origin, &stage);
        if stage.exists() {
            let _ = std::fs::remove_dir_all(&stage);
        }
        result
    }

    fn ingest_staged(
        &self,
        input: impl Read,
        expect: &LayerExpectation,
        origin: &str,
        stage: &std::path::Path,
    ) -> Result<LayerRef> {
        let mut blob = BufWriter::with_capacity(1 << 20, self.stage_blob()?);
        let limit = expect.blob.as_ref().and_then(|e| e.size).map_or(u64::MAX, |s| s + 1);
        let unpacked = unpack(input.take(limit), &stage.join("fs"), Some(&mut blob))?;
        let blob = blob.into_inner().map_err(|e| e.into_error())?;
        let check = verify(&unpacked.blob, unpacked.blob_size, expect.blob.as_ref()).and_then(|_| {
            match &expect.diff_id {
                Some(want) if *want != unpacked.diff_id => {
                    bail!(
                        "layer diff_id mismatch: the config says {want}, the uncompressed tar hashes to {}",
                        unpacked.diff_id
                    )
                }
                _ => Ok(()),
            }
        });
        check?;
        let dest = self.layer_dir(&unpacked.diff_id);
        if !self.has_layer(&unpacked.diff_id) {
            let meta = LayerMeta {
                diff_id: unpacked.diff_id.clone(),
                tar_size: unpacked.tar_size,
                data_bytes: unpacked.data_bytes,
                entries: unpacked.entries,
                stored: now_unix(),
                origin: origin.to_string(),
            };
            std::fs::write(stage.join("meta"), serde_json::to_vec_pretty(&meta)?)?;
            staging::syncfs(stage)?;
            if dest.exists() {
                // A directory without meta is an incomplete leftover of an older version: replace it.
                std::fs::remove_dir_all(&dest)
                    .with_context(|| format!("cannot remove {}", dest.display()))?;
            }
            staging::rename_in(stage, &dest)?;
        }
        self.commit_blob(blob, &unpacked.blob)?;
        let media_type =
            expect.media_type.clone().unwrap_or_else(|| unpacked.compression.media_type().to_string());
        Ok(LayerRef {
            diff_id: unpacked.diff_id,
            blob: unpacked.blob,
            blob_size: unpacked.blob_size,
            media_type,
        })
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

//! Layers into the store: a blob stream (load, pull, import) or a container's upper dir (commit).
//! Everything is staged in `tmp/` and renamed in last, so on any error the store is as it was.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::pack::{PackOptions, pack_dir};
use super::unpack::{Unpacked, unpack, unpack_taking_files};
use crate::store::blobs::{StagedBlob, read_limit, verify};
use crate::store::layers::{LayerExpectation, LayerMeta, TreeSummary, now_unix};
use crate::store::{LayerRef, Store, staging};

/// A staged layer directory (`tmp/layer-…/{fs,meta}`), removed on drop unless renamed in.
struct StagedLayer(std::path::PathBuf);

impl StagedLayer {
    fn new(store: &Store) -> Result<StagedLayer> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        store.expect_garbage()?;
        let dir = staging::tmp_path(&store.tmp_dir(), "layer");
        // `layers/<id>` is private like the store; `fs` is the layer's root, 0755 until the tar
        // says otherwise (never what the umask makes of it).
        let made = std::fs::DirBuilder::new().mode(0o700).create(&dir).and_then(|_| {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            std::fs::DirBuilder::new().mode(0o755).create(dir.join("fs"))?;
            std::fs::set_permissions(dir.join("fs"), std::fs::Permissions::from_mode(0o755))
        });
        let staged = StagedLayer(dir);
        made.with_context(|| format!("cannot create {}", staged.0.display()))?;
        Ok(staged)
    }

    fn fs(&self) -> std::path::PathBuf {
        self.0.join("fs")
    }
}

impl Drop for StagedLayer {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The record of the staged tree's directories (`union::layer_names`), which lets a mount index a
/// directory merged from many layers without reading it in each: made once here, where the
/// tree is complete and no one else sees it. Without one the layer is read from disk as before,
/// so a failure only costs that (and leaves no partial record).
fn write_record(fs: &Path) {
    if let Err(e) = crate::union::layer_names::write_beside(fs) {
        tracing::warn!("no record of the directories of layer tree {}: {e}", fs.display());
        if let Some(p) = crate::union::layer_names::path_for(fs) {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Store {
    /// Streams one layer blob (plain tar, gzip or zstd) into the store: in one pass the raw bytes go to
    /// `blobs/`, the tar is unpacked into a staged tree, and both digests are computed; then both are
    /// checked against `expect` and renamed in.
    pub fn ingest_layer(
        &self,
        input: impl Read,
        expect: &LayerExpectation,
        origin: &str,
    ) -> Result<LayerRef> {
        self.ensure_writable()?;
        let stage = StagedLayer::new(self)?;
        let mut blob = BufWriter::with_capacity(1 << 20, self.stage_blob()?);
        let unpacked = unpack(input.take(read_limit(expect.blob.as_ref())), &stage.fs(), Some(&mut blob))?;
        self.note_skipped(unpacked.skipped);
        let blob = blob.into_inner().map_err(|e| e.into_error())?;
        verify(&unpacked.blob, unpacked.blob_size, expect.blob.as_ref())?;
        if let Some(want) = &expect.diff_id {
            if *want != unpacked.diff_id {
                bail!(
                    "layer diff_id mismatch: the config says {want}, the uncompressed tar hashes to {}",
                    unpacked.diff_id
                );
            }
        }
        let media_type =
            expect.media_type.clone().unwrap_or_else(|| unpacked.compression.media_type().to_string());
        self.install_layer(stage, blob, &unpacked, media_type, origin)
    }

    /// Packs an upper directory (OCI or overlay whiteouts) into a new layer: a deterministic tar,
    /// compressed as asked, stored as a blob and unpacked as a layer tree. Cost follows the size of
    /// the upper dir, not of the image.
    pub fn ingest_upper(&self, upper: &Path, opts: &PackOptions) -> Result<LayerRef> {
        self.ingest_upper_with(upper, opts, false)
    }

    /// [`Store::ingest_upper`] of an upper dir the caller discards afterwards (a build step's,
    /// whose container was already moved to `tmp/`): its files are moved into the layer tree
    /// instead of written a second time, so the step costs what it changed. The layer is exactly
    /// what `ingest_upper` makes; the upper is left incomplete.
    pub fn ingest_discarded_upper(&self, upper: &Path, opts: &PackOptions) -> Result<LayerRef> {
        self.ingest_upper_with(upper, opts, true)
    }

    fn ingest_upper_with(&self, upper: &Path, opts: &PackOptions, take_files: bool) -> Result<LayerRef> {
        self.ensure_writable()?;
        let mut staged = self.stage_blob()?;
        let packed = pack_dir(upper, BufWriter::with_capacity(1 << 20, &mut staged), opts)
            .with_context(|| format!("packing {}", upper.display()))?;
        let stage = StagedLayer::new(self)?;
        let reread =
            File::open(&staged.path).with_context(|| format!("cannot reopen {}", staged.path.display()))?;
        let unpacked = if take_files && !self.has_layer(&packed.diff_id) {
            unpack_taking_files(reread, &stage.fs(), upper)?
        } else {
            unpack(reread, &stage.fs(), None)?
        };
        if unpacked.diff_id != packed.diff_id || unpacked.blob != packed.blob {
            bail!(
                "internal error: the packed layer does not read back the same (diff_id {} vs {})",
                packed.diff_id,
                unpacked.diff_id
            );
        }
        if take_files {
            tracing::info!(
                "layer {}: {} of {} entries moved from {}, not written again",
                unpacked.diff_id,
                unpacked.moved_files,
                unpacked.entries,
                upper.display()
            );
        }
        self.install_layer(stage, staged, &unpacked, packed.compression.media_type().to_string(), "commit")
    }

    /// Renames a staged, verified layer and its blob into place (keeping an existing identical layer).
    fn install_layer(
        &self,
        stage: StagedLayer,
        blob: StagedBlob,
        unpacked: &Unpacked,
        media_type: String,
        origin: &str,
    ) -> Result<LayerRef> {
        if !self.has_layer(&unpacked.diff_id) {
            let meta = LayerMeta {
                diff_id: unpacked.diff_id.clone(),
                tar_size: unpacked.tar_size,
                data_bytes: unpacked.data_bytes,
                entries: unpacked.entries,
                stored: now_unix(),
                origin: origin.to_string(),
                tree: Some(TreeSummary::of(&stage.fs())?),
            };
            std::fs::write(stage.0.join("meta"), serde_json::to_vec_pretty(&meta)?)?;
            write_record(&stage.fs());
            staging::syncfs(&stage.0)?;
            let dest = self.layer_dir(&unpacked.diff_id);
            if dest.exists() {
                // A directory without meta is an incomplete leftover of an older version: replace it.
                std::fs::remove_dir_all(&dest)
                    .with_context(|| format!("cannot remove {}", dest.display()))?;
            }
            staging::rename_in(&stage.0, &dest)?;
        }
        self.commit_blob(blob, &unpacked.blob)?;
        Ok(LayerRef {
            diff_id: unpacked.diff_id.clone(),
            blob: unpacked.blob.clone(),
            blob_size: unpacked.blob_size,
            media_type,
        })
    }
}

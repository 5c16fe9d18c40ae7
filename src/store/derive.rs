//! New images made here (import, commit): an optional base image plus one new layer.

use anyhow::{Context, Result, bail};

use super::{ImageRecord, LayerRef, Store};
use crate::oci::image::{
    Descriptor, HistoryEntry, build_manifest, config_bytes, config_diff_ids, extend_config,
};
use crate::oci::{Digest, Reference, changes, media};

/// What the new image's config gets besides the layer.
pub struct Derivation<'a> {
    pub base: Option<&'a ImageRecord>,
    pub layer: LayerRef,
    pub history: HistoryEntry,
    /// Docker `--change` instructions, applied in order.
    pub changes: &'a [String],
    pub tags: &'a [Reference],
}

impl Store {
    /// Writes config and OCI manifest blobs and the image record; returns the new image id.
    pub fn derive_image(&self, d: Derivation<'_>) -> Result<Digest> {
        let base_config = d.base.map(|b| self.base_config(b)).transpose()?;
        let mut config = extend_config(base_config.as_ref(), &d.layer.diff_id, &d.history)?;
        for c in d.changes {
            changes::apply(&mut config, c)?;
        }
        let config_bytes = config_bytes(&config);
        let id = self.put_blob_bytes(&config_bytes)?;
        let mut layers = d.base.map(|b| b.layers.clone()).unwrap_or_default();
        layers.push(d.layer);
        let config_desc = Descriptor::new(media::OCI_CONFIG, &id, config_bytes.len() as u64);
        let layer_descs: Vec<_> = layers
            .iter()
            .map(|l| Descriptor::new(&oci_layer_type(&l.media_type), &l.blob, l.blob_size))
            .collect();
        let manifest = self.put_blob_bytes(&build_manifest(&config_desc, &layer_descs))?;
        let record = ImageRecord {
            id: id.clone(),
            manifest,
            manifest_media_type: media::OCI_MANIFEST.to_string(),
            layers,
            repo_digests: Vec::new(),
            added: super::layers::now_unix(),
            parent: d.base.map(|b| b.id.clone()),
        };
        self.add_image(&record, d.tags)?;
        Ok(id)
    }

    /// The config of an image that a new one will extend, checked first: every layer present and
    /// the config's diff_ids the image's layers. Commit calls this before packing anything.
    pub fn base_config(&self, base: &ImageRecord) -> Result<serde_json::Value> {
        self.check_layers(base)?;
        let config = self.image_config(base)?;
        let what = || format!("image {}", base.id.short());
        let ids = config_diff_ids(&config).with_context(what)?;
        if ids.len() != base.layers.len() || ids.iter().zip(&base.layers).any(|(i, l)| *i != l.diff_id) {
            let (n, m) = (ids.len(), base.layers.len());
            bail!("{} is inconsistent: its config's {n} diff_ids do not match its {m} layers", what());
        }
        Ok(config)
    }
}

/// The OCI media type for a layer recorded with a Docker (or OCI) one.
pub fn oci_layer_type(media_type: &str) -> String {
    match media_type {
        media::DOCKER_LAYER_GZIP => media::OCI_LAYER_GZIP.to_string(),
        media::DOCKER_LAYER => media::OCI_LAYER.to_string(),
        other => other.to_string(),
    }
}

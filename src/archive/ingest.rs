//! What every loader shares: layers into the store (skipping ones already there), the synthesised
//! manifest, and the all-or-nothing finish (records and tags only once everything is stored;
//! anything new removed again when something failed).

use std::collections::HashSet;

use anyhow::{Context, Result};

use super::members::Members;
use crate::layer::compression::{Compression, read_prefix};
use crate::oci::image::{Descriptor, build_manifest};
use crate::oci::{Digest, Reference, media};
use crate::store::blobs::Expected;
use crate::store::layers::{LayerExpectation, now_unix};
use crate::store::{ImageRecord, LayerRef, Store};

/// An image whose blobs and layers are stored, waiting for its record and tags.
pub struct Pending {
    pub record: ImageRecord,
    pub tags: Vec<Reference>,
}

impl Pending {
    pub fn new(id: Digest, manifest: Digest, manifest_media_type: &str, layers: Vec<LayerRef>) -> Self {
        let record = ImageRecord {
            id,
            manifest,
            manifest_media_type: manifest_media_type.to_string(),
            layers,
            repo_digests: Vec::new(),
            added: now_unix(),
            parent: None,
        };
        Pending { record, tags: Vec::new() }
    }
}

/// The layers and blobs present before a load: whatever is not in here was added by it.
pub struct Snapshot {
    layers: HashSet<Digest>,
    blobs: HashSet<Digest>,
}

impl Snapshot {
    pub fn take(store: &Store) -> Result<Snapshot> {
        Ok(Snapshot {
            layers: store.list_layers()?.into_iter().collect(),
            blobs: store.list_blobs()?.into_iter().collect(),
        })
    }

    /// Removes what was added since; we hold the writer lock, so nobody else added anything.
    pub fn restore(&self, store: &Store) {
        for l in store.list_layers().unwrap_or_default() {
            if !self.layers.contains(&l) {
                if let Err(e) = store.remove_layer(&l) {
                    tracing::warn!("cannot undo layer {l}: {e:#}");
                }
            }
        }
        for b in store.list_blobs().unwrap_or_default() {
            if !self.blobs.contains(&b) {
                if let Err(e) = store.remove_blob(&b) {
                    tracing::warn!("cannot undo blob {b}: {e:#}");
                }
            }
        }
    }
}

/// One layer member and what the manifest/config promise about it.
pub struct LayerSpec<'a> {
    pub name: &'a str,
    /// The blob digest, when the archive names it (OCI descriptors, `blobs/sha256/<hex>` paths).
    pub blob: Option<Digest>,
    pub diff_id: Option<Digest>,
    /// The manifest's media type (kept as is); `None` derives it from the detected compression.
    pub media_type: Option<String>,
}

/// Stores one layer; one already present (same diff_id and blob) is not read or unpacked again.
pub fn layer(store: &Store, members: &dyn Members, spec: LayerSpec<'_>) -> Result<LayerRef> {
    let name = spec.name;
    let size = members.size(name).with_context(|| format!("layer {name} is not in the archive"))?;
    let mut blob = spec.blob.clone();
    let mut media_type = spec.media_type.clone();
    if blob.is_none() || media_type.is_none() {
        // Peek: an uncompressed layer's blob digest is its diff_id, and the type follows the bytes.
        let prefix = read_prefix(&mut members.open(name)?).with_context(|| format!("cannot read {name}"))?;
        let c = Compression::detect(&prefix).with_context(|| format!("layer {name}"))?;
        if c == Compression::None && blob.is_none() {
            blob = spec.diff_id.clone();
        }
        media_type.get_or_insert_with(|| c.media_type().to_string());
    }
    if let (Some(diff_id), Some(b)) = (&spec.diff_id, &blob) {
        if store.has_layer(diff_id) {
            let layer = LayerRef {
                diff_id: diff_id.clone(),
                blob: b.clone(),
                blob_size: size,
                media_type: media_type.clone().unwrap_or_default(),
            };
            if store.has_blob(b) && store.blob_size(b).ok() == Some(size) {
                return Ok(layer);
            }
            if b == diff_id {
                // An uncompressed blob of a layer we have: its digest check is the diff_id check,
                // so storing the bytes is enough; nothing to unpack.
                let expect = Expected { digest: b.clone(), size: Some(size) };
                store
                    .put_blob(members.open(name)?, Some(&expect))
                    .with_context(|| format!("layer {name}"))?;
                return Ok(layer);
            }
        }
    }
    let expect = LayerExpectation {
        blob: spec.blob.map(|digest| Expected { digest, size: Some(size) }),
        diff_id: spec.diff_id,
        media_type: spec.media_type,
    };
    store.ingest_layer(members.open(name)?, &expect, "load").with_context(|| format!("layer {name}"))
}

/// Reads a small member and checks it against the digest (and size) that names it.
pub fn verified(members: &dyn Members, name: &str, want: &Digest, size: Option<u64>) -> Result<Vec<u8>> {
    let bytes = members.read(name)?;
    if let Some(size) = size {
        anyhow::ensure!(
            bytes.len() as u64 == size,
            "{name} has size {}, its descriptor says {size}",
            bytes.len()
        );
    }
    let got = Digest::of_bytes(&bytes);
    anyhow::ensure!(got == *want, "{name} does not match its digest {want} (content hashes to {got})");
    Ok(bytes)
}

/// An OCI manifest for an image that came without one (docker-archive), stored; returns its digest.
pub fn synthesise_manifest(store: &Store, config: &[u8], layers: &[LayerRef]) -> Result<Digest> {
    let config_desc = Descriptor::new(media::OCI_CONFIG, &Digest::of_bytes(config), config.len() as u64);
    let layer_descs: Vec<_> =
        layers.iter().map(|l| Descriptor::new(&l.media_type, &l.blob, l.blob_size)).collect();
    store.put_blob_bytes(&build_manifest(&config_desc, &layer_descs))
}

/// Stores a config that was read whole, verified against its own digest.
pub fn put_config(store: &Store, bytes: &[u8]) -> Result<Digest> {
    let digest = Digest::of_bytes(bytes);
    store.put_blob(bytes, Some(&Expected { digest: digest.clone(), size: Some(bytes.len() as u64) }))
}

/// Parses tags from an archive, all before anything is stored: a bad one fails the load early.
pub fn parse_tags<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<Reference>> {
    names
        .into_iter()
        .map(|n| Reference::parse_with_default_tag(n).with_context(|| format!("invalid image name {n:?}")))
        .collect()
}

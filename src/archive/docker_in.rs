//! docker-archive in: `manifest.json` names each image's config, tags and layer tars (`<id>/layer.tar`
//! before Docker 25, `blobs/sha256/<hex>` since). No manifest comes with it, so one is synthesised.

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::ingest::{self, LayerSpec, Pending};
use super::members::Members;
use crate::oci::image::config_diff_ids;
use crate::oci::{Digest, media};
use crate::store::Store;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// The digest a member's name claims: `blobs/sha256/<hex>` or `<hex>.json`.
fn named_digest(name: &str) -> Option<Digest> {
    let base = name.strip_prefix("blobs/sha256/").or_else(|| name.strip_suffix(".json"))?;
    Digest::from_hex(base).ok()
}

pub fn load(store: &Store, members: &dyn Members) -> Result<Vec<Pending>> {
    let bytes = members.read("manifest.json")?;
    let entries: Vec<Entry> = serde_json::from_slice(&bytes).context("invalid manifest.json")?;
    anyhow::ensure!(!entries.is_empty(), "manifest.json lists no images");
    // Names first: an invalid tag fails the load before anything is stored.
    let tags: Vec<_> = entries
        .iter()
        .map(|e| ingest::parse_tags(e.repo_tags.iter().flatten().map(String::as_str)))
        .collect::<Result<_>>()?;
    let mut out: Vec<Pending> = Vec::new();
    // The same image listed again under other names is stored once (an archive may list it in
    // thousands of entries).
    let mut seen: std::collections::HashMap<(&str, &[String]), usize> = std::collections::HashMap::new();
    for (entry, tags) in entries.iter().zip(tags) {
        let mut pending = match seen.get(&(entry.config.as_str(), &entry.layers[..])) {
            Some(&i) => Pending { record: out[i].record.clone(), tags: Vec::new() },
            None => image(store, members, entry)?,
        };
        seen.entry((entry.config.as_str(), &entry.layers[..])).or_insert(out.len());
        pending.tags = tags;
        out.push(pending);
    }
    Ok(out)
}

fn image(store: &Store, members: &dyn Members, entry: &Entry) -> Result<Pending> {
    let name = &entry.config;
    if !members.contains(name) {
        bail!("manifest.json lists config {name}, which is not in the archive");
    }
    let config = match named_digest(name) {
        Some(d) => ingest::verified(members, name, &d, None)?,
        None => members.read(name)?,
    };
    let parsed: serde_json::Value =
        serde_json::from_slice(&config).with_context(|| format!("config {name} is not valid JSON"))?;
    let diff_ids = config_diff_ids(&parsed).with_context(|| format!("config {name}"))?;
    if diff_ids.len() != entry.layers.len() {
        bail!(
            "manifest.json lists {} layers for config {name}, which has {} diff_ids",
            entry.layers.len(),
            diff_ids.len()
        );
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (layer, diff_id) in entry.layers.iter().zip(diff_ids) {
        if !members.contains(layer) {
            bail!("manifest.json lists layer {layer}, which is not in the archive");
        }
        let spec = LayerSpec {
            name: layer,
            blob: layer.strip_prefix("blobs/sha256/").and_then(|h| Digest::from_hex(h).ok()),
            diff_id: Some(diff_id),
            media_type: None,
        };
        layers.push(ingest::layer(store, members, spec)?);
    }
    let id = ingest::put_config(store, &config)?;
    let manifest = ingest::synthesise_manifest(store, &config, &layers)?;
    Ok(Pending::new(id, manifest, media::OCI_MANIFEST, layers))
}

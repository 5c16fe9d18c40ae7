//! docker-archive out, as `docker save` (before 25) writes it and skopeo reads it: `manifest.json`,
//! `repositories`, the config as `<hex>.json`, and per layer a directory with `VERSION`, a v1 `json`
//! and the uncompressed `layer.tar` (decompressed from the stored blob, diff_id verified while it
//! streams). Layer directories are named by ChainID: unique per position in a stack, so the v1
//! parent chain holds even when one diff_id occurs twice (the second is a symlink, as Docker does).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::save::Selected;
use super::sink::Sink;
use super::verify::Verifying;
use crate::layer::compression::open_decompressed;
use crate::oci::Digest;
use crate::oci::image::config_diff_ids;
use crate::store::{LayerRef, Store};

/// ChainIDs (OCI image spec): the identity of a layer together with everything below it.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::of_bytes(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

pub fn write(store: &Store, selected: &[Selected], sink: &mut dyn Sink) -> Result<()> {
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    // diff_id → the directory whose layer.tar holds it (later occurrences link there).
    let mut tars: HashMap<Digest, String> = HashMap::new();
    for s in selected {
        let rec = &s.record;
        let config = store.read_blob(&rec.id).context("the image's config")?;
        let parsed: Value = serde_json::from_slice(&config).with_context(|| format!("config {}", rec.id))?;
        let diff_ids: Vec<Digest> = rec.layers.iter().map(|l| l.diff_id.clone()).collect();
        anyhow::ensure!(
            config_diff_ids(&parsed)? == diff_ids,
            "image {}: its record and config disagree about the layers",
            rec.id.short()
        );
        let chain = chain_ids(&diff_ids);
        let mut paths = Vec::with_capacity(chain.len());
        for (i, (layer, id)) in rec.layers.iter().zip(&chain).enumerate() {
            let dir = id.hex().to_string();
            let tar = format!("{dir}/layer.tar");
            if !sink.has(&tar) {
                sink.dir(&dir)?;
                sink.bytes(&format!("{dir}/VERSION"), b"1.0")?;
                let parent = i.checked_sub(1).map(|p| chain[p].hex());
                let top = (i + 1 == chain.len()).then_some(&parsed);
                sink.bytes(&format!("{dir}/json"), &v1_json(id.hex(), parent, top))?;
                match tars.get(&layer.diff_id) {
                    Some(first) => sink.symlink(&tar, &format!("../{first}/layer.tar"))?,
                    None => {
                        layer_tar(store, sink, layer, &tar)?;
                        tars.insert(layer.diff_id.clone(), dir.clone());
                    }
                }
            }
            paths.push(tar);
        }
        let config_name = format!("{}.json", rec.id.hex());
        if !sink.has(&config_name) {
            sink.bytes(&config_name, &config)?;
        }
        let repo_tags: Vec<String> = s.tags.iter().map(|t| t.familiar()).collect();
        manifest.push(json!({
            "Config": config_name,
            "RepoTags": if repo_tags.is_empty() { Value::Null } else { repo_tags.into() },
            "Layers": paths,
        }));
        if let Some(top) = chain.last() {
            for t in &s.tags {
                let tag = t.tag.clone().unwrap_or_else(|| "latest".into());
                repositories.entry(t.familiar_name()).or_default().insert(tag, top.hex().to_string());
            }
        }
    }
    sink.bytes("manifest.json", &serde_json::to_vec(&manifest)?)?;
    if !repositories.is_empty() {
        sink.bytes("repositories", &serde_json::to_vec(&repositories)?)?;
    }
    Ok(())
}

/// The v1 layer json old readers follow: id and parent, and for the top layer the image config.
fn v1_json(id: &str, parent: Option<&str>, top: Option<&Value>) -> Vec<u8> {
    let mut j = match top.and_then(Value::as_object) {
        Some(cfg) => {
            let mut m = cfg.clone();
            m.remove("rootfs");
            m.remove("history");
            m
        }
        None => {
            let v = json!({"created": "1970-01-01T00:00:00Z", "container_config": {}});
            v.as_object().cloned().unwrap_or_default()
        }
    };
    j.insert("id".into(), id.into());
    if let Some(p) = parent {
        j.insert("parent".into(), p.into());
    }
    serde_json::to_vec(&j).expect("serialisable")
}

/// Streams a stored layer blob, decompressed, into `path`, checking size and diff_id as it goes.
fn layer_tar(store: &Store, sink: &mut dyn Sink, layer: &LayerRef, path: &str) -> Result<()> {
    let size = store.layer_meta(&layer.diff_id)?.tar_size;
    let blob = store.open_blob(&layer.blob)?;
    let (_, tar) = open_decompressed(blob).with_context(|| format!("stored blob {}", layer.blob))?;
    let mut r = Verifying::new(tar, size, layer.diff_id.clone(), format!("layer {}", layer.diff_id));
    sink.file(path, size, &mut r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of_bytes(b"a");
        let b = Digest::of_bytes(b"b");
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], Digest::of_bytes(format!("{a} {b}").as_bytes()));
    }
}

//! The pre-1.10 docker save layout: `repositories` ({repo: {tag: id}}) and per-layer `<id>/json` +
//! `<id>/layer.tar` linked by `parent`. Like Docker's legacy loader, the image config is the top
//! layer's json with rootfs (diff_ids computed while unpacking) and history added.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::ingest::{self, LayerSpec, Pending};
use super::members::Members;
use crate::oci::image::config_bytes;
use crate::oci::{Reference, media};
use crate::store::Store;

/// Parent chains longer than this are treated as cycles.
const MAX_DEPTH: usize = 1000;

pub fn load(store: &Store, members: &dyn Members) -> Result<Vec<Pending>> {
    let repos: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_slice(&members.read("repositories")?).context("invalid repositories file")?;
    // top layer id → its names, in a fixed order.
    let mut tops: BTreeMap<String, Vec<Reference>> = BTreeMap::new();
    for (repo, tags) in &repos {
        for (tag, id) in tags {
            let name = format!("{repo}:{tag}");
            let r = ingest::parse_tags([name.as_str()])?;
            tops.entry(id.clone()).or_default().extend(r);
        }
    }
    let mut out = Vec::new();
    for (top, tags) in tops {
        let mut pending = image(store, members, &top)?;
        pending.tags = tags;
        out.push(pending);
    }
    Ok(out)
}

fn v1_json(members: &dyn Members, id: &str) -> Result<serde_json::Map<String, Value>> {
    let name = format!("{id}/json");
    if id.is_empty() || id.contains('/') || !members.contains(&name) {
        bail!("the archive has no layer {id:?} ({name} is missing)");
    }
    match serde_json::from_slice(&members.read(&name)?) {
        Ok(Value::Object(m)) => Ok(m),
        _ => bail!("{name} is not a JSON object"),
    }
}

fn image(store: &Store, members: &dyn Members, top: &str) -> Result<Pending> {
    // Walk the parent chain down, then store bottom first.
    let mut chain = Vec::new();
    let mut next = Some(top.to_string());
    while let Some(id) = next {
        if chain.len() >= MAX_DEPTH {
            bail!("layer {top}: parent chain is longer than {MAX_DEPTH} (a cycle?)");
        }
        let json = v1_json(members, &id)?;
        next = json.get("parent").and_then(Value::as_str).filter(|p| !p.is_empty()).map(String::from);
        chain.push((id, json));
    }
    chain.reverse();
    let mut layers = Vec::new();
    let mut history = Vec::new();
    for (id, json) in &chain {
        let tar = format!("{id}/layer.tar");
        let empty = members.size(&tar).unwrap_or(0) == 0;
        if !empty {
            let spec = LayerSpec { name: &tar, blob: None, diff_id: None, media_type: None };
            layers.push(ingest::layer(store, members, spec)?);
        }
        history.push(history_entry(json, empty));
    }
    let mut config = chain.last().map(|(_, j)| j.clone()).unwrap_or_default();
    for k in ["id", "parent", "Size", "parent_id", "layer_id", "throwaway"] {
        config.remove(k);
    }
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    config.insert("rootfs".into(), json!({"type": "layers", "diff_ids": diff_ids}));
    config.insert("history".into(), Value::Array(history));
    let config = config_bytes(&Value::Object(config));
    let id = ingest::put_config(store, &config)?;
    let manifest = ingest::synthesise_manifest(store, &config, &layers)?;
    Ok(Pending::new(id, manifest, media::OCI_MANIFEST, layers))
}

/// Docker's `HistoryFromConfig`: what a v1 layer json says about how it was made.
fn history_entry(json: &serde_json::Map<String, Value>, empty: bool) -> Value {
    let mut h = serde_json::Map::new();
    for (from, to) in [("created", "created"), ("author", "author"), ("comment", "comment")] {
        if let Some(v) = json.get(from).filter(|v| v.as_str().is_some_and(|s| !s.is_empty())) {
            h.insert(to.into(), v.clone());
        }
    }
    let cmd = json.get("container_config").and_then(|c| c.get("Cmd")).and_then(Value::as_array);
    let created_by: Vec<&str> = cmd.into_iter().flatten().filter_map(Value::as_str).collect();
    if !created_by.is_empty() {
        h.insert("created_by".into(), created_by.join(" ").into());
    }
    if empty {
        h.insert("empty_layer".into(), true.into());
    }
    Value::Object(h)
}

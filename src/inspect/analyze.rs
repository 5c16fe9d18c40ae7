//! `strata analyze`: what each layer adds, changes and removes, and how much of the image is
//! data that later layers hide (dive's analysis, with opaque directories counted right).
//!
//! Each layer's own tree is read raw (whiteouts included) and compared with the merged view of
//! the layers below it, through the same `union` rules the mount uses. Only non-directories count
//! as files; bytes are regular-file sizes (symlinks, devices, fifos: 0).

use std::collections::HashSet;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::layer_changes::{Acc, LayerWalk, Lower};
use crate::oci::Digest;
use crate::store::{ImageRecord, Store};
use crate::union::{Layer, Stack};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Count {
    pub files: u64,
    pub bytes: u64,
}

impl Count {
    pub(crate) fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerStats {
    /// Bottom first, as in the config's `rootfs.diff_ids`.
    pub index: usize,
    pub diff_id: Digest,
    /// From the config history (entries marked `empty_layer` skipped); `None` without history.
    pub created_by: Option<String>,
    /// Bytes of regular-file data the layer stores (hard links once).
    pub size: u64,
    /// Files at paths the layers below do not have.
    pub added: Count,
    /// Files replacing a file of the layers below (bytes: the new content).
    pub modified: Count,
    /// Files of the layers below this layer deletes (whiteouts, opaque directories, replacement of
    /// a directory by a file or the reverse); bytes: what they held.
    pub removed: Count,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WastedPath {
    /// The path as text (non-UTF-8 bytes replaced; the exact bytes then in `path_hex`).
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// How many hidden versions of this path there are.
    pub count: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub image: String,
    pub id: Digest,
    pub layers: Vec<LayerStats>,
    /// Sum of the layers' sizes.
    pub total_size: u64,
    /// Bytes of files in lower layers that later layers overwrite or delete.
    pub wasted_bytes: u64,
    /// wasted_bytes / total_size × 100.
    pub wasted_percent: f64,
    /// dive's score: Σ smallest version / Σ all versions, per path (1 when there is no data).
    pub efficiency: f64,
    /// Paths by wasted bytes, largest first.
    pub wasted_paths: Vec<WastedPath>,
}

/// Analyzes an image; `top` bounds the list of wasted paths.
pub fn analyze(store: &Store, image: &ImageRecord, name: &str, top: usize) -> Result<Analysis> {
    let config = store.image_config(image)?;
    let created_by = created_by(&config);
    let mut acc = Acc::default();
    let mut layers = Vec::new();
    for (i, l) in image.layers.iter().enumerate() {
        let dir = store.layer_fs(&l.diff_id);
        let layer = Layer::open(&dir).with_context(|| format!("opening layer {i} of {name}"))?;
        // The merged view of the layers below this one, top first.
        let below: Vec<PathBuf> =
            image.layers[..i].iter().rev().map(|l| store.layer_fs(&l.diff_id)).collect();
        let lower = if below.is_empty() { None } else { Some(Stack::new(&below, None)?) };
        let mut stats = LayerStats {
            index: i,
            diff_id: l.diff_id.clone(),
            created_by: created_by.get(i).cloned().flatten(),
            size: 0,
            added: Count::default(),
            modified: Count::default(),
            removed: Count::default(),
        };
        let root_lower = match &lower {
            Some(s) => Lower::Visible(s.root()?),
            None => Lower::None,
        };
        let mut w = LayerWalk {
            layer: &layer,
            lower: lower.as_ref(),
            stats: &mut stats,
            acc: &mut acc,
            inodes: HashSet::new(),
        };
        w.dir(Path::new(""), root_lower)
            .with_context(|| format!("analyzing layer {i} ({}) of {name}", l.diff_id.short()))?;
        layers.push(stats);
    }
    let total_size: u64 = layers.iter().map(|l| l.size).sum();
    let (mut min, mut cum) = (0u64, 0u64);
    for v in acc.versions.values() {
        min += v.1;
        cum += v.0;
    }
    let mut hidden: Vec<(&PathBuf, u64, u64)> = acc.wasted.iter().map(|(p, &(c, b))| (p, c, b)).collect();
    hidden.sort_by(|a, b| {
        b.2.cmp(&a.2).then_with(|| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()))
    });
    let wasted_paths = hidden
        .into_iter()
        .take(top)
        .map(|(p, count, bytes)| {
            let raw = Path::new("/").join(p).into_os_string().into_vec();
            WastedPath {
                path: String::from_utf8_lossy(&raw).into_owned(),
                path_hex: std::str::from_utf8(&raw).is_err().then(|| hex::encode(&raw)),
                count,
                bytes,
            }
        })
        .collect();
    Ok(Analysis {
        image: name.to_string(),
        id: image.id.clone(),
        layers,
        total_size,
        wasted_bytes: acc.wasted_total,
        wasted_percent: if total_size == 0 {
            0.0
        } else {
            acc.wasted_total as f64 * 100.0 / total_size as f64
        },
        efficiency: if cum == 0 { 1.0 } else { min as f64 / cum as f64 },
        wasted_paths,
    })
}

/// `created_by` per layer, bottom first: history entries marked `empty_layer` made no layer.
fn created_by(config: &serde_json::Value) -> Vec<Option<String>> {
    let history = config.get("history").and_then(|h| h.as_array()).cloned().unwrap_or_default();
    history
        .iter()
        .filter(|h| !h.get("empty_layer").and_then(|v| v.as_bool()).unwrap_or(false))
        .map(|h| h.get("created_by").and_then(|v| v.as_str()).map(str::to_string))
        .collect()
}

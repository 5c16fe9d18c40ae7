//! The build cache: `builder/cache/<key>` names the image a step produced. A key is the sha256
//! of the parent image, the instruction after substitution, the content hash of COPY/ADD sources
//! and the build args the step sees. Entries point at image records (hidden intermediates), so a
//! hit reuses the stored layer and config; an entry whose image is gone is a miss.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::oci::Digest;
use crate::store::{ImageRecord, Store, staging};

#[derive(Serialize, Deserialize)]
struct Entry {
    image: Digest,
    created: i64,
}

pub fn dir(store: &Store) -> PathBuf {
    store.root().join("builder/cache")
}

/// Directories of `RUN --mount=type=cache`, kept between builds.
pub fn mounts_dir(store: &Store) -> PathBuf {
    store.root().join("builder/mounts")
}

pub fn key(parts: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(serde_json::to_vec(parts).expect("serialisable")))
}

/// The image a key names, if it and all its layers are still in the store.
pub fn get(store: &Store, key: &str) -> Option<ImageRecord> {
    let bytes = std::fs::read(dir(store).join(key)).ok()?;
    let e: Entry = serde_json::from_slice(&bytes).ok()?;
    let img = store.image(&e.image).ok()?;
    store.check_layers(&img).ok()?;
    Some(img)
}

pub fn put(store: &Store, key: &str, image: &Digest) -> Result<()> {
    let d = dir(store);
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    let e = Entry { image: image.clone(), created: crate::store::layers::now_unix() };
    staging::replace(&store.tmp_dir(), &d.join(key), &serde_json::to_vec(&e)?)
}

/// The images cache entries point at, and the entry files.
fn entries(store: &Store) -> Result<Vec<(PathBuf, Option<Digest>)>> {
    let d = dir(store);
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&d) else { return Ok(out) };
    for e in rd {
        let p = e.with_context(|| format!("cannot read {}", d.display()))?.path();
        let image =
            std::fs::read(&p).ok().and_then(|b| serde_json::from_slice::<Entry>(&b).ok()).map(|e| e.image);
        out.push((p, image));
    }
    Ok(out)
}

/// What the cache holds: entries and the bytes of cache mounts.
pub struct Usage {
    pub entries: usize,
    pub mount_bytes: u64,
}

pub fn usage(store: &Store) -> Result<Usage> {
    Ok(Usage {
        entries: entries(store)?.len(),
        mount_bytes: crate::store::usage::dir_size(&mounts_dir(store)),
    })
}

/// What `builder prune` removed.
pub struct Pruned {
    pub entries: usize,
    pub images: usize,
    pub bytes: u64,
}

/// Forgets every cache entry and cache mount, then removes the intermediate images only the cache
/// kept (untagged, used by no container), then unused layers and blobs.
pub fn prune(store: &Store) -> Result<Pruned> {
    store.ensure_writable()?;
    let list = entries(store)?;
    let mut candidates: std::collections::HashSet<Digest> =
        list.iter().filter_map(|(_, i)| i.clone()).collect();
    for (p, _) in &list {
        std::fs::remove_file(p).with_context(|| format!("cannot remove {}", p.display()))?;
    }
    let mut bytes = crate::store::usage::dir_size(&mounts_dir(store));
    let mounts = mounts_dir(store);
    if mounts.exists() {
        let doomed = staging::tmp_path(&store.tmp_dir(), "pruned-mounts");
        std::fs::rename(&mounts, &doomed).with_context(|| format!("cannot remove {}", mounts.display()))?;
        std::fs::remove_dir_all(&doomed).with_context(|| format!("cannot remove {}", doomed.display()))?;
    }
    let tags = store.tags()?;
    let used: std::collections::HashSet<Digest> = store.containers()?.into_iter().map(|c| c.image).collect();
    candidates.retain(|id| !tags.values().any(|t| t == id) && !used.contains(id));
    // A kept image's `parent` may name a removed intermediate: it is informational only.
    let mut removed = 0;
    for id in candidates.iter().filter(|c| store.has_image(c)) {
        store.remove_image_record(id)?;
        removed += 1;
    }
    let gc = store.collect_garbage()?;
    bytes += gc.bytes;
    Ok(Pruned { entries: list.len(), images: removed, bytes })
}

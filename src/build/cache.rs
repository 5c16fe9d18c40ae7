//! The build cache: `builder/cache/<key>` names the image a step produced. A key is the sha256
//! of the parent image, the instruction after substitution, the content hash of COPY/ADD sources
//! and the build args the step sees. Entries point at image records (hidden intermediates), so a
//! hit reuses the stored layer and config; an entry whose image is gone is a miss.

use std::collections::HashSet;
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

/// One record of the cache, as `system df -v` lists it.
pub struct Record {
    /// The step's key (a cache mount's: its directory name).
    pub id: String,
    /// BuildKit's names: `regular` for a step's result, `exec.cachemount` for a RUN cache mount.
    pub kind: &'static str,
    /// Bytes only this record holds: its step's own layer when no image uses it, a cache
    /// mount's files.
    pub size: u64,
    /// Its layer is also an image's (then it frees nothing).
    pub shared: bool,
    pub created: i64,
}

/// What the cache holds beyond images (Docker's Build Cache row).
pub struct Usage {
    pub records: Vec<Record>,
    /// Bytes only the cache holds: what `builder prune` frees.
    pub size: u64,
}

/// The cache's records and the bytes it alone keeps: layers that only cache entries reference
/// (not a tagged image, nor one a container uses), counted once, plus the cache mounts.
pub fn usage(store: &Store) -> Result<Usage> {
    let list = entries(store)?;
    let cache_only = cache_only_images(store, &list)?;
    let mut held: HashSet<Digest> = HashSet::new();
    for img in store.images()? {
        if !cache_only.contains(&img.id) {
            held.extend(img.layers.iter().map(|l| l.diff_id.clone()));
        }
    }
    let mut steps = Vec::new();
    for (p, image) in &list {
        let Some(img) = image.as_ref().and_then(|i| store.image(i).ok()) else { continue };
        let created = std::fs::read(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
            .map(|e| e.created)
            .unwrap_or(0);
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        steps.push((created, name, img.layers.last().map(|l| l.diff_id.clone())));
    }
    steps.sort();
    let mut counted: HashSet<Digest> = HashSet::new();
    let mut out = Usage { records: Vec::new(), size: 0 };
    for (created, id, top) in steps {
        let mut r = Record { id, kind: "regular", size: 0, shared: false, created };
        if let Some(top) = top {
            r.shared = held.contains(&top);
            // A layer is its first record's: later records on top of it added none of their own.
            if !r.shared && counted.insert(top.clone()) {
                r.size = store.layer_meta(&top).map(|m| m.data_bytes).unwrap_or(0);
            }
        }
        out.size += r.size;
        out.records.push(r);
    }
    if let Ok(rd) = std::fs::read_dir(mounts_dir(store)) {
        for e in rd.flatten() {
            let size = crate::store::usage::dir_size(&e.path());
            let created = e
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .map_or(0, |t| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64));
            let id = e.file_name().to_string_lossy().into_owned();
            out.size += size;
            out.records.push(Record { id, kind: "exec.cachemount", size, shared: false, created });
        }
    }
    Ok(out)
}

/// Images only the cache keeps: named by an entry, untagged, used by no container.
fn cache_only_images(store: &Store, list: &[(PathBuf, Option<Digest>)]) -> Result<HashSet<Digest>> {
    let tags = store.tags()?;
    let used: HashSet<Digest> = store.containers()?.into_iter().map(|c| c.image).collect();
    Ok(list
        .iter()
        .filter_map(|(_, i)| i.clone())
        .filter(|id| !tags.values().any(|t| t == id) && !used.contains(id))
        .collect())
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
    let candidates = cache_only_images(store, &list)?;
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

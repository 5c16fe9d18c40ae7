//! The build cache: `builder/cache/<key>` records what a step produced, its config and layers
//! (`store::build_cache`), without an image record: only what a build exports is an image, as
//! with BuildKit. A key is the sha256 of the parent (config digest), the instruction after
//! substitution, the content hash of COPY/ADD sources and the build args the step sees. A hit
//! reuses the stored layers and config; a record whose config or layers are gone is a miss.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use sha2::{Digest as _, Sha256};

use crate::oci::Digest;
use crate::store::build_cache::CacheRecord;
use crate::store::{LayerRef, Store, staging};

/// Directories of `RUN --mount=type=cache`, kept between builds.
pub fn mounts_dir(store: &Store) -> PathBuf {
    store.root().join("builder/mounts")
}

pub fn key(parts: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(serde_json::to_vec(parts).expect("serialisable")))
}

/// The step result a key names, if it and everything it names are still in the store.
pub fn get(store: &Store, key: &str) -> Option<CacheRecord> {
    let r = store.cache_record(key)?;
    let complete = store.has_blob(&r.config) && r.layers.iter().all(|l| store.has_layer(&l.diff_id));
    complete.then_some(r)
}

pub fn put(store: &Store, key: &str, config: &Digest, layers: &[LayerRef]) -> Result<()> {
    let r = CacheRecord {
        config: config.clone(),
        layers: layers.to_vec(),
        created: crate::store::layers::now_unix(),
    };
    store.put_cache_record(key, &r)
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

/// The cache's records and the bytes it alone keeps: layers that no image uses, counted once,
/// plus the cache mounts.
pub fn usage(store: &Store) -> Result<Usage> {
    let mut held: HashSet<Digest> = HashSet::new();
    for img in store.images()? {
        held.extend(img.layers.iter().map(|l| l.diff_id.clone()));
    }
    let mut steps: Vec<(i64, String, Option<Digest>)> = store
        .cache_records()?
        .into_iter()
        .map(|(key, r)| match r {
            Some(r) => (r.created, key, r.layers.last().map(|l| l.diff_id.clone())),
            None => (0, key, None),
        })
        .collect();
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

/// What `builder prune` removed.
pub struct Pruned {
    /// The records' keys and the cache mounts' names.
    pub ids: Vec<String>,
    pub bytes: u64,
}

/// Forgets every cache record and cache mount, then collects the layers and blobs nothing else
/// uses. Records of an older strata named hidden intermediate images: those go too when untagged
/// and used by no container.
pub fn prune(store: &Store) -> Result<Pruned> {
    store.ensure_writable()?;
    let list = store.cache_records()?;
    let mut legacy: HashSet<Digest> = HashSet::new();
    for (key, r) in &list {
        if r.is_none() {
            let p = store.build_cache_dir().join(key);
            let old =
                std::fs::read(&p).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
            if let Some(id) =
                old.as_ref().and_then(|v| v["image"].as_str()).and_then(|s| Digest::parse(s).ok())
            {
                legacy.insert(id);
            }
        }
        store.remove_cache_record(key)?;
    }
    let mut ids: Vec<String> = list.into_iter().map(|(k, _)| k).collect();
    let mut bytes = crate::store::usage::dir_size(&mounts_dir(store));
    let mounts = mounts_dir(store);
    if let Ok(rd) = std::fs::read_dir(&mounts) {
        ids.extend(rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()));
    }
    if mounts.exists() {
        let doomed = staging::tmp_path(&store.tmp_dir(), "pruned-mounts");
        std::fs::rename(&mounts, &doomed).with_context(|| format!("cannot remove {}", mounts.display()))?;
        std::fs::remove_dir_all(&doomed).with_context(|| format!("cannot remove {}", doomed.display()))?;
    }
    if !legacy.is_empty() {
        let tags = store.tags()?;
        let used: HashSet<Digest> = store.containers()?.into_iter().map(|c| c.image).collect();
        legacy.retain(|id| !tags.values().any(|t| t == id) && !used.contains(id) && store.has_image(id));
        store.expect_garbage()?;
        for id in &legacy {
            store.remove_image_record(id)?;
        }
    }
    bytes += store.collect_garbage()?.bytes;
    Ok(Pruned { ids, bytes })
}

//! Build cache records (`builder/cache/<key>`): what one build step produced, its config blob
//! and its layers, kept without an image record (BuildKit keeps intermediate results only in
//! its cache, so `images` lists what builds exported, not every step). A record is a root for
//! garbage collection as an image record is: what it names stays until the record goes.
//! `build/cache.rs` makes the keys and decides when records are dropped (`builder prune`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{LayerRef, Store, staging};
use crate::oci::Digest;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The step's config blob: the id its image would have.
    pub config: Digest,
    /// Bottom layer first, as in the config's rootfs.diff_ids.
    pub layers: Vec<LayerRef>,
    /// Unix seconds when the step ran.
    pub created: i64,
}

impl Store {
    pub fn build_cache_dir(&self) -> PathBuf {
        self.root.join("builder/cache")
    }

    /// The record under `key`, if there is one in this format (an older strata's, which named
    /// an image record, reads as none).
    pub fn cache_record(&self, key: &str) -> Option<CacheRecord> {
        let bytes = std::fs::read(self.build_cache_dir().join(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes the record for `key`, whose config blob and layers must be stored already. Not
    /// durable: a crash may lose it, which only costs a cache miss (and frees what it named).
    pub fn put_cache_record(&self, key: &str, record: &CacheRecord) -> Result<()> {
        self.ensure_writable()?;
        if !self.has_blob(&record.config) {
            bail!("internal error: blob {} must be stored before its cache record", record.config);
        }
        if let Some(l) = record.layers.iter().find(|l| !self.has_layer(&l.diff_id)) {
            bail!("internal error: layer {} must be stored before its cache record", l.diff_id);
        }
        let dir = self.build_cache_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        staging::replace(&self.tmp_dir(), &dir.join(key), &serde_json::to_vec(record)?)
    }

    /// Every record file: its key and what it holds (None: unreadable or an older format).
    pub fn cache_records(&self) -> Result<Vec<(String, Option<CacheRecord>)>> {
        let dir = self.build_cache_dir();
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        for e in rd {
            let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
            let key = e.file_name().to_string_lossy().into_owned();
            let record = std::fs::read(e.path()).ok().and_then(|b| serde_json::from_slice(&b).ok());
            out.push((key, record));
        }
        Ok(out)
    }

    /// Removes a record (not what it names: garbage collection does that).
    pub fn remove_cache_record(&self, key: &str) -> Result<()> {
        self.ensure_writable()?;
        let p = self.build_cache_dir().join(key);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", p.display()))
            }
            _ => Ok(()),
        }
    }
}

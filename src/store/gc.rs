//! Garbage collection: layers and blobs that no image (or container) uses are removed.

use std::collections::HashSet;

use anyhow::Result;

use super::Store;
use crate::oci::Digest;

/// What a collection removed.
#[derive(Debug, Default)]
pub struct Collected {
    pub layers: Vec<Digest>,
    pub blobs: Vec<Digest>,
    pub bytes: u64,
}

impl Store {
    /// Removes every layer and blob not referenced by an image record or a build cache
    /// record, and then the `gc-pending` mark: right after a full collection there is no garbage.
    pub fn collect_garbage(&self) -> Result<Collected> {
        self.ensure_writable()?;
        let mut live_layers = HashSet::new();
        let mut live_blobs = HashSet::new();
        for img in self.images()? {
            live_blobs.insert(img.id.clone());
            live_blobs.insert(img.manifest.clone());
            for l in &img.layers {
                live_layers.insert(l.diff_id.clone());
                live_blobs.insert(l.blob.clone());
            }
        }
        for (_, r) in self.cache_records()? {
            for r in r.into_iter() {
                live_blobs.insert(r.config);
                for l in r.layers {
                    live_layers.insert(l.diff_id);
                    live_blobs.insert(l.blob);
                }
            }
        }
        let mut out = Collected::default();
        // Removals below leave garbage until they are done; a kill midway leaves it to the next writer.
        self.expect_garbage()?;
        for l in self.list_layers()? {
            if !live_layers.contains(&l) {
                out.bytes += self.layer_meta(&l).map(|m| m.data_bytes).unwrap_or(0);
                self.remove_layer(&l)?;
                out.layers.push(l);
            }
        }
        for b in self.list_blobs()? {
            if !live_blobs.contains(&b) {
                out.bytes += self.blob_size(&b).unwrap_or(0);
                self.remove_blob(&b)?;
                out.blobs.push(b);
            }
        }
        self.clear_garbage_mark()?;
        Ok(out)
    }
}

//! Garbage collection: layers and blobs that no image (or container) uses are removed, and the
//! shared init layers of `run --rm` of images gone.

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
        let mut live_images = HashSet::new();
        for img in self.images()? {
            live_images.insert(img.id.hex().to_string());
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
        self.collect_shared_init_layers(&live_images);
        self.clear_garbage_mark()?;
        Ok(out)
    }

    /// Removes the shared init layers of images no longer in the store, and what a run killed
    /// while making one left (`.new-*`, after an hour: a run may be making it now).
    fn collect_shared_init_layers(&self, live: &HashSet<String>) {
        let Ok(rd) = std::fs::read_dir(self.shared_init_dir()) else { return };
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let dead = match name.strip_prefix(".new-") {
                Some(_) => e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < hour_ago),
                None => !name.split_once('-').is_some_and(|(image, _)| live.contains(image)),
            };
            if dead {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    tracing::warn!("cannot remove {}: {err}", e.path().display());
                }
            }
        }
    }
}

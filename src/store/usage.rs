//! Disk usage (`system df`): shared base layers are counted once.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Result;

use super::{ImageRecord, Store};
use crate::oci::Digest;

pub struct ImageUsage {
    pub image: ImageRecord,
    /// Bytes of all its layers.
    pub size: u64,
    /// Bytes of its layers that other images use too.
    pub shared: u64,
    pub containers: usize,
}

pub struct ContainerUsage {
    pub record: super::containers::ContainerRecord,
    pub size: u64,
}

pub struct Usage {
    pub images: Vec<ImageUsage>,
    pub containers: Vec<ContainerUsage>,
    /// Unique bytes of the layers images reference.
    pub images_size: u64,
    /// Of that, bytes in layers used by no image a container uses.
    pub images_reclaimable: u64,
    pub layer_count: usize,
    /// Layers referenced by some image.
    pub layers_active: usize,
    pub layers_size: u64,
    /// Layers and blobs no image nor build cache record references (what prune removes).
    pub orphan_bytes: u64,
    pub blobs_size: u64,
}

impl Store {
    pub fn usage(&self) -> Result<Usage> {
        let images = self.images()?;
        let containers = self.containers()?;
        let mut layer_size: HashMap<Digest, u64> = HashMap::new();
        for l in self.list_layers()? {
            layer_size.insert(l.clone(), self.layer_meta(&l).map(|m| m.data_bytes).unwrap_or(0));
        }
        let mut users: HashMap<&Digest, usize> = HashMap::new();
        for img in &images {
            for l in img.layers.iter().map(|l| &l.diff_id).collect::<HashSet<_>>() {
                *users.entry(l).or_default() += 1;
            }
        }
        let size_of = |d: &Digest| layer_size.get(d).copied().unwrap_or(0);
        let active_images: HashSet<&Digest> = containers.iter().map(|c| &c.image).collect();
        let active_layers: HashSet<&Digest> = images
            .iter()
            .filter(|i| active_images.contains(&i.id))
            .flat_map(|i| i.layers.iter().map(|l| &l.diff_id))
            .collect();
        let images_size: u64 = users.keys().map(|d| size_of(d)).sum();
        let images_reclaimable: u64 =
            users.keys().filter(|d| !active_layers.contains(*d)).map(|d| size_of(d)).sum();
        let mut live_blobs: HashSet<Digest> = images
            .iter()
            .flat_map(|i| {
                [i.id.clone(), i.manifest.clone()].into_iter().chain(i.layers.iter().map(|l| l.blob.clone()))
            })
            .collect();
        let mut cached: HashSet<Digest> = HashSet::new();
        for (_, r) in self.cache_records()? {
            for r in r.into_iter() {
                live_blobs.insert(r.config);
                live_blobs.extend(r.layers.iter().map(|l| l.blob.clone()));
                cached.extend(r.layers.into_iter().map(|l| l.diff_id));
            }
        }
        let mut blobs_size = 0;
        let mut orphan_bytes: u64 = layer_size
            .iter()
            .filter(|(d, _)| !users.contains_key(d) && !cached.contains(*d))
            .map(|(_, s)| s)
            .sum();
        for b in self.list_blobs()? {
            let s = self.blob_size(&b).unwrap_or(0);
            blobs_size += s;
            if !live_blobs.contains(&b) {
                orphan_bytes += s;
            }
        }
        let image_usage = images
            .iter()
            .map(|img| {
                let ids: HashSet<&Digest> = img.layers.iter().map(|l| &l.diff_id).collect();
                ImageUsage {
                    size: ids.iter().map(|d| size_of(d)).sum(),
                    shared: ids
                        .iter()
                        .filter(|d| users.get(*d).copied().unwrap_or(0) > 1)
                        .map(|d| size_of(d))
                        .sum(),
                    containers: containers.iter().filter(|c| c.image == img.id).count(),
                    image: img.clone(),
                }
            })
            .collect();
        let container_usage = containers
            .into_iter()
            .map(|c| ContainerUsage { size: dir_size(&self.container_upper(&c.id)), record: c })
            .collect();
        Ok(Usage {
            images: image_usage,
            containers: container_usage,
            images_size,
            images_reclaimable,
            layer_count: layer_size.len(),
            layers_active: users.len(),
            layers_size: layer_size.values().sum(),
            orphan_bytes,
            blobs_size,
        })
    }

    /// Bytes of an image's layers (what `images` shows as SIZE).
    pub fn image_size(&self, image: &ImageRecord) -> u64 {
        let ids: HashSet<&Digest> = image.layers.iter().map(|l| &l.diff_id).collect();
        ids.iter().map(|d| self.layer_meta(d).map(|m| m.data_bytes).unwrap_or(0)).sum()
    }
}

/// Bytes of regular files under `dir` (not following symlinks), counting hard links once.
pub fn dir_size(dir: &Path) -> u64 {
    fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
        let mut total = 0;
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                total += walk(&e.path(), seen);
            } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
        total
    }
    walk(dir, &mut HashSet::new())
}

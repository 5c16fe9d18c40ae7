//! `strata analyze`: what each layer adds, changes and removes, and how much of the image is
//! data that later layers hide (dive's analysis, with opaque directories counted right).
//!
//! Each layer's own tree is read raw (whiteouts included) and compared with the merged view of
//! the layers below it, through the same `union` rules the mount uses. Only non-directories count
//! as files; bytes are regular-file sizes (symlinks, devices, fifos: 0).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::dir::Dir;
use serde::Serialize;
use std::os::fd::AsFd;

use super::node::data_size;
use super::walk;
use crate::oci::Digest;
use crate::store::{ImageRecord, Store};
use crate::union::layer::{is_dir, is_opaque_dir, stat_at};
use crate::union::whiteout::{hidden_name, is_overlay_whiteout, is_reserved};
use crate::union::{Entry, Layer, Stack};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Count {
    pub files: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: u64) {
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
    pub path: String,
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
    let mut wasted_paths: Vec<WastedPath> = acc
        .wasted
        .iter()
        .map(|(p, &(count, bytes))| WastedPath {
            path: String::from_utf8_lossy(Path::new("/").join(p).as_os_str().as_bytes()).into_owned(),
            count,
            bytes,
        })
        .collect();
    wasted_paths.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    wasted_paths.truncate(top);
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

/// Across layers: every path's data versions and what was hidden.
#[derive(Default)]
struct Acc {
    /// path → (Σ version sizes, smallest version); a deletion is a 0-byte version.
    versions: HashMap<PathBuf, (u64, u64)>,
    /// path → (hidden versions, their bytes).
    wasted: HashMap<PathBuf, (u64, u64)>,
    wasted_total: u64,
}

impl Acc {
    fn version(&mut self, path: &Path, size: u64) {
        let v = self.versions.entry(path.to_path_buf()).or_insert((0, u64::MAX));
        v.0 += size;
        v.1 = v.1.min(size);
    }

    fn hidden(&mut self, e: &Entry) {
        let size = data_size(e);
        let w = self.wasted.entry(e.path.clone()).or_insert((0, 0));
        w.0 += 1;
        w.1 += size;
        self.wasted_total += size;
    }
}

/// The lower directory at the path being walked.
enum Lower {
    /// Nothing below (or not a directory).
    None,
    /// Merged into this layer's directory.
    Visible(Entry),
    /// Hidden by it (opaque, or whited out and recreated): its children not in this layer are gone.
    Hidden(Entry),
}

struct LayerWalk<'a> {
    layer: &'a Layer,
    lower: Option<&'a Stack>,
    stats: &'a mut LayerStats,
    acc: &'a mut Acc,
    inodes: HashSet<u64>,
}

impl LayerWalk<'_> {
    fn dir(&mut self, rel: &Path, lower: Lower) -> Result<()> {
        let fd = self.layer.open_dir(rel).with_context(|| format!("cannot open /{}", rel.display()))?;
        let lower = match lower {
            Lower::Visible(e) if is_opaque_dir(fd.as_fd())? => Lower::Hidden(e),
            other => other,
        };
        let dfd = fd.try_clone()?;
        let mut own: Vec<(OsString, nix::sys::stat::FileStat)> = Vec::new();
        let mut whiteouts: HashSet<OsString> = HashSet::new();
        for ent in Dir::from_fd(fd)?.iter() {
            let ent = ent?;
            let name = std::ffi::OsStr::from_bytes(ent.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            if is_reserved(name) {
                if let Some(h) = hidden_name(name) {
                    whiteouts.insert(h.to_os_string());
                }
                continue;
            }
            let Some(st) = stat_at(dfd.as_fd(), name)? else { continue };
            if is_overlay_whiteout(&st) {
                whiteouts.insert(name.to_os_string());
                continue;
            }
            own.push((name.to_os_string(), st));
        }
        own.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let own_names: HashSet<&OsString> = own.iter().map(|(n, _)| n).collect();
        let stack = self.lower;
        match (&lower, stack) {
            (Lower::Visible(ld), Some(s)) => {
                let mut gone: Vec<&OsString> = whiteouts.iter().filter(|w| !own_names.contains(w)).collect();
                gone.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                for w in gone {
                    if let Some(c) = s.lookup_child(ld, w)? {
                        self.removed(s, c)?;
                    }
                }
            }
            (Lower::Hidden(ld), Some(s)) => {
                for c in walk::children(s, ld)? {
                    if !own_names.contains(&c.name().to_os_string()) {
                        self.removed(s, c)?;
                    }
                }
            }
            _ => {}
        }
        for (name, st) in &own {
            let path = rel.join(name);
            let lower_child = match (&lower, stack) {
                (Lower::Visible(ld) | Lower::Hidden(ld), Some(s)) => s.lookup_child(ld, name)?,
                _ => None,
            };
            let hides = matches!(lower, Lower::Hidden(_)) || whiteouts.contains(name);
            if is_dir(st) {
                let next = match lower_child {
                    Some(lc) if lc.is_dir() => {
                        if hides {
                            Lower::Hidden(lc)
                        } else {
                            Lower::Visible(lc)
                        }
                    }
                    Some(lc) => {
                        self.removed_in(lc)?;
                        Lower::None
                    }
                    None => Lower::None,
                };
                self.dir(&path, next)?;
                continue;
            }
            let size = if st.st_mode & libc::S_IFMT == libc::S_IFREG { st.st_size.max(0) as u64 } else { 0 };
            if size > 0 && self.inodes.insert(st.st_ino) {
                self.stats.size += size;
            }
            self.acc.version(&path, size);
            match lower_child {
                Some(lc) if !lc.is_dir() => {
                    self.stats.modified.add(size);
                    self.acc.hidden(&lc);
                }
                Some(lc) => {
                    self.stats.added.add(size);
                    self.removed_in(lc)?;
                }
                None => self.stats.added.add(size),
            }
        }
        Ok(())
    }

    fn removed_in(&mut self, e: Entry) -> Result<()> {
        match self.lower {
            Some(s) => self.removed(s, e),
            None => Ok(()),
        }
    }

    /// Everything of the lower view at and below `e` is deleted by this layer.
    fn removed(&mut self, s: &Stack, e: Entry) -> Result<()> {
        walk::walk(s, e, &mut |x| {
            if !x.is_dir() {
                let size = data_size(x);
                self.stats.removed.add(size);
                self.acc.hidden(x);
                self.acc.version(&x.path, 0);
            }
            Ok(true)
        })
    }
}

/// CI limits; `None` = not checked.
#[derive(Debug, Default, Clone)]
pub struct Limits {
    pub lowest_efficiency: Option<f64>,
    pub highest_wasted_bytes: Option<u64>,
    pub highest_wasted_percent: Option<f64>,
}

/// The limits an analysis crosses, each as a sentence.
pub fn crossed(a: &Analysis, l: &Limits) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(x) = l.lowest_efficiency.filter(|&x| a.efficiency < x) {
        out.push(format!("efficiency {:.4} is below --lowest-efficiency {x}", a.efficiency));
    }
    if let Some(n) = l.highest_wasted_bytes.filter(|&n| a.wasted_bytes > n) {
        out.push(format!("wasted bytes {} exceed --highest-wasted-bytes {n}", a.wasted_bytes));
    }
    if let Some(p) = l.highest_wasted_percent.filter(|&p| a.wasted_percent > p) {
        out.push(format!("wasted {:.2}% exceeds --highest-wasted-percent {p}", a.wasted_percent));
    }
    out
}

//! One layer's changes against the merged view of the layers below it: the layer's own tree is
//! read raw (whiteouts included) and each name paired with what the lower view has there, through
//! the same `union` rules the mount uses.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::analyze::LayerStats;
use super::node::data_size;
use super::walk;
use crate::union::layer::{is_dir, is_opaque_dir, stat_at};
use crate::union::listing::read_layer_dir;
use crate::union::{Entry, Layer, Stack};

/// Across layers: every path's data versions and what was hidden.
#[derive(Default)]
pub(crate) struct Acc {
    /// path → (Σ version sizes, smallest version); a deletion is a 0-byte version.
    pub(crate) versions: HashMap<PathBuf, (u64, u64)>,
    /// path → (hidden versions, their bytes).
    pub(crate) wasted: HashMap<PathBuf, (u64, u64)>,
    pub(crate) wasted_total: u64,
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
pub(crate) enum Lower {
    /// Nothing below (or not a directory).
    None,
    /// Merged into this layer's directory.
    Visible(Entry),
    /// Hidden by it (opaque, or whited out and recreated): its children not in this layer are gone.
    Hidden(Entry),
}

pub(crate) struct LayerWalk<'a> {
    pub(crate) layer: &'a Layer,
    pub(crate) lower: Option<&'a Stack>,
    pub(crate) stats: &'a mut LayerStats,
    pub(crate) acc: &'a mut Acc,
    pub(crate) inodes: HashSet<u64>,
}

impl LayerWalk<'_> {
    /// Walks the layer's directory `rel`, whose lower counterpart is `lower`.
    pub(crate) fn dir(&mut self, rel: &Path, lower: Lower) -> Result<()> {
        let fd = self.layer.open_dir(rel).with_context(|| format!("cannot open /{}", rel.display()))?;
        let lower = match lower {
            Lower::Visible(e) if is_opaque_dir(fd.as_fd())? => Lower::Hidden(e),
            other => other,
        };
        let raw =
            read_layer_dir(self.layer, 0, rel).with_context(|| format!("cannot read /{}", rel.display()))?;
        let whiteouts: HashSet<OsString> = raw.whiteouts.into_iter().collect();
        let mut own: Vec<(OsString, nix::sys::stat::FileStat)> = Vec::with_capacity(raw.names.len());
        for le in raw.names {
            if let Some(st) = stat_at(fd.as_fd(), &le.name)? {
                own.push((le.name, st));
            }
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

//! Merged directory listings.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{FileType, RawDir};

use super::layer::{Layer, SafeFd, file_type, stat_at};
use super::layer_names::RecordedDir;
use super::stack::{Entry, Stack, is_gone};
use crate::layer::whiteout::{hidden_name, is_opaque_marker, is_overlay_whiteout_stat, is_reserved};

/// One name in a merged directory.
#[derive(Clone, Debug)]
pub struct ListEntry {
    /// File name (any bytes but `/` and NUL).
    pub name: OsString,
    /// The layer it comes from.
    pub layer: usize,
    /// File type bits (`libc::S_IFDIR`, `S_IFREG`, …).
    pub kind: u32,
    /// The inode number in that layer.
    pub ino: u64,
}

/// A merged directory: every visible name once, whiteouts removed, in layer order
/// (top layer's names first, each layer in its on-disk order, or in name order when its record
/// stood in for reading it).
#[derive(Debug)]
pub struct Listing {
    /// The layers that were merged (the directory entry's `layers`).
    pub layers: Vec<usize>,
    /// The visible entries.
    pub entries: Vec<ListEntry>,
}

/// Bytes of directory entries read per getdents64.
const DIRENT_BUFFER: usize = 32 << 10;

fn kind_of(t: FileType) -> Option<u32> {
    Some(match t {
        FileType::Fifo => libc::S_IFIFO,
        FileType::CharacterDevice => return None, // may be an overlay whiteout: stat it
        FileType::Directory => libc::S_IFDIR,
        FileType::BlockDevice => libc::S_IFBLK,
        FileType::RegularFile => libc::S_IFREG,
        FileType::Symlink => libc::S_IFLNK,
        FileType::Socket => libc::S_IFSOCK,
        FileType::Unknown => return None, // d_type not filled in by this filesystem: stat it
    })
}

/// One layer's own view of a directory: the names it holds and the names its whiteouts hide.
pub struct LayerDir {
    /// Its names (whiteouts left out), in on-disk order.
    pub names: Vec<ListEntry>,
    /// Names hidden in the layers below: by `.wh.NAME` files or overlay 0/0 char devices.
    pub whiteouts: Vec<OsString>,
}

/// Reads the directory `path` of `layer` (index `index` in its stack) raw, sorting its names
/// from its whiteouts (both formats). Only char devices are stat'ed: the one file type that may
/// be a whiteout.
pub fn read_layer_dir(layer: &Layer, index: usize, path: &Path) -> io::Result<LayerDir> {
    read_dir_fd(&layer.open_dir(path)?, index)
}

/// [`read_layer_dir`] of the directory open as `dir` (a [`SafeFd`] of layer `index`).
pub fn read_dir_fd(dir: &SafeFd, index: usize) -> io::Result<LayerDir> {
    let mut out = LayerDir { names: Vec::new(), whiteouts: Vec::new() };
    scan_dir_fd(dir, index, |n| {
        match n {
            LayerName::Entry(le) => out.names.push(le),
            LayerName::Whiteout(name) => out.whiteouts.push(name),
            LayerName::OpaqueMarker => {}
        }
        true
    })?;
    Ok(out)
}

/// One name read from a layer directory.
pub enum LayerName {
    /// A name the layer holds.
    Entry(ListEntry),
    /// A name the layer hides in the layers below (a `.wh.` file or an overlay 0/0 device).
    Whiteout(OsString),
    /// The OCI opaque marker `.wh..wh..opq`: the layer hides every lower child of the directory.
    OpaqueMarker,
}

/// Reads the directory open as `dir` (of layer `index`) one name at a time, in on-disk order,
/// sorting names from whiteouts, until `each` returns false. Returns whether it read every name.
/// Only char devices are stat'ed: the one file type that may be a whiteout. Read with getdents64
/// alone (fdopendir costs an fstat and two fcntl per directory, and a name index reads the
/// directory in every layer of a merge).
pub fn scan_dir_fd(dir: &SafeFd, index: usize, each: impl FnMut(LayerName) -> bool) -> io::Result<bool> {
    scan_fresh_dir_fd(&dir.reopen()?, index, each)
}

/// [`scan_dir_fd`] reading `dir` itself from its read position: only for a descriptor just
/// opened and not yet shared (no reopen: an open and a close less per directory read).
pub fn scan_fresh_dir_fd(
    dir: &SafeFd,
    index: usize,
    mut each: impl FnMut(LayerName) -> bool,
) -> io::Result<bool> {
    let mut buf = Vec::with_capacity(DIRENT_BUFFER);
    let mut d = RawDir::new(dir, buf.spare_capacity_mut());
    while let Some(ent) = d.next() {
        let ent = ent?;
        let name = OsStr::from_bytes(ent.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let found = if is_opaque_marker(name) {
            LayerName::OpaqueMarker
        } else if is_reserved(name) {
            match hidden_name(name) {
                Some(hidden) => LayerName::Whiteout(hidden.to_os_string()),
                None => continue,
            }
        } else {
            let kind = match kind_of(ent.file_type()) {
                Some(k) => Some(k),
                None => match stat_at(dir.as_fd(), name)? {
                    Some(st) if is_overlay_whiteout_stat(&st) => None,
                    Some(st) => Some(file_type(&st)),
                    None => continue,
                },
            };
            match kind {
                Some(kind) => LayerName::Entry(ListEntry {
                    name: name.to_os_string(),
                    layer: index,
                    kind,
                    ino: ent.ino(),
                }),
                None => LayerName::Whiteout(name.to_os_string()),
            }
        };
        if !each(found) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// [`read_dir_fd`]'s view of a layer's directory from the layer's record (the same scan made it).
fn recorded_layer_dir(rd: RecordedDir<'_>, index: usize) -> LayerDir {
    let mut out = LayerDir { names: Vec::with_capacity(rd.len()), whiteouts: Vec::new() };
    for n in rd.names() {
        match n.file_type {
            0 => out.whiteouts.push(n.name.to_os_string()),
            kind => out.names.push(ListEntry { name: n.name.to_os_string(), layer: index, kind, ino: n.ino }),
        }
    }
    out
}

/// Builds the merged listing of `dir`.
pub(crate) fn merge(stack: &Stack, dir: &Entry) -> io::Result<Listing> {
    let mut entries: Vec<ListEntry> = Vec::new();
    let mut seen: HashSet<OsString> = HashSet::new();
    // Names hidden by whiteouts of the layers above the one being read.
    let mut hidden: HashSet<OsString> = HashSet::new();
    for &l in &dir.layers {
        let own = match stack.recorded_dir(l, &dir.path) {
            // A layer's record lists its copy without reading it.
            Some(Some(rd)) => Ok(recorded_layer_dir(rd, l)),
            Some(None) => continue,
            None => stack.dir_fd(l, &dir.path).and_then(|fd| read_dir_fd(&fd, l)),
        };
        let own = match own {
            Ok(own) => own,
            Err(e) if is_gone(&e) => continue,
            Err(e) => return Err(e),
        };
        for le in own.names {
            if !hidden.contains(&le.name) && seen.insert(le.name.clone()) {
                entries.push(le);
            }
        }
        hidden.extend(own.whiteouts);
    }
    Ok(Listing { layers: dir.layers.clone(), entries })
}

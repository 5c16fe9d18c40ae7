//! Merged directory listings.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use nix::dir::{Dir, Type};

use super::layer::{file_type, stat_at};
use super::stack::{Entry, Stack, is_gone};
use crate::layer::whiteout::{hidden_name, is_overlay_whiteout_stat, is_reserved};

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
/// (top layer's names first, each layer in its on-disk order).
#[derive(Debug)]
pub struct Listing {
    /// The layers that were merged (the directory entry's `layers`).
    pub layers: Vec<usize>,
    /// The visible entries.
    pub entries: Vec<ListEntry>,
}

fn kind_of(t: Option<Type>) -> Option<u32> {
    Some(match t? {
        Type::Fifo => libc::S_IFIFO,
        Type::CharacterDevice => return None, // may be an overlay whiteout: stat it
        Type::Directory => libc::S_IFDIR,
        Type::BlockDevice => libc::S_IFBLK,
        Type::File => libc::S_IFREG,
        Type::Symlink => libc::S_IFLNK,
        Type::Socket => libc::S_IFSOCK,
    })
}

fn dir_fd<'a>(
    stack: &Stack,
    layer: usize,
    path: &std::path::Path,
    slot: &'a mut Option<std::sync::Arc<std::os::fd::OwnedFd>>,
) -> io::Result<&'a std::sync::Arc<std::os::fd::OwnedFd>> {
    if slot.is_none() {
        *slot = Some(stack.dir_fd(layer, path)?);
    }
    slot.as_ref().ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))
}

/// Builds the merged listing of `dir`.
pub(crate) fn merge(stack: &Stack, dir: &Entry) -> io::Result<Listing> {
    let mut entries: Vec<ListEntry> = Vec::new();
    let mut seen: HashSet<OsString> = HashSet::new();
    // Names hidden by whiteouts of the layers above the one being read.
    let mut hidden: HashSet<OsString> = HashSet::new();
    for &l in &dir.layers {
        let fd = match stack.layers()[l].open_dir(&dir.path) {
            Ok(fd) => fd,
            Err(e) if is_gone(&e) => continue,
            Err(e) => return Err(e),
        };
        let mut d = Dir::from_fd(fd)?;
        let mut dfd = None;
        let mut layer_whiteouts: Vec<OsString> = Vec::new();
        for ent in d.iter() {
            let ent = ent?;
            let name = OsStr::from_bytes(ent.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            if is_reserved(name) {
                if let Some(h) = hidden_name(name) {
                    layer_whiteouts.push(h.to_os_string());
                }
                continue;
            }
            if seen.contains(name) || hidden.contains(name) {
                continue;
            }
            let kind = match kind_of(ent.file_type()) {
                Some(k) => k,
                None => match stat_at(dir_fd(stack, l, &dir.path, &mut dfd)?.as_fd(), name)? {
                    Some(st) if is_overlay_whiteout_stat(&st) => {
                        layer_whiteouts.push(name.to_os_string());
                        continue;
                    }
                    Some(st) => file_type(&st),
                    None => continue,
                },
            };
            seen.insert(name.to_os_string());
            entries.push(ListEntry { name: name.to_os_string(), layer: l, kind, ino: ent.ino() });
        }
        hidden.extend(layer_whiteouts);
    }
    Ok(Listing { layers: dir.layers.clone(), entries })
}

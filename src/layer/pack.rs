//! Packing a directory tree (a layer dir or an overlay-style upper dir) into a
//! deterministic layer tar, with both digests computed as it is written.
//!
//! Order: a depth-first walk with each directory's children sorted bytewise by
//! their tar names, so parents come before children and the bytes don't depend
//! on the order files were created in. overlayfs whiteouts are translated to OCI
//! ones here; OCI `.wh.` files pass through as themselves.

use std::ffi::{OsStr, OsString};
use std::io::{BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::compression::Compression;
use super::tarwriter::{EntryKind, EntryMeta, TarEntryWriter};
use super::whiteout;
use crate::oci::Digest;
use crate::oci::digest::HashingWriter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackOptions {
    pub compression: Compression,
    /// SOURCE_DATE_EPOCH-style: mtimes later than this are written as this.
    pub clamp_mtime: Option<i64>,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions { compression: Compression::Gzip, clamp_mtime: None }
    }
}

/// What one pack wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub compression: Compression,
    /// sha256 of the bytes written to `out`.
    pub blob: Digest,
    pub blob_size: u64,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    pub tar_size: u64,
    pub entries: u64,
}

/// Packs everything under `root` (not `root` itself) into `out`.
pub fn pack_dir(root: &Path, out: impl Write, opts: &PackOptions) -> Result<Packed> {
    let encoder = opts.compression.encoder(HashingWriter::new(out))?;
    let tar_side = BufWriter::with_capacity(1 << 20, HashingWriter::new(encoder));
    let mut w = TarEntryWriter::new(tar_side, opts.clamp_mtime);
    let root_dir = std::fs::File::open(root).with_context(|| format!("opening {}", root.display()))?;
    w.set_marker(
        super::override_stat::layer_marker(root_dir.as_fd())
            .with_context(|| format!("reading the override marker of {}", root.display()))?,
    );
    walk(&mut w, root, &mut Vec::new())?;
    let entries = w.entries();
    let tar_side = w.finish()?;
    let (encoder, diff_id, tar_size) =
        tar_side.into_inner().map_err(|e| e.into_error()).context("writing the layer")?.finish();
    let (_, blob, blob_size) = encoder.finish().context("finishing the compressed stream")?.finish();
    Ok(Packed { compression: opts.compression, blob, blob_size, diff_id, tar_size, entries })
}

/// One child of a directory, under the name it gets in the tar.
struct Child {
    tar_name: OsString,
    source: PathBuf,
    what: ChildKind,
    is_dir: bool,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum ChildKind {
    Normal,
    /// A `.wh.` file of the upper (strata's are hard links of one shared empty file, which the
    /// tar must not turn into link entries).
    WhiteoutFile,
    /// overlayfs whiteout (char 0/0) written as `.wh.NAME`.
    OverlayWhiteout,
    /// `.wh..wh..opq` synthesised for an overlayfs opaque directory.
    OpaqueMarker,
}

fn walk<W: Write>(w: &mut TarEntryWriter<W>, dir: &Path, rel: &mut Vec<u8>) -> Result<()> {
    let mut children = Vec::new();
    for ent in std::fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))? {
        let ent = ent.with_context(|| format!("reading directory {}", dir.display()))?;
        let name = ent.file_name();
        let source = ent.path();
        let ft = ent.file_type().with_context(|| format!("stat {}", source.display()))?;
        let meta = if ft.is_char_device() { Some(std::fs::symlink_metadata(&source)?) } else { None };
        if meta.as_ref().is_some_and(whiteout::is_overlay_whiteout) {
            let tar_name = whiteout::whiteout_name(&name);
            children.push(Child { tar_name, source, what: ChildKind::OverlayWhiteout, is_dir: false });
        } else {
            let what = match whiteout::classify(&name).with_context(|| format!("{}", source.display()))? {
                whiteout::NameKind::Normal => ChildKind::Normal,
                _ if ft.is_dir() => ChildKind::Normal, // not a whiteout: kept as it is
                _ => ChildKind::WhiteoutFile,
            };
            children.push(Child { tar_name: name, source, what, is_dir: ft.is_dir() });
        }
    }
    if is_overlay_opaque(dir)? {
        let source = dir.to_path_buf();
        children.push(Child {
            tar_name: whiteout::OPAQUE_MARKER.into(),
            source,
            what: ChildKind::OpaqueMarker,
            is_dir: false,
        });
    }
    // On a name clash (char 0/0 `x` next to a real `.wh.x`, or a real opaque marker
    // in an xattr-opaque dir) the real file wins, whatever the readdir order.
    children.sort_by(|a, b| (a.tar_name.as_bytes(), &a.what).cmp(&(b.tar_name.as_bytes(), &b.what)));
    children.dedup_by(|b, a| a.tar_name == b.tar_name);

    for child in children {
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(child.tar_name.as_bytes());
        match child.what {
            ChildKind::Normal => {
                w.append_path(rel, &child.source)?;
                if child.is_dir {
                    walk(w, &child.source, rel)?;
                }
            }
            ChildKind::WhiteoutFile | ChildKind::OverlayWhiteout | ChildKind::OpaqueMarker => {
                let mut meta = EntryMeta::from_path(&child.source)?;
                // An empty regular file, owned and dated like the marker it stands for.
                meta.kind = EntryKind::File { size: 0 };
                if child.what != ChildKind::WhiteoutFile {
                    meta.mode = 0o600;
                }
                meta.xattrs.clear();
                w.append(rel, &meta, Some(&mut std::io::empty()))?;
            }
        }
        rel.truncate(len);
    }
    Ok(())
}

fn is_overlay_opaque(dir: &Path) -> Result<bool> {
    for name in whiteout::OVERLAY_OPAQUE_XATTRS {
        match xattr::get(dir, name) {
            Ok(Some(v)) if whiteout::is_opaque_xattr(OsStr::new(name), &v) => return Ok(true),
            Ok(_) => {}
            // Not root (trusted.*) or no xattr support: can't be marked opaque that way.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP)) => {}
            Err(e) => return Err(e).with_context(|| format!("reading {name} of {}", dir.display())),
        }
    }
    Ok(false)
}

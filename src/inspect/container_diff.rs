//! `strata diff CONTAINER`: what the writable layer changes, read from the upper dir alone (plus
//! lookups in the image's layers), so the cost follows the change, not the image.

use std::ffi::OsStr;
use std::path::Path;

use anyhow::{Context, Result};

use super::change::{Change, Kind, sort};
use crate::layer::whiteout::{NameKind, classify, is_opaque_xattr, is_overlay_whiteout};
use crate::union::Stack;

/// Changes of `upper` against the merged `lower` stack, sorted like Docker's.
pub fn upper_changes(upper: &Path, lower: &Stack) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(upper, Path::new(""), false, lower, &mut out)?;
    sort(&mut out);
    out.dedup();
    Ok(out)
}

/// `hidden_below`: an ancestor is opaque, so nothing of the lower layers shows under `rel`.
fn walk(upper: &Path, rel: &Path, hidden_below: bool, lower: &Stack, out: &mut Vec<Change>) -> Result<()> {
    let dir = upper.join(rel);
    let opaque = hidden_below || is_opaque(&dir)?;
    let mut present = Vec::new();
    let entries = std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for e in entries {
        let e = e?;
        let name = e.file_name();
        let child = rel.join(&name);
        let meta = e.metadata().with_context(|| format!("cannot stat {}", e.path().display()))?;
        match classify(&name).unwrap_or(NameKind::Normal) {
            NameKind::Opaque => continue,
            NameKind::Whiteout(hidden) => {
                if !opaque && in_lower(lower, &rel.join(hidden))? {
                    out.push(Change::new(Kind::Deleted, &rel.join(hidden)));
                }
                continue;
            }
            NameKind::Normal if is_overlay_whiteout(&meta) => {
                if !opaque && in_lower(lower, &child)? {
                    out.push(Change::new(Kind::Deleted, &child));
                }
                continue;
            }
            NameKind::Normal => {}
        }
        present.push(name.clone());
        let existed = !opaque && in_lower(lower, &child)?;
        out.push(Change::new(if existed { Kind::Changed } else { Kind::Added }, &child));
        if meta.is_dir() {
            walk(upper, &child, opaque, lower, out)?;
        }
    }
    // An opaque directory (deleted and recreated) removes every lower child it does not have again.
    if opaque && !hidden_below {
        if let Some(entry) = lower.lookup(rel)?.filter(|e| e.is_dir()) {
            for le in &lower.list(&entry)?.entries {
                if !present.contains(&le.name) {
                    out.push(Change::new(Kind::Deleted, &rel.join(&le.name)));
                }
            }
        }
    }
    Ok(())
}

fn in_lower(lower: &Stack, rel: &Path) -> Result<bool> {
    Ok(lower.lookup(rel).with_context(|| format!("looking up /{} in the image", rel.display()))?.is_some())
}

/// An upper directory is opaque with an OCI marker inside or an overlayfs opaque xattr.
fn is_opaque(dir: &Path) -> Result<bool> {
    if dir.join(crate::layer::whiteout::OPAQUE_MARKER).symlink_metadata().is_ok() {
        return Ok(true);
    }
    for x in crate::layer::whiteout::OVERLAY_OPAQUE_XATTRS {
        if let Ok(Some(v)) = xattr::get(dir, x) {
            if is_opaque_xattr(OsStr::new(x), &v) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

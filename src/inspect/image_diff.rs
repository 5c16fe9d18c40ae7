//! `strata diff IMAGE IMAGE`: `A`/`C`/`D` between two merged trees, in the format and order of
//! container diff (Docker's rules: a deleted directory is one `D`; an added one is `A` for it and
//! everything below; a directory with changes below is `C`).
//!
//! An entry is changed when its type, mode, owner, device number, xattrs, symlink target, or —
//! for non-directories — size, mtime or content differ. Directory mtimes are ignored, as Docker
//! does. Entries from the same layer (same diff_id) at the same path are equal without reading
//! them, and a directory merged from the same layers is equal with everything below it; content
//! is hashed only when everything else matches.

use std::os::unix::ffi::OsStrExt;

use anyhow::{Context, Result};

use super::change::{Change, Kind, sort};
use super::node;
use super::view::View;
use super::walk;
use crate::oci::Digest;
use crate::union::Entry;

/// The changes that turn `a`'s tree into `b`'s, sorted.
pub fn image_changes(a: &View, b: &View) -> Result<Vec<Change>> {
    let ra = a.stack.root().with_context(|| format!("opening {}", a.name))?;
    let rb = b.stack.root().with_context(|| format!("opening {}", b.name))?;
    let mut out = Vec::new();
    compare_dir(a, b, &ra, &rb, &mut out)?;
    sort(&mut out);
    Ok(out)
}

/// diff_ids of the layers an entry is merged from; `None` when one is a container's upper
/// (which can change, so it is never taken as equal unread).
fn layer_ids(v: &View, e: &Entry) -> Option<Vec<Digest>> {
    e.layers.iter().map(|&l| v.origin(l).diff_id().cloned()).collect()
}

/// Compares two directories' children; returns whether anything below changed.
fn compare_dir(a: &View, b: &View, da: &Entry, db: &Entry, out: &mut Vec<Change>) -> Result<bool> {
    if let (Some(x), Some(y)) = (layer_ids(a, da), layer_ids(b, db)) {
        if x == y {
            return Ok(false);
        }
    }
    let ka = children(a, da)?;
    let kb = children(b, db)?;
    let before = out.len();
    let (mut i, mut j) = (0, 0);
    while i < ka.len() || j < kb.len() {
        let ord = match (ka.get(i), kb.get(j)) {
            (Some(x), Some(y)) => x.name().as_bytes().cmp(y.name().as_bytes()),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                out.push(Change::new(Kind::Deleted, &ka[i].path));
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                added(b, &kb[j], out)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                compare_entry(a, b, &ka[i], &kb[j], out)?;
                i += 1;
                j += 1;
            }
        }
    }
    Ok(out.len() > before)
}

fn compare_entry(a: &View, b: &View, x: &Entry, y: &Entry, out: &mut Vec<Change>) -> Result<()> {
    let changed = differs(a, b, x, y).with_context(|| format!("comparing /{}", y.path.display()))?;
    let at = out.len();
    match (x.is_dir(), y.is_dir()) {
        (true, true) => {
            if compare_dir(a, b, x, y, out)? && !changed {
                // Docker marks a directory changed when something below it is.
                out.insert(at, Change::new(Kind::Changed, &y.path));
            }
        }
        // A directory became something else: its children are gone.
        (true, false) => {
            for k in children(a, x)? {
                out.push(Change::new(Kind::Deleted, &k.path));
            }
        }
        // Something became a directory: everything in it is new.
        (false, true) => {
            for k in children(b, y)? {
                added(b, &k, out)?;
            }
        }
        (false, false) => {}
    }
    if changed {
        out.insert(at, Change::new(Kind::Changed, &y.path));
    }
    Ok(())
}

/// `A` for `e` and, for a directory, everything below it.
fn added(v: &View, e: &Entry, out: &mut Vec<Change>) -> Result<()> {
    walk::walk(&v.stack, e.clone(), &mut |x| {
        out.push(Change::new(Kind::Added, &x.path));
        Ok(true)
    })
}

fn children(v: &View, dir: &Entry) -> Result<Vec<Entry>> {
    walk::children(&v.stack, dir)
        .with_context(|| format!("cannot list /{} in {}", dir.path.display(), v.name))
}

/// Whether the entries themselves differ (not looking below directories).
fn differs(a: &View, b: &View, x: &Entry, y: &Entry) -> Result<bool> {
    let same_layer = match (a.origin(x.layer).diff_id(), b.origin(y.layer).diff_id()) {
        (Some(p), Some(q)) => p == q,
        _ => false,
    };
    if same_layer && !x.is_dir() {
        // One immutable layer file, seen twice.
        return Ok(false);
    }
    let (s, t) = (&x.stat, &y.stat);
    if s.st_mode != t.st_mode || s.st_uid != t.st_uid || s.st_gid != t.st_gid || s.st_rdev != t.st_rdev {
        return Ok(true);
    }
    if !x.is_dir()
        && (s.st_size != t.st_size || s.st_mtime != t.st_mtime || s.st_mtime_nsec != t.st_mtime_nsec)
    {
        return Ok(true);
    }
    if node::xattrs(&a.stack, x)? != node::xattrs(&b.stack, y)? {
        return Ok(true);
    }
    if node::is_symlink(x) {
        return Ok(node::read_link(&a.stack, x)? != node::read_link(&b.stack, y)?);
    }
    if node::is_reg(x) {
        return Ok(node::content_hash(&a.stack, x)? != node::content_hash(&b.stack, y)?);
    }
    Ok(false)
}

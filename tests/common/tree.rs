//! Compares two unpacked root filesystems entry by entry: type, mode, owner, size, content hash,
//! xattrs, link target, device numbers, hard-link count and (for non-directories) mtime.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub sha256: Option<String>,
    pub link: Option<String>,
    pub rdev: u64,
    pub nlink: u64,
    pub mtime: Option<i64>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Every entry under `root` by relative path (root itself included as "").
pub fn walk(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    visit(root, root, &mut out);
    out
}

fn visit(root: &Path, p: &Path, out: &mut BTreeMap<String, Entry>) {
    let meta = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "socket"
    };
    let sha256 = ft.is_file().then(|| hex::encode(Sha256::digest(std::fs::read(p).unwrap())));
    let link = ft.is_symlink().then(|| std::fs::read_link(p).unwrap().to_string_lossy().into_owned());
    let mut xattrs = BTreeMap::new();
    if !ft.is_symlink() {
        for name in xattr::list(p).unwrap() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("security.") {
                continue;
            }
            xattrs.insert(name.clone(), xattr::get(p, &name).unwrap().unwrap_or_default());
        }
    }
    let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
    out.insert(
        rel,
        Entry {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: if ft.is_dir() { 0 } else { meta.size() },
            sha256,
            link,
            rdev: if ft.is_char_device() || ft.is_block_device() { meta.rdev() } else { 0 },
            nlink: if ft.is_dir() { 0 } else { meta.nlink() },
            mtime: (!ft.is_dir()).then(|| meta.mtime()),
            xattrs,
        },
    );
    if ft.is_dir() {
        let mut children: Vec<_> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).collect();
        children.sort();
        for c in children {
            visit(root, &c, out);
        }
    }
}

/// Panics with every difference listed.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let what = format!("{} differs from {}", actual.display(), expected.display());
    assert_same_maps(&what, &walk(expected), &walk(actual));
}

/// Compares two path → facts maps; panics with `what` and every missing, differing and
/// unexpected path.
pub fn assert_same_maps<T: PartialEq + std::fmt::Debug>(
    what: &str,
    want: &BTreeMap<String, T>,
    got: &BTreeMap<String, T>,
) {
    let mut diffs = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => diffs.push(format!("missing: {k:?}")),
            Some(g) if g != v => diffs.push(format!("differs: {k:?}\n  want {v:?}\n  got  {g:?}")),
            _ => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        diffs.push(format!("unexpected: {k:?}"));
    }
    assert!(diffs.is_empty(), "{what}:\n{}", diffs.join("\n"));
}

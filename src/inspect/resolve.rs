//! Path resolution through a merged tree that follows symlinks the way a chroot would: an
//! absolute target starts again at the image root, `..` at the root stays at the root. Every step
//! is a `Stack` lookup, so nothing outside the layer roots is ever touched — a link to
//! `/etc/passwd` reads the image's `/etc/passwd`, never the host's.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::node::{is_symlink, read_link};
use crate::union::{Entry, Stack};

/// Linux's limit on symlinks followed in one resolution.
const MAX_SYMLINKS: usize = 40;

/// Resolves `path` (absolute or relative to the root). Symlinks in the middle are always
/// followed; the last component only when `follow_last`. `Ok(None)` when it does not exist.
pub fn resolve(stack: &Stack, path: &Path, follow_last: bool) -> Result<Option<Entry>> {
    let mut todo: VecDeque<OsString> = components(path.as_os_str().as_bytes());
    // The chain of directories from the root to the current one, for `..`.
    let mut chain: Vec<Entry> = vec![stack.root()?];
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        let cur = match chain.last() {
            Some(c) => c.clone(),
            None => stack.root()?,
        };
        if name == ".." {
            if chain.len() > 1 {
                chain.pop();
            }
            continue;
        }
        if !cur.is_dir() {
            bail!("/{} is not a directory", cur.path.display());
        }
        let Some(next) = stack.lookup_child(&cur, &name)? else { return Ok(None) };
        let last = todo.is_empty();
        if is_symlink(&next) && (!last || follow_last) {
            links += 1;
            if links > MAX_SYMLINKS {
                bail!("too many levels of symbolic links resolving {}", path.display());
            }
            let target = read_link(stack, &next)?;
            if target.is_empty() {
                // An empty target names nothing (ENOENT), as in the kernel.
                return Ok(None);
            }
            let mut rest = components(&target);
            rest.extend(todo.drain(..));
            todo = rest;
            if target.starts_with(b"/") {
                chain.truncate(1);
            }
            continue;
        }
        chain.push(next);
    }
    Ok(chain.pop())
}

/// The path of an entry as shown to users: `/` + its path in the image.
pub fn shown(e: &Entry) -> PathBuf {
    Path::new("/").join(&e.path)
}

/// Splits on `/`, dropping empty and `.` components (they change nothing).
fn components(p: &[u8]) -> VecDeque<OsString> {
    p.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
        .collect()
}

//! Walking a merged tree in a fixed order: each directory's children sorted bytewise by name,
//! parents before children — so `ls -R`, `export` and `diff` give the same output every run.

use std::io;
use std::os::unix::ffi::OsStrExt;

use crate::union::{Entry, Stack};

/// The merged children of the directory `dir`, sorted by name.
pub fn children(stack: &Stack, dir: &Entry) -> io::Result<Vec<Entry>> {
    let listing = stack.list(dir)?;
    let mut out = Vec::with_capacity(listing.entries.len());
    for le in &listing.entries {
        // A name listed but gone on lookup raced with a change in a container's upper: skip it.
        if let Some(e) = stack.lookup_child(dir, &le.name)? {
            out.push(e);
        }
    }
    out.sort_by(|a, b| a.name().as_bytes().cmp(b.name().as_bytes()));
    Ok(out)
}

/// Visits `top` and everything below it depth-first, parents first, children by name.
/// `visit` returns whether to descend into a directory.
pub fn walk(
    stack: &Stack,
    top: Entry,
    visit: &mut dyn FnMut(&Entry) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    // An explicit stack of pending siblings keeps deep trees off the call stack.
    let mut pending: Vec<std::vec::IntoIter<Entry>> = vec![vec![top].into_iter()];
    while let Some(level) = pending.last_mut() {
        let Some(e) = level.next() else {
            pending.pop();
            continue;
        };
        if visit(&e)? && e.is_dir() {
            let kids = children(stack, &e)
                .map_err(|err| anyhow::anyhow!("cannot list /{}: {err}", e.path.display()))?;
            pending.push(kids.into_iter());
        }
    }
    Ok(())
}

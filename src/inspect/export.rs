//! `strata export`: the merged tree flattened into one tar (what `docker export` gives), written
//! with the deterministic `TarEntryWriter`. No whiteouts can appear: the walk only sees the merged
//! view. Names of one inode in one layer become hard-link entries to the first name written.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use anyhow::{Context, Result};

use super::node;
use super::view::View;
use super::walk;
use crate::layer::{EntryKind, EntryMeta, TarEntryWriter};
use crate::union::Entry;

/// Writes the tar of `view` to `out`; returns the number of entries written.
pub fn export(view: &View, out: impl Write) -> Result<u64> {
    let stack = &view.stack;
    let mut w = TarEntryWriter::new(out, None);
    // (stack layer, inode) → the tar name of its first visible name.
    let mut first_name: HashMap<(usize, u64), Vec<u8>> = HashMap::new();
    let root = stack.root().with_context(|| format!("opening the root of {}", view.name))?;
    walk::walk(stack, root, &mut |e| {
        // The root itself is not an entry (as in a layer tar); its children are.
        if e.path.as_os_str().is_empty() {
            return Ok(true);
        }
        let name = e.path.as_os_str().as_bytes().to_vec();
        write_entry(view, &mut w, &mut first_name, e, &name)
            .with_context(|| format!("exporting /{} from {}", e.path.display(), view.name))?;
        Ok(true)
    })?;
    let n = w.entries();
    w.finish()?;
    Ok(n)
}

fn write_entry<W: Write>(
    view: &View,
    w: &mut TarEntryWriter<W>,
    first_name: &mut HashMap<(usize, u64), Vec<u8>>,
    e: &Entry,
    name: &[u8],
) -> Result<()> {
    let stack = &view.stack;
    let st = &e.stat;
    let mut meta = EntryMeta {
        kind: EntryKind::Dir,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid as u64,
        gid: st.st_gid as u64,
        mtime_sec: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
        xattrs: node::xattrs(stack, e)?,
    };
    let (major, minor) = (nix::sys::stat::major(st.st_rdev), nix::sys::stat::minor(st.st_rdev));
    if !e.is_dir() && st.st_nlink > 1 {
        let key = (e.layer, st.st_ino);
        if let Some(first) = first_name.get(&key) {
            meta.kind = EntryKind::HardLink { target: first.clone() };
            meta.xattrs = Vec::new();
            return w.append(name, &meta, None);
        }
        first_name.insert(key, name.to_vec());
    }
    meta.kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => EntryKind::Dir,
        libc::S_IFREG => EntryKind::File { size: st.st_size.max(0) as u64 },
        libc::S_IFLNK => EntryKind::Symlink { target: node::read_link(stack, e)? },
        libc::S_IFCHR => EntryKind::Char { major, minor },
        libc::S_IFBLK => EntryKind::Block { major, minor },
        libc::S_IFIFO => EntryKind::Fifo,
        _ => {
            // A socket (left in a container's upper by a process) has no tar form: skip it.
            tracing::warn!("skipping the socket /{} in {}", e.path.display(), view.name);
            return Ok(());
        }
    };
    if let EntryKind::File { .. } = meta.kind {
        let mut f = node::open(stack, e)?;
        return w.append(name, &meta, Some(&mut f));
    }
    w.append(name, &meta, None)
}

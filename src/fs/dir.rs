//! readdir / readdirplus over merged listings.
//!
//! opendir is answered with ENOSYS: the kernel then opens directories without asking and keeps
//! their listings in its own cache (`FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE`), which it drops when
//! the directory changes through the mount. A listing walk costs no opendir/releasedir round
//! trips, and a second walk of an unchanged tree reaches the daemon not at all.
//!
//! A readdir offset is `stream << 32 | position` (see [`DirStream`]); 0 starts a new stream.

use std::ffi::OsStr;
use std::sync::Arc;

use fuser::FileAttr;
use nix::errno::Errno;

use super::attr::kind;
use super::filesystem::{R, StrataFs, errno, lock};
use super::handles::DirStream;
use crate::union::{Entry, ListEntry};

/// The offset of `position` in stream `stream`.
fn offset(stream: u32, position: u64) -> u64 {
    (u64::from(stream) << 32) | position
}

/// What readdir reports at one position.
pub(crate) struct Dirent<'a> {
    pub name: &'a OsStr,
    /// The offset of the next entry.
    pub next: u64,
    pub kind: fuser::FileType,
    /// `None` for "." and "..".
    pub listed: Option<&'a ListEntry>,
    /// st_ino of "." or ".." (0 for a listed name: ask [`StrataFs::dirent_ino`]).
    pub ino: u64,
}

impl DirStream {
    /// The entry at `position`: "." and ".." first, then the listing.
    pub(crate) fn at(&self, position: u64) -> Option<Dirent<'_>> {
        let next = offset(self.id, position + 1);
        let dir = fuser::FileType::Directory;
        match position {
            0 => Some(Dirent { name: OsStr::new("."), next, kind: dir, listed: None, ino: self.dot }),
            1 => Some(Dirent { name: OsStr::new(".."), next, kind: dir, listed: None, ino: self.dotdot }),
            _ => {
                let le = self.listing.entries.get(usize::try_from(position - 2).ok()?)?;
                Some(Dirent { name: &le.name, next, kind: kind(le.kind), listed: Some(le), ino: 0 })
            }
        }
    }
}

impl StrataFs {
    /// Hands the entries of directory `ino` from `offset` on to `add` (readdir and readdirplus
    /// fill their replies with it) until `add` reports the reply full. `add` also gets the
    /// directory and whether the listing is still current (see [`StrataFs::plus_entry`]). A call
    /// that finds nothing left ends the walk.
    pub(crate) fn walk_dir(
        &self,
        ino: u64,
        offset: u64,
        mut add: impl FnMut(&Entry, bool, Dirent<'_>) -> bool,
    ) -> R<()> {
        let _ns = self.ns.read().unwrap_or_else(|e| e.into_inner());
        let (stream, start) = ((offset >> 32) as u32, offset & 0xffff_ffff);
        let (dir, s) = self.dir_stream(ino, stream)?;
        let current = s.generation == self.stack.generation();
        let mut position = start;
        while let Some(d) = s.at(position) {
            if add(&dir, current, d) {
                break;
            }
            position += 1;
        }
        if position == start {
            self.handles.end_stream(s.id);
        }
        Ok(())
    }

    /// The directory `ino` and the listing a readdir in `stream` reads: that reader's, else
    /// (a new reader, or a stream no longer kept) a fresh one.
    fn dir_stream(&self, ino: u64, stream: u32) -> R<(Entry, Arc<DirStream>)> {
        let entry = self.entry(ino)?;
        if !entry.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if let Some(s) = self.handles.stream(stream, ino) {
            return Ok((entry, s));
        }
        let generation = self.stack.generation();
        // A new reader of a directory unchanged since another began shares that listing.
        let (listing, dot, dotdot) = match self.handles.stream_at(ino, generation) {
            Some(same) => (same.listing.clone(), same.dot, same.dotdot),
            None => {
                let listing = self.stack.list(&entry).map_err(errno)?;
                let dot = self.st_ino(&entry);
                let dotdot = match entry.path.parent() {
                    Some(p) => self.lookup_path(p).map(|pe| self.st_ino(&pe)).unwrap_or(dot),
                    None => dot,
                };
                (listing, dot, dotdot)
            }
        };
        let s = self.handles.add_stream(|id| DirStream { id, ino, listing, generation, dot, dotdot });
        Ok((entry, s))
    }

    /// The inode number readdir reports for a listed name.
    pub(crate) fn dirent_ino(&self, dir: &Entry, le: &ListEntry) -> u64 {
        if self.stack.has_upper() && le.layer == 0 {
            // May carry an origin: ask the entry.
            if let Ok(Some(e)) = self.child(dir, &le.name) {
                return self.st_ino(&e);
            }
        }
        let dev = self.stack.layers().get(le.layer).map(|l| l.dev()).unwrap_or(0);
        lock(&self.nodes).current(self.inos.map(dev, le.ino))
    }

    /// One readdirplus entry: the child entry and its attributes. While the listing is
    /// `current`, the name is looked up only in the layer the listing found it in.
    pub(crate) fn plus_entry(&self, dir: &Entry, current: bool, le: &ListEntry) -> Option<(Entry, FileAttr)> {
        let e =
            if current { self.stack.listed_child(dir, le).map_err(errno) } else { self.child(dir, &le.name) };
        let e = e.ok()??;
        let a = self.attr(&e);
        Some((e, a))
    }
}

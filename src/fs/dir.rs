//! opendir / readdir / readdirplus over merged listings.

use fuser::FileAttr;
use nix::errno::Errno;

use super::attr::kind;
use super::filesystem::{R, StrataFs, errno};
use super::handles::DirHandle;
use crate::union::{Entry, ListEntry};

impl StrataFs {
    /// opendir: snapshot the merged listing. Returns the handle and whether the directory's
    /// contents come from lower layers only (immutable: the kernel may keep its cache).
    pub(crate) fn do_opendir(&self, ino: u64) -> R<(u64, bool)> {
        let _ns = self.ns.read().unwrap_or_else(|e| e.into_inner());
        let entry = self.entry(ino)?;
        if !entry.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let listing = self.stack.list(&entry).map_err(errno)?;
        let dot = self.attr(&entry);
        let dotdot = match entry.path.parent() {
            Some(p) => self.lookup_path(p).map(|pe| self.attr(&pe)).unwrap_or(dot),
            None => dot,
        };
        let lower_only = !entry.layers.contains(&0) || !self.stack.has_upper();
        Ok((self.handles.add_dir(DirHandle { entry, listing, dot, dotdot }), lower_only))
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
        self.inos.map(dev, le.ino)
    }

    /// One readdirplus entry: the child entry and its attributes.
    pub(crate) fn plus_entry(&self, dir: &Entry, le: &ListEntry) -> Option<(Entry, FileAttr)> {
        let e = self.child(dir, &le.name).ok()??;
        let a = self.attr(&e);
        Some((e, a))
    }

    /// File type of a listed name.
    pub(crate) fn dirent_kind(le: &ListEntry) -> fuser::FileType {
        kind(le.kind)
    }
}

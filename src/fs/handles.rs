//! Open file and directory handles, and passthrough backing ids shared per inode.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use fuser::{BackingId, FileAttr};

use crate::union::{Entry, Listing};

/// An open regular file.
#[derive(Debug)]
pub struct FileHandle {
    /// The layer file (upper when opened for writing).
    pub file: Arc<File>,
    /// Node id.
    pub ino: u64,
    /// Whether `file` is in the upper layer.
    pub upper: bool,
    /// Keeps the kernel's backing file alive while this handle is open.
    pub backing: Option<Arc<BackingId>>,
}

/// An open directory: a snapshot of its merged listing.
#[derive(Debug)]
pub struct DirHandle {
    /// The directory.
    pub entry: Entry,
    /// Its merged listing at opendir time.
    pub listing: Arc<Listing>,
    /// Attributes for "." and "..".
    pub dot: FileAttr,
    /// Attributes of the parent.
    pub dotdot: FileAttr,
}

/// A passthrough backing id, whether its file is in the upper, and whether it is writable.
type Backing = (Weak<BackingId>, bool, bool);

/// Every open handle.
#[derive(Debug, Default)]
pub struct Handles {
    next: AtomicU64,
    files: Mutex<HashMap<u64, Arc<FileHandle>>>,
    dirs: Mutex<HashMap<u64, Arc<DirHandle>>>,
    backing: Mutex<HashMap<u64, Backing>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Handles {
    fn id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers an open file; returns its fh.
    pub fn add_file(&self, h: FileHandle) -> u64 {
        let id = self.id();
        lock(&self.files).insert(id, Arc::new(h));
        id
    }

    /// The open file `fh`.
    pub fn file(&self, fh: u64) -> Option<Arc<FileHandle>> {
        lock(&self.files).get(&fh).cloned()
    }

    /// Closes `fh`.
    pub fn remove_file(&self, fh: u64) -> Option<Arc<FileHandle>> {
        lock(&self.files).remove(&fh)
    }

    /// Registers an open directory.
    pub fn add_dir(&self, h: DirHandle) -> u64 {
        let id = self.id();
        lock(&self.dirs).insert(id, Arc::new(h));
        id
    }

    /// The open directory `fh`.
    pub fn dir(&self, fh: u64) -> Option<Arc<DirHandle>> {
        lock(&self.dirs).get(&fh).cloned()
    }

    /// Closes directory `fh`.
    pub fn remove_dir(&self, fh: u64) {
        lock(&self.dirs).remove(&fh);
    }

    /// The live backing id of inode `ino`, whether it is an upper file, and writable.
    pub fn backing(&self, ino: u64) -> Option<(Arc<BackingId>, bool, bool)> {
        let mut m = lock(&self.backing);
        match m.get(&ino).map(|(b, up, w)| (b.upgrade(), *up, *w)) {
            Some((Some(b), up, w)) => Some((b, up, w)),
            Some((None, _, _)) => {
                m.remove(&ino);
                None
            }
            None => None,
        }
    }

    /// Records the backing id of `ino`.
    pub fn set_backing(&self, ino: u64, b: &Arc<BackingId>, upper: bool, writable: bool) {
        lock(&self.backing).insert(ino, (Arc::downgrade(b), upper, writable));
    }
}

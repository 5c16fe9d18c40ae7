//! The entry cache: merged path → its resolved [`Entry`], a bounded LRU under its own lock
//! (held only for a map operation, never across a layer access).

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lru::LruCache;

use super::filesystem::lock;
use crate::union::Entry;
use crate::union::stack::is_within;

/// Resolved entries by merged path.
#[derive(Debug)]
pub(crate) struct EntryCache {
    lru: Mutex<LruCache<PathBuf, Entry>>,
}

impl EntryCache {
    /// A cache of at most `size` entries.
    pub(crate) fn new(size: usize) -> EntryCache {
        EntryCache { lru: Mutex::new(LruCache::new(NonZeroUsize::new(size).unwrap_or(NonZeroUsize::MIN))) }
    }

    /// The cached entry of `path`.
    pub(crate) fn get(&self, path: &Path) -> Option<Entry> {
        lock(&self.lru).get(path).cloned()
    }

    /// Caches `e` under its path.
    pub(crate) fn put(&self, e: &Entry) {
        lock(&self.lru).put(e.path.clone(), e.clone());
    }

    /// Forgets `path`.
    pub(crate) fn forget(&self, path: &Path) {
        lock(&self.lru).pop(path);
    }

    /// Forgets `path` and everything below it.
    pub(crate) fn forget_tree(&self, path: &Path) {
        lock(&self.lru).retain(|p, _| !is_within(p, path));
    }
}

//! Open file handles, directory listings being read, and passthrough backing ids shared per
//! inode.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use fuser::BackingId;
use lru::LruCache;

use crate::union::Listing;

/// Directory listings being read at once, and their entries in all (counted per stream): more
/// only cost a reader whose stream was dropped a fresh listing.
const DIR_STREAMS: usize = 64;
const STREAM_ENTRIES: usize = 400_000;

/// An open regular file.
#[derive(Debug)]
pub struct FileHandle {
    /// The layer file (upper when opened for writing).
    pub file: Arc<File>,
    /// Node id.
    pub ino: u64,
    /// `None`: `file` is in the upper layer. `Some`: a lower file, and its size (a layer never
    /// changes), so a READ's reply needs no `fstat` for it.
    pub lower_size: Option<u64>,
    /// Keeps the kernel's backing file alive while this handle is open.
    pub backing: Option<Arc<BackingId>>,
}

impl FileHandle {
    /// Whether `file` is in the upper layer.
    pub fn is_upper(&self) -> bool {
        self.lower_size.is_none()
    }
}

/// A directory being read. strata answers opendir with ENOSYS, so the kernel opens
/// directories without asking and caches their listings itself (`FOPEN_CACHE_DIR |
/// FOPEN_KEEP_CACHE`, dropped when the directory changes). With no directory handles, a
/// reader is told apart by its offsets: each names the stream (the listing taken when the
/// reader asked for offset 0) and a position in it, so readers of one directory at once each
/// keep their own listing. A stream is kept until its reader reads past the end.
#[derive(Debug)]
pub struct DirStream {
    /// The stream's id (never 0), the high half of its offsets.
    pub id: u32,
    /// The directory's node id.
    pub ino: u64,
    /// The merged listing.
    pub listing: Arc<Listing>,
    /// `Stack::generation` when it was taken.
    pub generation: u64,
    /// st_ino of the directory and of its parent.
    pub dot: u64,
    pub dotdot: u64,
}

/// The kept streams, most recently used first, and their entries in all.
#[derive(Debug)]
struct Streams {
    lru: LruCache<u32, Arc<DirStream>>,
    entries: usize,
}

/// A passthrough backing id, whether its file is in the upper, and whether it is writable.
type Backing = (Weak<BackingId>, bool, bool);

/// Every open handle.
#[derive(Debug)]
pub struct Handles {
    next: AtomicU64,
    files: Mutex<HashMap<u64, Arc<FileHandle>>>,
    next_stream: AtomicU32,
    streams: Mutex<Streams>,
    backing: Mutex<HashMap<u64, Backing>>,
}

impl Default for Handles {
    fn default() -> Self {
        Handles {
            next: AtomicU64::new(0),
            files: Mutex::default(),
            next_stream: AtomicU32::new(0),
            streams: Mutex::new(Streams { lru: LruCache::unbounded(), entries: 0 }),
            backing: Mutex::default(),
        }
    }
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

    /// Any open file of node `ino`.
    pub fn file_of(&self, ino: u64) -> Option<Arc<FileHandle>> {
        lock(&self.files).values().find(|h| h.ino == ino).cloned()
    }

    /// Closes `fh`.
    pub fn remove_file(&self, fh: u64) -> Option<Arc<FileHandle>> {
        lock(&self.files).remove(&fh)
    }

    /// Stream `id` of directory `ino`, if it is still kept.
    pub fn stream(&self, id: u32, ino: u64) -> Option<Arc<DirStream>> {
        lock(&self.streams).lru.get(&id).filter(|s| s.ino == ino).cloned()
    }

    /// The newest kept stream of directory `ino` taken at listing `generation`: a new reader
    /// of an unchanged directory shares its listing.
    pub fn stream_at(&self, ino: u64, generation: u64) -> Option<Arc<DirStream>> {
        lock(&self.streams)
            .lru
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.ino == ino && s.generation == generation)
            .cloned()
    }

    /// Keeps a new stream, built by `make` from its id.
    pub fn add_stream(&self, make: impl FnOnce(u32) -> DirStream) -> Arc<DirStream> {
        // 31 bits: offsets are positive 64-bit file positions; 0 would read as "start".
        let id = loop {
            let id = self.next_stream.fetch_add(1, Ordering::Relaxed).wrapping_add(1) & 0x7fff_ffff;
            if id != 0 {
                break id;
            }
        };
        let s = Arc::new(make(id));
        let mut kept = lock(&self.streams);
        kept.entries += s.listing.entries.len();
        kept.lru.put(id, s.clone());
        while kept.lru.len() > DIR_STREAMS || (kept.entries > STREAM_ENTRIES && kept.lru.len() > 1) {
            match kept.lru.pop_lru() {
                Some((_, old)) => kept.entries -= old.listing.entries.len(),
                None => break,
            }
        }
        s
    }

    /// Stream `id` was read to its end.
    pub fn end_stream(&self, id: u32) {
        let mut kept = lock(&self.streams);
        if let Some(old) = kept.lru.pop(&id) {
            kept.entries -= old.listing.entries.len();
        }
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

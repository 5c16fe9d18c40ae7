//! What a file's xattr said, remembered by (layer, inode, ctime): setting an xattr, any other
//! change of the inode and a reused inode number all move the ctime, so a remembered value never
//! names a file whose xattr changed since. Used for the origin xattr (`fs/ino.rs`) and the
//! override xattr of marked layers (`Stack`): each would otherwise be read at every stat.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use nix::sys::stat::FileStat;

/// (layer, st_ino, st_ctime, st_ctime_nsec).
type Key = (usize, u64, i64, i64);

/// How many values are remembered (a few MB at most).
const KEPT: usize = 1 << 16;

/// A bounded memo of xattr values (`None`: the file has none), with its own lock.
#[derive(Debug)]
pub struct XattrMemo<V>(Mutex<LruCache<Key, Option<V>>>);

impl<V: Copy> Default for XattrMemo<V> {
    /// Empty, its table grown as values come: sized for `KEPT` up front it was 1.2 MiB mapped and
    /// 128 KiB of control bytes written per memo at every mount, before the mount answered.
    fn default() -> Self {
        let mut lru = LruCache::unbounded();
        lru.resize(NonZeroUsize::new(KEPT).unwrap_or(NonZeroUsize::MIN));
        XattrMemo(Mutex::new(lru))
    }
}

impl<V: Copy> XattrMemo<V> {
    /// The value remembered for the file with stat `st` in `layer`: `None` when never noted.
    pub fn get(&self, layer: usize, st: &FileStat) -> Option<Option<V>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&key(layer, st)).copied()
    }

    /// Remembers `value` for the file with stat `st` in `layer`.
    pub fn note(&self, layer: usize, st: &FileStat, value: Option<V>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).put(key(layer, st), value);
    }
}

fn key(layer: usize, st: &FileStat) -> Key {
    (layer, st.st_ino, st.st_ctime, st.st_ctime_nsec)
}

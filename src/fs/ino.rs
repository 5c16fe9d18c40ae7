//! Stable st_ino values.
//!
//! A file's st_ino comes from its origin: the (dev, ino) of the lower file it was copied up
//! from (recorded on copy-up in a private xattr of the upper file), or of the file itself.
//! When all layers share one device the raw inode number is used; otherwise the layer's
//! device index is put in the top 8 bits ("xino"). Hard links of one lower file therefore share
//! one st_ino, and a file keeps its st_ino across copy-up and remounts.

/// FUSE node id of the root, and the st_ino it reports.
pub const ROOT_INO: u64 = 1;
const XINO_SHIFT: u32 = 56;
const XINO_MASK: u64 = (1 << XINO_SHIFT) - 1;

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

/// Maps (st_dev, st_ino) of layer files to stable st_ino values.
#[derive(Debug)]
pub struct InoMap {
    devs: Vec<u64>,
    /// Name of the private xattr recording a copied-up file's st_ino.
    pub origin_xattr: &'static str,
    /// Origins already read, so that a getattr does not read the xattr again.
    origins: Mutex<LruCache<OriginKey, Option<u64>>>,
}

/// Upper files whose origin xattr was read, by inode and ctime: setting an xattr, a rename
/// into place and every other change of the inode move its ctime, and a reused inode number
/// comes with a new one, so a key never names a file whose origin changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OriginKey {
    ino: u64,
    ctime: (i64, i64),
}

impl OriginKey {
    pub fn of(st: &nix::sys::stat::FileStat) -> OriginKey {
        OriginKey { ino: st.st_ino, ctime: (st.st_ctime, st.st_ctime_nsec) }
    }
}

/// How many origins are remembered: a few MB at most.
const ORIGINS_KEPT: usize = 1 << 16;

impl InoMap {
    /// `devs`: the st_dev of every layer root, upper first.
    pub fn new(devs: impl IntoIterator<Item = u64>, privileged: bool) -> InoMap {
        let mut v: Vec<u64> = Vec::new();
        for d in devs {
            if !v.contains(&d) {
                v.push(d);
            }
        }
        InoMap {
            devs: v,
            origin_xattr: if privileged { "trusted.strata.origin" } else { "user.strata.origin" },
            origins: Mutex::new(LruCache::new(NonZeroUsize::new(ORIGINS_KEPT).unwrap_or(NonZeroUsize::MIN))),
        }
    }

    /// The origin remembered for an upper file: `None` when it was never read.
    pub fn cached_origin(&self, key: OriginKey) -> Option<Option<u64>> {
        self.origins.lock().unwrap_or_else(|e| e.into_inner()).get(&key).copied()
    }

    /// Remembers the origin of an upper file (`None`: it has none, e.g. it was just made).
    pub fn note_origin(&self, key: OriginKey, origin: Option<u64>) {
        self.origins.lock().unwrap_or_else(|e| e.into_inner()).put(key, origin);
    }

    /// The st_ino reported for a file with this lstat (dev, ino).
    pub fn map(&self, dev: u64, ino: u64) -> u64 {
        let v = if self.devs.len() <= 1 {
            ino
        } else {
            let idx = self.devs.iter().position(|d| *d == dev).unwrap_or(0xff) as u64;
            (idx.min(0xff) << XINO_SHIFT) | (ino & XINO_MASK)
        };
        if v <= ROOT_INO { v | (1 << 63) | 2 } else { v }
    }

    /// Encodes an st_ino for the origin xattr.
    pub fn encode(ino: u64) -> [u8; 8] {
        ino.to_le_bytes()
    }

    /// Decodes the origin xattr.
    pub fn decode(v: &[u8]) -> Option<u64> {
        let b: [u8; 8] = v.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    }
}

pub use crate::layer::whiteout::is_private_xattr;

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn xino() {
        let one = InoMap::new([5, 5], true);
        assert_eq!(one.map(5, 1234), 1234);
        assert_ne!(one.map(5, 1), ROOT_INO);
        let two = InoMap::new([5, 7], true);
        assert_eq!(two.map(5, 9), 9);
        assert_eq!(two.map(7, 9), (1 << 56) | 9);
        assert_eq!(InoMap::decode(&InoMap::encode(77)), Some(77));
        assert!(is_private_xattr(OsStr::new("trusted.strata.origin")));
        assert!(!is_private_xattr(OsStr::new("user.foo")));
    }
}

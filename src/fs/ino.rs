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

use crate::union::xattr_memo::XattrMemo;

/// Maps (st_dev, st_ino) of layer files to stable st_ino values.
#[derive(Debug)]
pub struct InoMap {
    devs: Vec<u64>,
    /// Name of the private xattr recording a copied-up file's st_ino.
    pub origin_xattr: &'static str,
    /// Origins of upper files already read (in layer 0), so that a getattr reads no xattr.
    pub origins: XattrMemo<u64>,
}

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
            origins: XattrMemo::default(),
        }
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

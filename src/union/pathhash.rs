//! Hashing merged paths in constant time, for the caches keyed by a path's bytes.
//!
//! std's SipHash reads every byte, and in a tree thousands of levels deep a path is tens of
//! kilobytes: hashing it on every lookup made each operation cost O(depth) (half the daemon's
//! time in a 10,000-level tree went to SipHash). [`PathHasher`] reads a path's length, its last
//! component whole, the 64 bytes before it, its first 16 bytes and 16 evenly spaced words of the
//! rest, so a hash costs O(1); equality still compares every byte, so paths that share a hash
//! only cost a longer probe. Two names in one directory never share one (the last component is
//! read whole), nor do two paths of different lengths; paths up to 256 bytes are read whole.

use std::hash::{BuildHasher, Hasher};

/// Paths up to this length are hashed whole.
const WHOLE: usize = 256;
/// Bytes read before the last component.
const BEFORE_NAME: usize = 64;
/// Bytes read at the start.
const HEAD: usize = 16;
/// Words sampled from the middle.
const SAMPLES: usize = 16;
const K: u64 = 0x517c_c1b7_2722_0a95;

/// Builds [`PathHasher`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct PathHash;

impl BuildHasher for PathHash {
    type Hasher = PathHasher;

    fn build_hasher(&self) -> PathHasher {
        PathHasher(0x243f_6a88_85a3_08d3)
    }
}

/// A hasher whose cost does not grow with a path's length (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct PathHasher(u64);

fn word(w: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = w.len().min(8);
    b[..n].copy_from_slice(&w[..n]);
    u64::from_le_bytes(b)
}

impl PathHasher {
    fn mix(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(K);
    }

    fn mix_all(&mut self, bytes: &[u8]) {
        for w in bytes.chunks(8) {
            self.mix(word(w));
        }
    }
}

impl Hasher for PathHasher {
    fn write(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        self.mix(n as u64);
        if n <= WHOLE {
            self.mix_all(bytes);
            return;
        }
        let name = bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
        let tail = name.saturating_sub(BEFORE_NAME);
        self.mix_all(&bytes[tail..]);
        let head = HEAD.min(tail);
        self.mix_all(&bytes[..head]);
        let middle = &bytes[head..tail];
        let step = middle.len() / SAMPLES;
        if step > 0 {
            for i in 0..SAMPLES {
                self.mix(word(&middle[i * step..]));
            }
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }

    fn finish(&self) -> u64 {
        let h = self.0;
        (h ^ (h >> 31)).wrapping_mul(K) ^ (h >> 17)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(b: &[u8]) -> u64 {
        PathHash.hash_one(b)
    }

    #[test]
    fn names_and_depths_are_told_apart() {
        let deep: Vec<u8> = std::iter::repeat_n(&b"d/"[..], 5000).flatten().copied().collect();
        let mut a = deep.clone();
        a.extend_from_slice(b"name-a");
        let mut b = deep.clone();
        b.extend_from_slice(b"name-b");
        assert_ne!(hash(&a), hash(&b), "siblings");
        assert_ne!(hash(&deep[..deep.len() - 1]), hash(&deep[..deep.len() - 3]), "a level up");
        assert_eq!(hash(&a), hash(&a.clone()));
        let long_a = [&b"x/"[..], &[b'a'; 250], b"/f"].concat();
        let long_b = [&b"x/"[..], &[b'a'; 249], b"b/f"].concat();
        assert_ne!(hash(&long_a), hash(&long_b), "a long name read whole");
        assert_ne!(hash(b"a/b"), hash(b"a/c"));
    }
}

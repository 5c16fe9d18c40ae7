//! A cap on tar extension headers, applied before the tar crate sees them.
//!
//! The tar crate reads a PAX `x` header's and a GNU `L`/`K` long name's body whole into memory,
//! whatever size the header claims: a small gzip claiming an 8 GiB PAX body takes gigabytes of
//! RAM. [`HeaderGuard`] sits between the byte stream and `tar::Archive`, follows the archive's
//! framing (header, GNU sparse extension blocks, data padded to 512, a PAX `size` override for
//! the next member) and fails the read that would bring a longer extension header, with an error
//! naming the entry and the limit. Go's archive/tar uses the same 1 MiB limit.

use std::io::{self, Read, Seek, SeekFrom};

/// The largest PAX (`x`, `g`) or GNU long name/link (`L`, `K`) body accepted.
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: u64 = 512;

/// An extension header longer than [`MAX_EXTENSION`].
#[derive(Debug, thiserror::Error)]
#[error(
    "tar entry {name:?} (a {kind} at byte {offset}) claims {size} bytes, over the limit of {MAX_EXTENSION} bytes (1 MiB)"
)]
pub struct ExtensionTooLong {
    pub name: String,
    pub kind: &'static str,
    pub offset: u64,
    pub size: u64,
}

impl ExtensionTooLong {
    /// Finds one in an io::Error the tar crate passed on.
    pub fn find(e: &io::Error) -> Option<&ExtensionTooLong> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<ExtensionTooLong>())
    }
}

/// What the bytes at `want` are.
enum Stage {
    /// A member header.
    Header,
    /// A GNU sparse extension block; `data` is the member's stored size, read after the last one.
    SparseExt { data: u64 },
    /// The body of a PAX `x` header (kept to learn a `size` override), `len` bytes.
    PaxBody { len: u64 },
    /// The end of the archive, or a header the tar parser will reject anyway: nothing to guard.
    Done,
}

pub struct HeaderGuard<R> {
    inner: R,
    /// Position in the stream of the next byte `inner` returns.
    pos: u64,
    /// Where the block (or body) `stage` describes starts.
    want: u64,
    stage: Stage,
    /// The bytes of that block collected so far.
    acc: Vec<u8>,
    /// A PAX `size` for the next member.
    pax_size: Option<u64>,
}

impl<R> HeaderGuard<R> {
    pub fn new(inner: R) -> Self {
        HeaderGuard { inner, pos: 0, want: 0, stage: Stage::Header, acc: Vec::new(), pax_size: None }
    }

    fn needed(&self) -> u64 {
        match self.stage {
            Stage::Header | Stage::SparseExt { .. } => BLOCK,
            Stage::PaxBody { len } => len,
            Stage::Done => 0,
        }
    }

    /// Looks at bytes `buf`, which start at stream position `at`.
    fn observe(&mut self, mut at: u64, mut buf: &[u8]) -> Result<(), ExtensionTooLong> {
        while !buf.is_empty() && !matches!(self.stage, Stage::Done) {
            let have = self.acc.len() as u64;
            let next = self.want + have;
            if at + buf.len() as u64 <= next {
                return Ok(());
            }
            if at < next {
                let skip = (next - at) as usize;
                (at, buf) = (next, &buf[skip..]);
            } else if at > next {
                // Bytes we were to look at were seeked over: the framing is not ours to follow.
                self.stage = Stage::Done;
                return Ok(());
            }
            let take = (self.needed() - have).min(buf.len() as u64) as usize;
            self.acc.extend_from_slice(&buf[..take]);
            (at, buf) = (at + take as u64, &buf[take..]);
            if self.acc.len() as u64 == self.needed() {
                let block = std::mem::take(&mut self.acc);
                self.advance(&block)?;
            }
        }
        Ok(())
    }

    /// A complete block (or PAX body) at `self.want`: decides what comes next.
    fn advance(&mut self, block: &[u8]) -> Result<(), ExtensionTooLong> {
        let start = self.want;
        match self.stage {
            Stage::Header => self.header(start, block)?,
            Stage::SparseExt { data } => {
                let after = start + BLOCK;
                if block[504] != 0 {
                    self.want = after;
                } else {
                    self.skip_data(after, data);
                }
            }
            Stage::PaxBody { len } => {
                self.pax_size = pax_size(block);
                // The body is padded to a whole block; the next member's header follows.
                self.stage = Stage::Header;
                self.skip_data(start, len);
            }
            Stage::Done => {}
        }
        Ok(())
    }

    fn header(&mut self, start: u64, block: &[u8]) -> Result<(), ExtensionTooLong> {
        if block.iter().all(|&b| b == 0) {
            self.stage = Stage::Done; // the end-of-archive marker
            return Ok(());
        }
        let header = tar::Header::from_byte_slice(block);
        let (Ok(size), Ok(sum)) = (header.entry_size(), header.cksum()) else {
            self.stage = Stage::Done;
            return Ok(());
        };
        let computed: u32 =
            block[..148].iter().chain(&block[156..]).map(|&b| u32::from(b)).sum::<u32>() + 8 * 32;
        if computed != sum {
            self.stage = Stage::Done;
            return Ok(());
        }
        let kind = match block[156] {
            b'x' => Some("PAX extended header"),
            b'g' => Some("PAX global header"),
            b'L' => Some("GNU long name"),
            b'K' => Some("GNU long link name"),
            _ => None,
        };
        let data_at = start + BLOCK;
        if let Some(kind) = kind {
            if size > MAX_EXTENSION {
                let name = String::from_utf8_lossy(&header.path_bytes()).into_owned();
                return Err(ExtensionTooLong { name, kind, offset: start, size });
            }
            if block[156] == b'x' && size > 0 {
                self.stage = Stage::PaxBody { len: size };
                self.want = data_at;
            } else {
                // A PAX override applies to the member, never to another extension header;
                // a global header ends the tar crate's pending overrides.
                if block[156] == b'g' {
                    self.pax_size = None;
                }
                self.skip_data(data_at, size);
            }
            return Ok(());
        }
        let size = self.pax_size.take().unwrap_or(size);
        let extended = header.as_gnu().is_some_and(|g| g.is_extended());
        if block[156] == b'S' && extended {
            self.stage = Stage::SparseExt { data: size };
            self.want = data_at;
        } else {
            self.skip_data(data_at, size);
        }
        Ok(())
    }

    /// The next header follows `size` bytes of data at `at`, padded to a block.
    fn skip_data(&mut self, at: u64, size: u64) {
        self.stage = Stage::Header;
        match size.checked_add(BLOCK - 1).and_then(|s| at.checked_add(s & !(BLOCK - 1))) {
            Some(next) => self.want = next,
            None => self.stage = Stage::Done,
        }
    }
}

/// The `size` record of a PAX body, if it has a valid one.
fn pax_size(body: &[u8]) -> Option<u64> {
    tar::PaxExtensions::new(body)
        .filter_map(Result::ok)
        .filter(|e| e.key_bytes() == b"size")
        .filter_map(|e| std::str::from_utf8(e.value_bytes()).ok()?.parse().ok())
        .last()
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let at = self.pos;
        self.pos += n as u64;
        self.observe(at, &buf[..n]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(n)
    }
}

impl<R: Seek> Seek for HeaderGuard<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = self.inner.seek(to)?;
        // Skipping data (what the tar crate seeks for) is fine; skipping a block to look at
        // is noticed by `observe` on the next read.
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn padded(data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        v.resize(data.len().div_ceil(512) * 512, 0);
        v
    }

    /// Reads `bytes` through a guard in chunks of `chunk` bytes.
    fn read_all(bytes: &[u8], chunk: usize) -> io::Result<()> {
        let mut g = HeaderGuard::new(bytes);
        let mut buf = vec![0; chunk];
        while g.read(&mut buf)? > 0 {}
        Ok(())
    }

    #[test]
    fn follows_pax_size_overrides_and_catches_long_headers_in_any_chunking() {
        // A PAX header saying the next member's data is 1024 bytes (its header says 0), then
        // an L header claiming 2 MiB: the guard must find that header at the right place.
        let mut tar = header("PaxHeaders/a", b'x', 13);
        tar.extend(padded(b"13 size=1024\n"));
        tar.extend(header("a", b'0', 0));
        tar.extend(vec![b'x'; 1024]);
        let good = tar.clone();
        tar.extend(header("././@LongLink", b'L', 2 << 20));
        tar.extend(vec![b'a'; 4096]);
        for chunk in [1, 7, 512, 100_000] {
            let e = read_all(&tar, chunk).unwrap_err();
            let e = ExtensionTooLong::find(&e).expect("the guard's error");
            assert_eq!((e.kind, e.offset, e.size), ("GNU long name", 512 * 2 + 512 + 1024, 2 << 20));
            read_all(&good, chunk).unwrap();
        }
    }

    #[test]
    fn data_that_looks_like_a_header_is_not_one() {
        let fake = header("evil", b'x', 8 << 30);
        let mut tar = header("f", b'0', 512);
        tar.extend(&fake);
        tar.extend(vec![0; 1024]);
        read_all(&tar, 512).unwrap();
    }
}

//! Layer compression: detected from magic bytes (never from names), and the
//! pinned encoder settings that make packed layers byte-reproducible.

use std::io::{self, BufReader, Read, Write};

use anyhow::{Result, bail};

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Bytes to peek before calling [`Compression::detect`]: one tar header block.
pub const PEEK_LEN: usize = 512;

/// gzip level used for every layer we write. flate2's zlib-rs backend is pinned in
/// Cargo.toml too: another backend or level gives different (equally valid) bytes.
pub const GZIP_LEVEL: u32 = 6;
/// zstd level used for every layer we write.
pub const ZSTD_LEVEL: i32 = 3;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// Detects the format from the first bytes of a stream (up to [`PEEK_LEN`]).
    pub fn detect(prefix: &[u8]) -> Result<Compression> {
        if prefix.starts_with(&GZIP_MAGIC) {
            Ok(Compression::Gzip)
        } else if prefix.starts_with(&ZSTD_MAGIC) {
            Ok(Compression::Zstd)
        } else if looks_like_tar(prefix) {
            Ok(Compression::None)
        } else {
            bail!("not a tar archive, gzip or zstd stream")
        }
    }

    /// The OCI layer media type for a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// The inverse of [`Compression::media_type`]; also accepts Docker's layer types.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// A reader yielding the uncompressed bytes of `input`. Truncated or corrupt
    /// compressed streams surface as read errors.
    pub fn decoder<R: Read>(self, input: R) -> Result<Decoder<R>> {
        Ok(match self {
            Compression::None => Decoder::None(input),
            // Multi-member gzip (pigz, concatenated streams) is valid gzip.
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::read::MultiGzDecoder::new(input))),
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::new(input)?),
        })
    }

    /// A writer compressing into `out` with the pinned settings.
    pub fn encoder<W: Write>(self, out: W) -> Result<Encoder<W>> {
        Ok(match self {
            Compression::None => Encoder::None(out),
            // GzBuilder's defaults write mtime 0 and no file name: reproducible.
            Compression::Gzip => {
                Encoder::Gzip(flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL)))
            }
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?),
        })
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

impl std::str::FromStr for Compression {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" | "tar" => Ok(Compression::None),
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zstd" | "zst" => Ok(Compression::Zstd),
            _ => bail!("unknown compression {s:?}: expected gzip, zstd or none"),
        }
    }
}

/// A decompressing reader that gives its input back, so a caller can drain the
/// raw stream to its end after the compressed data ends.
pub enum Decoder<R: Read> {
    None(R),
    Gzip(Box<flate2::read::MultiGzDecoder<R>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

impl<R: Read> Decoder<R> {
    pub fn into_inner(self) -> R {
        match self {
            Decoder::None(r) => r,
            Decoder::Gzip(d) => d.into_inner(),
            // Bytes left in zstd's buffer were already read from `R`.
            Decoder::Zstd(d) => d.finish().into_inner(),
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::None(r) => r.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

/// A compressing writer; call [`Encoder::finish`] to write the trailer.
pub enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Ends the compressed stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// A stream with its peeked prefix put back in front.
pub type Peeked<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Reads up to [`PEEK_LEN`] bytes (fewer only at end of stream).
pub fn read_prefix(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(PEEK_LEN);
    input.take(PEEK_LEN as u64).read_to_end(&mut prefix)?;
    Ok(prefix)
}

/// Opens any layer stream: detects the compression and returns a reader of the
/// uncompressed tar. For callers that don't need digests (inspect, tests).
pub fn open_decompressed<R: Read>(input: R) -> Result<(Compression, Decoder<Peeked<BufReader<R>>>)> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let prefix = read_prefix(&mut input)?;
    let compression = Compression::detect(&prefix)?;
    let chained = io::Cursor::new(prefix).chain(input);
    Ok((compression, compression.decoder(chained)?))
}

/// A tar header block: `ustar` magic at 257, an all-zero block (an empty archive),
/// or an old v7 header whose checksum verifies.
fn looks_like_tar(block: &[u8]) -> bool {
    if block.len() < PEEK_LEN {
        return false;
    }
    if &block[257..262] == b"ustar" || block.iter().all(|&b| b == 0) {
        return true;
    }
    v7_checksum_ok(block)
}

fn v7_checksum_ok(block: &[u8]) -> bool {
    let field = &block[148..156];
    let digits: Vec<u8> = field.iter().copied().filter(|b| (b'0'..=b'7').contains(b)).collect();
    let Some(stored) = parse_octal(&digits) else { return false };
    // Sum with the checksum field counted as spaces; old tars summed signed bytes.
    let unsigned: u64 =
        block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u64 }).sum();
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as i8 as i64 })
        .sum();
    // A name must be present, else a block of spaces would "verify".
    block[0] != 0 && (stored == unsigned || stored as i64 == signed)
}

fn parse_octal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 11 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, d| acc.checked_mul(8)?.checked_add((d - b'0') as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_block() -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path("a").unwrap();
        h.set_size(0);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn detects_by_magic() {
        assert_eq!(Compression::detect(&tar_block()).unwrap(), Compression::None);
        assert_eq!(Compression::detect(&[0u8; 512]).unwrap(), Compression::None);
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]).unwrap(), Compression::Gzip);
        assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]).unwrap(), Compression::Zstd);
        let err = Compression::detect(b"hello world").unwrap_err().to_string();
        assert_eq!(err, "not a tar archive, gzip or zstd stream");
        assert!(Compression::detect(&[b'x'; 600]).is_err());
    }

    #[test]
    fn accepts_v7_header_with_valid_checksum() {
        let mut h = tar::Header::new_old();
        h.set_path("old").unwrap();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        assert_eq!(Compression::detect(h.as_bytes()).unwrap(), Compression::None);
        let mut bad = h.as_bytes().to_vec();
        bad[0] = b'p';
        assert!(Compression::detect(&bad).is_err());
    }

    #[test]
    fn media_types_round_trip() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(Compression::from_media_type(c.media_type()), Some(c));
            assert_eq!(c.to_string().parse::<Compression>().unwrap(), c);
        }
    }

    #[test]
    fn encoders_round_trip() {
        let data = vec![42u8; 10_000];
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut e = c.encoder(Vec::new()).unwrap();
            e.write_all(&data).unwrap();
            let blob = e.finish().unwrap();
            let mut out = Vec::new();
            c.decoder(&blob[..]).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
    }
}

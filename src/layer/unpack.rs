//! Unpacking a layer blob into a directory in one streaming pass.
//!
//! The pipeline, bottom to top:
//!   input → raw hasher (+ tee to the blob copy) → decompressor → tar hasher
//!   → pipe to a second thread → tail padder → tar parser → `extract::Tree` (the safe extractor).
//! After the tar's end the stream is drained, so both digests cover every byte.

use std::cell::Cell;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, Result, anyhow, bail};
use tar::EntryType;

use super::compression::{Compression, read_prefix};
use super::extract::{Attrs, Node, Skipped, Tree};
use super::pipe::{Pump, pipe};
use super::targuard::{ExtensionTooLong, HeaderGuard};
use super::tarpath;
use super::whiteout;
use crate::oci::Digest;
use crate::oci::digest::{Hasher, HashingReader};

/// What one unpack saw, digests included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    pub compression: Compression,
    /// sha256 of the bytes as read (the blob).
    pub blob: Digest,
    pub blob_size: u64,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    pub tar_size: u64,
    /// Tar members, not counting PAX/GNU extension headers.
    pub entries: u64,
    /// Bytes of regular file content written.
    pub data_bytes: u64,
    /// What could not be restored without root (device nodes, file capabilities).
    pub skipped: Skipped,
    /// Regular files moved from the source tree instead of written ([`unpack_taking_files`]).
    pub moved_files: u64,
}

/// Chunks handed from the decompressing thread to the extracting one.
const CHUNK: usize = 1 << 20;
const CHUNKS_IN_FLIGHT: usize = 4;

/// Unpacks a layer (plain, gzip or zstd tar: detected) into `dest`, an existing
/// directory, normally empty. Nothing outside `dest` is ever touched. If
/// `blob_copy` is given, every input byte is written to it as it is read.
///
/// Reading, hashing and decompressing run on the calling thread; parsing and
/// extracting on a second one, fed through a bounded pipe.
pub fn unpack(input: impl Read, dest: &Path, blob_copy: Option<&mut dyn Write>) -> Result<Unpacked> {
    unpack_into(input, dest, blob_copy, None)
}

/// [`unpack`] of a tar packed from `source`, a tree the caller discards afterwards: regular files
/// are moved from `source` instead of written again when they are the very files packed (see
/// `Tree::file`). Everything else, and the result, is exactly [`unpack`]'s.
pub fn unpack_taking_files(input: impl Read, dest: &Path, source: &Path) -> Result<Unpacked> {
    unpack_into(input, dest, None, Some(source))
}

fn unpack_into(
    input: impl Read,
    dest: &Path,
    blob_copy: Option<&mut dyn Write>,
    source: Option<&Path>,
) -> Result<Unpacked> {
    let mut raw = RawSide { inner: input, hasher: Hasher::default(), copy: blob_copy };
    let prefix = read_prefix(&mut raw).context("reading the layer")?;
    let compression = Compression::detect(&prefix)?;
    let mut tar_side = HashingReader::new(compression.decoder(io::Cursor::new(prefix).chain(raw))?);
    let mut tree = Tree::open(dest)?;
    if let Some(source) = source {
        tree.take_files_from(source)?;
    }

    let (mut tx, rx) = pipe(CHUNKS_IN_FLIGHT, CHUNK);
    let (pumped, extracted) = std::thread::scope(|s| {
        let worker = s.spawn(move || extract_stream(rx, tree, compression));
        let mut pumped = loop {
            match tx.pump(&mut tar_side) {
                Ok(Pump::Sent) => {}
                Ok(Pump::Eof) => break Ok(false),
                Ok(Pump::ReaderGone) => break Ok(true),
                Err(e) => break Err(e),
            }
        };
        drop(tx);
        let extracted = worker.join().unwrap_or_else(|_| Err(anyhow!("the extracting thread panicked")));
        // The tar ended before the stream: drain the rest (zero blocks, padding) so
        // both digests cover every byte. Not worth it if extraction failed.
        if extracted.is_ok() && matches!(pumped, Ok(true)) {
            pumped = io::copy(&mut tar_side, &mut io::sink()).map(|_| false);
        }
        (pumped, extracted)
    });
    // A decoding error explains whatever the extractor made of the cut-off stream.
    pumped.context(corrupt(compression))?;
    let (entries, data_bytes, skipped, moved_files) = extracted?;

    let (decoder, diff_id, tar_size) = tar_side.finish();
    let mut raw = decoder.into_inner().into_inner().1;
    io::copy(&mut raw, &mut io::sink()).context("reading the layer")?;
    if let Some(copy) = raw.copy.as_mut() {
        copy.flush().context("writing the blob copy")?;
    }
    let (blob, blob_size) = raw.hasher.finish();
    Ok(Unpacked {
        compression,
        blob,
        blob_size,
        diff_id,
        tar_size,
        entries,
        data_bytes,
        skipped,
        moved_files,
    })
}

/// Parses the tar and restores every member; returns (entries, file bytes, what was skipped,
/// files moved from the source tree).
fn extract_stream(
    input: impl Read,
    mut tree: Tree,
    compression: Compression,
) -> Result<(u64, u64, Skipped, u64)> {
    let pad_at = Rc::new(Cell::new(0));
    let padder = TailPad { inner: input, pos: 0, pad_at: pad_at.clone(), zeros: 0 };
    let mut archive = tar::Archive::new(HeaderGuard::new(padder));
    let (mut entries, mut data_bytes) = (0u64, 0u64);
    for entry in archive.entries().context("reading the tar stream")? {
        let mut entry = match entry {
            Ok(e) => e,
            // Not a corrupt stream: a header the guard refused before anything read its body.
            Err(e) if ExtensionTooLong::find(&e).is_some() => return Err(anyhow!(e)),
            Err(e) => return Err(e).context(corrupt(compression)),
        };
        pad_at.set(entry.raw_file_position().saturating_add(entry.size()));
        let name = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) || kind.as_byte() == b'V' {
            continue; // archive-wide metadata and volume labels describe no file
        }
        entries += 1;
        data_bytes += extract_entry(&mut tree, &mut entry, &name)
            .with_context(|| format!("tar entry {}", display_raw(&name)))?;
    }
    let moved = tree.moved();
    let skipped = tree.finish()?;
    Ok((entries, data_bytes, skipped, moved))
}

fn corrupt(c: Compression) -> String {
    match c {
        Compression::None => "reading the tar stream".into(),
        c => format!("reading the tar stream (corrupt or truncated {c} data?)"),
    }
}

fn display_raw(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Restores one member; returns the file bytes written.
fn extract_entry<R: Read>(tree: &mut Tree, entry: &mut tar::Entry<'_, R>, name: &[u8]) -> Result<u64> {
    let path = tarpath::normalize(name)?;
    let attrs = attrs_of(entry)?;
    let (parent, last) = tarpath::split_parent(&path);
    if let Some(hidden) = whiteout::device_whiteout_of(OsStr::from_bytes(last)) {
        // `.wh.` + a 252–255-byte name: no such file can exist, the whiteout is a 0/0 device.
        let mut at = parent.to_vec();
        if !at.is_empty() {
            at.push(b'/');
        }
        at.extend_from_slice(hidden.as_bytes());
        let attrs = Attrs { mode: 0, xattrs: Vec::new(), ..attrs };
        if !tree.node(&at, Node::Char(0, 0), &attrs)? {
            bail!(
                "can't write this whiteout: its name is too long for a .wh. file, and mknod of a 0/0 device was refused"
            );
        }
        return Ok(0);
    }
    let header = entry.header();
    let device = || -> Result<(u64, u64)> {
        let major = header.device_major()?.context("device entry without a major number")?;
        let minor = header.device_minor()?.context("device entry without a minor number")?;
        Ok((major as u64, minor as u64))
    };
    match header.entry_type() {
        // Old tars marked directories only by a trailing slash.
        EntryType::Regular if name.ends_with(b"/") => tree.dir(&path, &attrs)?,
        EntryType::Regular | EntryType::Continuous => {
            let size = entry.size();
            return tree.file(&path, &attrs, size, entry);
        }
        EntryType::GNUSparse => {
            let size = header.as_gnu().context("sparse entry without a GNU header")?.real_size()?;
            return tree.file(&path, &attrs, size, entry);
        }
        EntryType::Directory => tree.dir(&path, &attrs)?,
        EntryType::Symlink => {
            let target = entry.link_name_bytes().context("symlink without a target")?;
            if target.is_empty() {
                bail!("symlink with an empty target");
            }
            tree.symlink(&path, &target, &attrs)?
        }
        EntryType::Link => {
            let target = entry.link_name_bytes().context("hard link without a target")?;
            let target = tarpath::normalize(&target)
                .with_context(|| format!("hard link target {}", display_raw(&target)))?;
            if target.is_empty() {
                bail!("hard link to the layer root");
            }
            tree.hard_link(&path, &target)?
        }
        EntryType::Char => {
            let (ma, mi) = device()?;
            whiteout::check_layer_char_device(ma, mi)?;
            tree.node(&path, Node::Char(ma, mi), &attrs)?;
        }
        EntryType::Block => {
            let (ma, mi) = device()?;
            tree.node(&path, Node::Block(ma, mi), &attrs)?;
        }
        EntryType::Fifo => {
            tree.node(&path, Node::Fifo, &attrs)?;
        }
        other => bail!("unsupported entry type {:?} ({:?})", other, other.as_byte() as char),
    }
    Ok(0)
}

/// Owner, mode, mtime (PAX sub-second when present) and `SCHILY.xattr.*`.
fn attrs_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Attrs> {
    let mut attrs = Attrs::default();
    let mut pax_mtime = None;
    if let Some(exts) = entry.pax_extensions().context("reading PAX records")? {
        for ext in exts {
            let ext = ext.context("malformed PAX record")?;
            let key = ext.key_bytes();
            if key.starts_with(b"GNU.sparse.") {
                // The tar crate reads only the old GNU sparse format; never restore a garbled file.
                bail!("PAX-format sparse files are not supported (repack without --sparse)");
            } else if key == b"mtime" {
                pax_mtime = Some(parse_pax_time(ext.value_bytes())?);
            } else if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                let x = OsStr::from_bytes(x);
                whiteout::check_layer_xattr(x)?;
                attrs.xattrs.push((x.to_owned(), ext.value_bytes().to_vec()));
            }
        }
    }
    let h = entry.header();
    let old = h.as_old();
    attrs.mode = numeric(h.mode().map(u64::from), &old.mode, "mode")? as u32 & 0o7777;
    attrs.uid = numeric(h.uid(), &old.uid, "uid")?;
    attrs.gid = numeric(h.gid(), &old.gid, "gid")?;
    (attrs.mtime_sec, attrs.mtime_nsec) = match pax_mtime {
        Some(t) => t,
        None => (i64::try_from(numeric(h.mtime(), &old.mtime, "mtime")?).context("mtime out of range")?, 0),
    };
    Ok(attrs)
}

/// A header number; an empty field (all NULs or spaces) reads as 0, as Go's reader does.
fn numeric(parsed: io::Result<u64>, field: &[u8], what: &str) -> Result<u64> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if field.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(e) => Err(e).with_context(|| format!("bad {what} field")),
    }
}

/// PAX times: `[-]SECONDS[.FRACTION]`.
pub(crate) fn parse_pax_time(v: &[u8]) -> Result<(i64, u32)> {
    let s = std::str::from_utf8(v).ok().context("PAX mtime is not text")?;
    let bad = || format!("bad PAX mtime {s:?}");
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        bail!(bad());
    }
    let secs: i64 = whole.parse().with_context(bad)?;
    let mut nanos: u32 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        nanos += (d - b'0') as u32 * 10u32.pow(8 - i as u32);
    }
    Ok(match (neg, nanos) {
        (false, _) => (secs, nanos),
        (true, 0) => (-secs, 0),
        (true, n) => (-secs - 1, 1_000_000_000 - n),
    })
}

/// The compressed side: hashes and copies every byte read.
struct RawSide<'a, R> {
    inner: R,
    hasher: Hasher,
    copy: Option<&'a mut dyn Write>,
}

impl<R: Read> Read for RawSide<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if let Some(copy) = self.copy.as_mut() {
            copy.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

/// Completes the padding of a last member that ends the stream unpadded
/// (umoci 0.4.7 writes such layers; Go's reader accepts them). Zeros are
/// supplied only when the stream ends exactly at the end of a member's data,
/// so truncated data is still an error. The zeros are not hashed.
struct TailPad<R> {
    inner: R,
    pos: u64,
    /// End of the current member's data, set by the entry loop.
    pad_at: Rc<Cell<u64>>,
    zeros: u64,
}

impl<R: Read> Read for TailPad<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.zeros == 0 {
            let n = self.inner.read(buf)?;
            self.pos += n as u64;
            let end = self.pad_at.get();
            if n > 0 || buf.is_empty() || self.pos != end || end % 512 == 0 {
                return Ok(n);
            }
            self.zeros = 512 - end % 512;
        }
        let n = (self.zeros.min(buf.len() as u64)) as usize;
        buf[..n].fill(0);
        self.zeros -= n as u64;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"1700000000").unwrap(), (1_700_000_000, 0));
        assert_eq!(parse_pax_time(b"1700000000.5").unwrap(), (1_700_000_000, 500_000_000));
        assert_eq!(parse_pax_time(b"1.123456789123").unwrap(), (1, 123_456_789));
        assert_eq!(parse_pax_time(b"-1.25").unwrap(), (-2, 750_000_000));
        assert!(parse_pax_time(b"abc").is_err());
        assert!(parse_pax_time(b"").is_err());
    }
}

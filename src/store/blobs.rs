//! `blobs/sha256/<hex>`: bytes whose name is their sha256, verified on the way in.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::{Store, staging};
use crate::oci::Digest;
use crate::oci::digest::HashingWriter;

/// What a caller expects a blob to be (from a manifest): mismatches are errors.
#[derive(Clone, Debug)]
pub struct Expected {
    pub digest: Digest,
    pub size: Option<u64>,
}

impl Store {
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        File::open(&p).with_context(|| format!("blob {digest} is missing from the store ({})", p.display()))
    }

    /// Reads a small blob (config, manifest) whole, checking that it still hashes to its name.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        let bytes = std::fs::read(&p)
            .with_context(|| format!("blob {digest} is missing from the store ({})", p.display()))?;
        let got = Digest::of_bytes(&bytes);
        if got != *digest {
            bail!("blob {digest} is corrupt in the store: {} hashes to {got}", p.display());
        }
        Ok(bytes)
    }

    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        Ok(self.open_blob(digest)?.metadata()?.len())
    }

    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        self.put_blob(bytes, None)
    }

    /// Streams `reader` into the store, verifying digest and size when expected.
    pub fn put_blob(&self, reader: impl Read, expected: Option<&Expected>) -> Result<Digest> {
        let staged = self.stage_blob()?;
        let mut w = HashingWriter::new(BufWriter::with_capacity(1 << 20, staged));
        let mut limited = reader.take(read_limit(expected));
        io::copy(&mut limited, &mut w).context("cannot copy a blob into the store")?;
        let (buf, digest, size) = w.finish();
        let staged = buf.into_inner().map_err(|e| e.into_error())?;
        verify(&digest, size, expected)?;
        self.commit_blob(staged, &digest)?;
        Ok(digest)
    }

    /// A staged blob file in `tmp/`, for callers that write a blob while doing other work (unpack).
    pub fn stage_blob(&self) -> Result<StagedBlob> {
        self.expect_garbage()?;
        let path = staging::tmp_path(&self.tmp_dir(), "blob");
        let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(StagedBlob { path, file })
    }

    /// Moves a fully written, verified staged blob into place (a no-op if the blob is already there).
    pub fn commit_blob(&self, staged: StagedBlob, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        if dest.exists() {
            return Ok(());
        }
        staged.file.sync_all().with_context(|| format!("cannot sync {}", staged.path.display()))?;
        staging::rename_in(&staged.path, &dest)
    }

    /// Removes a blob (garbage collection only).
    pub(crate) fn remove_blob(&self, digest: &Digest) -> Result<()> {
        match std::fs::remove_file(self.blob_path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove blob {digest}"))
            }
            _ => Ok(()),
        }
    }

    /// Every blob digest present.
    pub fn list_blobs(&self) -> Result<Vec<Digest>> {
        super::digest_names(&self.root.join("blobs/sha256"), "")
    }
}

/// A blob being written in `tmp/`; removed on drop unless renamed into place first.
pub struct StagedBlob {
    pub path: PathBuf,
    pub file: File,
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        // After a successful rename the path is gone and this is a harmless ENOENT.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Write for StagedBlob {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// How many bytes to read of a blob: one more than expected, so that a longer one is caught
/// without reading on forever (the size comes from a manifest: `u64::MAX` must not overflow).
pub fn read_limit(expected: Option<&Expected>) -> u64 {
    expected.and_then(|e| e.size).map_or(u64::MAX, |s| s.saturating_add(1))
}

/// Checks a computed digest and size against what a manifest promised.
pub fn verify(digest: &Digest, size: u64, expected: Option<&Expected>) -> Result<()> {
    let Some(e) = expected else { return Ok(()) };
    if let Some(want) = e.size {
        if want != size {
            bail!("blob {} has size {size}, the manifest says {want}", e.digest);
        }
    }
    if *digest != e.digest {
        bail!("blob digest mismatch: expected {}, content hashes to {digest}", e.digest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_limit_does_not_overflow_on_huge_declared_sizes() {
        let e = |size| Expected { digest: Digest::of_bytes(b""), size };
        assert_eq!(read_limit(None), u64::MAX);
        assert_eq!(read_limit(Some(&e(None))), u64::MAX);
        assert_eq!(read_limit(Some(&e(Some(5)))), 6);
        assert_eq!(read_limit(Some(&e(Some(u64::MAX)))), u64::MAX);
    }
}

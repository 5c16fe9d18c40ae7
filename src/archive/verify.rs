//! A reader that fails instead of ending when its bytes are not exactly the expected ones: what
//! `save` streams into an archive entry whose size is already in the header.

use std::io::{self, Read};

use crate::oci::Digest;
use crate::oci::digest::Hasher;

pub struct Verifying<R> {
    inner: R,
    hasher: Option<Hasher>,
    size: u64,
    digest: Digest,
    /// Names the content in errors ("layer sha256:…").
    what: String,
}

impl<R: Read> Verifying<R> {
    pub fn new(inner: R, size: u64, digest: Digest, what: String) -> Self {
        Verifying { inner, hasher: Some(Hasher::default()), size, digest, what }
    }
}

impl<R: Read> Read for Verifying<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Already verified at its end.
        let Some(hasher) = self.hasher.as_mut() else { return Ok(0) };
        let n = self.inner.read(buf)?;
        hasher.update(&buf[..n]);
        let got = hasher.len();
        if got > self.size {
            return Err(io::Error::other(format!(
                "{} is larger than the {} bytes recorded",
                self.what, self.size
            )));
        }
        if n == 0 && !buf.is_empty() {
            let (digest, _) = self.hasher.take().expect("checked above").finish();
            if got != self.size {
                return Err(io::Error::other(format!(
                    "{} has {got} bytes, {} were recorded",
                    self.what, self.size
                )));
            }
            if digest != self.digest {
                return Err(io::Error::other(format!(
                    "{} is corrupt in the store: it hashes to {digest}, not {}",
                    self.what, self.digest
                )));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(r: impl Read) -> io::Result<u64> {
        let mut r = r;
        io::copy(&mut r, &mut io::sink())
    }

    #[test]
    fn passes_exact_content_and_refuses_anything_else() {
        let data = b"hello";
        let d = Digest::of_bytes(data);
        assert_eq!(drain(Verifying::new(&data[..], 5, d.clone(), "x".into())).unwrap(), 5);
        assert!(drain(Verifying::new(&data[..], 4, d.clone(), "x".into())).is_err());
        assert!(drain(Verifying::new(&data[..], 6, d.clone(), "x".into())).is_err());
        assert!(drain(Verifying::new(&b"hellO"[..], 5, d, "x".into())).is_err());
    }
}

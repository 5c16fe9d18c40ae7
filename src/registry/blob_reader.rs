//! Streaming a blob download that survives a dropped connection: on a transient read error the
//! rest is requested again with `Range: bytes=N-` (or, if the registry ignores ranges, the start is
//! skipped), so the consumer sees one uninterrupted byte stream.

use std::io::{self, Read};

use anyhow::Result;

use super::client::{Client, Request};
use super::retry::is_transient_io;

pub struct BlobReader<'c> {
    client: &'c Client,
    url: String,
    scope: String,
    body: ureq::BodyReader<'static>,
    pos: u64,
    total: Option<u64>,
    resumes: u32,
}

/// How many times one download may be resumed.
const MAX_RESUMES: u32 = 5;

impl<'c> BlobReader<'c> {
    /// Starts a GET of `path` (a blob URL path) and fails on any status but 200.
    pub fn open(client: &'c Client, path: &str, scope: &str) -> Result<BlobReader<'c>> {
        let resp = client.send_expect(&Request::new("GET", path, scope), &[200])?;
        let total = Client::header(&resp, "content-length").and_then(|v| v.parse().ok());
        Ok(BlobReader {
            client,
            url: path.to_string(),
            scope: scope.to_string(),
            body: resp.into_body().into_reader(),
            pos: 0,
            total,
            resumes: 0,
        })
    }

    /// Bytes the registry says the blob has, if it said.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    fn resume(&mut self, cause: &io::Error) -> io::Result<()> {
        self.resumes += 1;
        tracing::info!("{}: {cause} after {} bytes; resuming", self.url, self.pos);
        std::thread::sleep(std::time::Duration::from_millis(100 << self.resumes.min(5)));
        let req = Request::new("GET", self.url.as_str(), &self.scope)
            .header("Range", format!("bytes={}-", self.pos));
        let resp = self.client.send_expect(&req, &[200, 206]).map_err(io::Error::other)?;
        let partial = resp.status() == 206;
        let mut body = resp.into_body().into_reader();
        if !partial {
            // The registry sent the whole blob again: skip what we already have.
            let skipped = io::copy(&mut (&mut body).take(self.pos), &mut io::sink())?;
            if skipped != self.pos {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob shrank on retry"));
            }
        }
        self.body = body;
        Ok(())
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let err = match self.body.read(buf) {
                Ok(0) if self.total.is_some_and(|t| self.pos < t) => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the end of the blob",
                ),
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(e) => e,
            };
            if !is_transient_io(&err) || self.resumes >= MAX_RESUMES {
                return Err(err);
            }
            self.resume(&err)?;
        }
    }
}

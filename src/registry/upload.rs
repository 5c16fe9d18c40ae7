//! The blob half of the distribution push protocol: `HEAD` to skip what the registry has,
//! cross-repository mount, and uploads — one monolithic `PUT` for small blobs, `PATCH` chunks with
//! `Content-Range` then a closing `PUT` for large ones.

use std::fs::File;

use anyhow::{Context, Result, bail};

use super::client::{Client, Request};
use super::endpoint::{blob_path, resolve_location, uploads_path, with_query};
use super::errors::{StatusError, Unreachable};
use super::payload::Payload;
use crate::oci::Digest;

/// Blobs up to this size go in one `PUT`; larger ones in `PATCH` chunks of this size.
pub const CHUNK: u64 = 32 << 20;

/// Does the registry already have `digest` in `repo`?
pub fn exists(client: &Client, repo: &str, scope: &str, digest: &Digest) -> Result<bool> {
    let resp = client.send(&Request::new("HEAD", blob_path(repo, digest), scope))?;
    match resp.status().as_u16() {
        200 => Ok(true),
        404 => Ok(false),
        _ => client.expect(resp, &[200]).map(|_| true),
    }
}

/// Asks the registry to mount `digest` from repository `from`. `Ok(None)` when mounted; else the
/// upload session the registry opened instead.
pub fn mount(
    client: &Client,
    repo: &str,
    scope: &str,
    digest: &Digest,
    from: &str,
) -> Result<Option<String>> {
    let url = with_query(&with_query(&uploads_path(repo), "mount", &digest.to_string()), "from", from);
    let resp = client.send_expect(&Request::new("POST", url, scope), &[201, 202])?;
    if resp.status() == 201 {
        return Ok(None);
    }
    location(client, &resp).map(Some)
}

/// Opens an upload session; returns its URL.
pub fn start(client: &Client, repo: &str, scope: &str) -> Result<String> {
    let resp = client.send_expect(&Request::new("POST", uploads_path(repo), scope), &[202])?;
    location(client, &resp)
}

fn location(client: &Client, resp: &ureq::http::Response<ureq::Body>) -> Result<String> {
    let loc = Client::header(resp, "location").context("the registry opened an upload without a Location")?;
    Ok(resolve_location(client.base(), loc))
}

/// Sends `size` bytes of `file` to the session at `session` and commits them as `digest`.
pub fn send(
    client: &Client,
    mut session: String,
    scope: &str,
    file: &File,
    size: u64,
    digest: &Digest,
    on_read: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let octets = "application/octet-stream";
    if size > CHUNK {
        let mut offset = 0;
        while offset < size {
            let len = CHUNK.min(size - offset);
            let body = Payload::File { file, offset, len, on_read: Some(on_read) };
            let req = Request::new("PATCH", session.as_str(), scope)
                .header("Content-Type", octets)
                .header("Content-Range", format!("{offset}-{}", offset + len - 1))
                .body(body);
            let resp = client.send_expect(&req, &[202]).with_context(|| format!("chunk at byte {offset}"))?;
            session = location(client, &resp)?;
            offset += len;
        }
        let req = Request::new("PUT", with_query(&session, "digest", &digest.to_string()), scope)
            .header("Content-Type", octets);
        client.send_expect(&req, &[201])?;
    } else {
        let body = Payload::File { file, offset: 0, len: size, on_read: Some(on_read) };
        let req = Request::new("PUT", with_query(&session, "digest", &digest.to_string()), scope)
            .header("Content-Type", octets)
            .body(body);
        client.send_expect(&req, &[201])?;
    }
    Ok(())
}

/// Uploads bytes held in memory (configs) in one `PUT`, opening the session first.
pub fn send_bytes(client: &Client, repo: &str, scope: &str, bytes: &[u8], digest: &Digest) -> Result<()> {
    let session = start(client, repo, scope)?;
    let req = Request::new("PUT", with_query(&session, "digest", &digest.to_string()), scope)
        .header("Content-Type", "application/octet-stream")
        .body(Payload::Bytes(bytes));
    client.send_expect(&req, &[201])?;
    Ok(())
}

/// Is this error worth starting the upload over (a fresh session), rather than giving up?
pub fn worth_restarting(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<StatusError>() {
        Some(s) => s.status >= 500 || s.status == 416 || s.status == 408 || s.status == 429,
        None => e.downcast_ref::<Unreachable>().is_some(),
    }
}

/// Fails unless a blob file has the size its record says (a store fault, not a registry one).
pub fn check_size(file: &File, size: u64, digest: &Digest) -> Result<()> {
    let actual = file.metadata().with_context(|| format!("blob {digest}"))?.len();
    if actual != size {
        bail!("blob {digest} in the store has {actual} bytes, its image record says {size}");
    }
    Ok(())
}

//! The registry client against a scripted HTTP server (tests/common/fake_http.rs), for what a
//! real registry cannot be made to do on demand: 5xx answers retried with backoff, a download cut
//! off and resumed with a Range request, a Basic challenge answered; manifest, token and error
//! responses larger than strata accepts.

mod common;

use std::io::Read;
use std::time::Duration;

use common::fake_http::{FakeServer, reply, truncated};
use strata::registry::blob_reader::BlobReader;
use strata::registry::client::{Client, ClientOptions, Request};
use strata::registry::retry::Backoff;

fn quick() -> ClientOptions {
    let backoff =
        Backoff { attempts: 4, first_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20) };
    // Loopback: plain HTTP after the TLS probe (which takes the first scripted connection).
    ClientOptions { backoff: Some(backoff), ..Default::default() }
}

/// The TLS probe's connection: the server answers garbage to a ClientHello.
fn probe() -> Vec<u8> {
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n".to_vec()
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let srv = FakeServer::start(vec![
        probe(),
        reply("503 Service Unavailable", &[], b""),
        reply("502 Bad Gateway", &[], b""),
        reply("200 OK", &[("Content-Type", "application/json")], b"{}"),
    ]);
    let client = Client::new(&srv.host(), &quick()).unwrap();
    let resp = client.send_expect(&Request::new("GET", "/v2/", ""), &[200]).unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(srv.requests().len(), 4);
}

#[test]
fn persistent_server_errors_end_in_a_clear_error() {
    let srv = FakeServer::start(vec![
        probe(),
        reply("500 Internal Server Error", &[], b""),
        reply("500 Internal Server Error", &[], b""),
        reply("500 Internal Server Error", &[], b""),
        reply(
            "500 Internal Server Error",
            &[],
            br#"{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}"#,
        ),
    ]);
    let client = Client::new(&srv.host(), &quick()).unwrap();
    let err = client.send_expect(&Request::new("GET", "/v2/x/manifests/t", ""), &[200]).unwrap_err();
    assert_eq!(err.to_string(), "disk on fire (500)");
}

#[test]
fn a_dropped_download_resumes_with_a_range_request() {
    let blob: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let srv = FakeServer::start(vec![
        probe(),
        truncated("200 OK", &[], &blob[..400], 1000),
        reply("206 Partial Content", &[("Content-Range", "bytes 400-999/1000")], &blob[400..]),
    ]);
    let client = Client::new(&srv.host(), &quick()).unwrap();
    let mut r = BlobReader::open(&client, "/v2/x/blobs/sha256:0", "").unwrap();
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    assert_eq!(got, blob);
    let reqs = srv.requests();
    assert!(reqs[2].to_ascii_lowercase().contains("range: bytes=400-"), "{reqs:?}");
}

#[test]
fn a_resume_answered_with_the_whole_blob_skips_what_was_read() {
    let blob: Vec<u8> = (0..1000u32).map(|i| (i % 13) as u8).collect();
    let srv = FakeServer::start(vec![
        probe(),
        truncated("200 OK", &[], &blob[..300], 1000),
        reply("200 OK", &[], &blob),
    ]);
    let client = Client::new(&srv.host(), &quick()).unwrap();
    let mut got = Vec::new();
    BlobReader::open(&client, "/v2/x/blobs/sha256:0", "").unwrap().read_to_end(&mut got).unwrap();
    assert_eq!(got, blob);
}

#[test]
fn basic_challenge_is_answered_with_credentials() {
    let srv = FakeServer::start(vec![
        probe(),
        reply("401 Unauthorized", &[("WWW-Authenticate", r#"Basic realm="x""#)], b""),
        reply("200 OK", &[], b"{}"),
    ]);
    let creds = strata::registry::Credentials { username: "u".into(), password: "p".into() };
    let opts = ClientOptions { credentials: Some(creds), ..quick() };
    let client = Client::new(&srv.host(), &opts).unwrap();
    client.send_expect(&Request::new("GET", "/v2/", ""), &[200]).unwrap();
    assert!(srv.requests()[2].contains("Basic dTpw"), "{:?}", srv.requests());
}

/// A chunked response (no Content-Length) streaming `len` bytes of JSON-looking filler, so only
/// a reader that stops at its limit ends before the stream does.
fn chunked(status: &str, headers: &[(&str, &str)], len: usize) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    let piece = vec![b' '; 64 << 10];
    let mut left = len;
    while left > 0 {
        let n = left.min(piece.len());
        bytes.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        bytes.extend_from_slice(&piece[..n]);
        bytes.extend_from_slice(b"\r\n");
        left -= n;
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    bytes
}

const MANIFEST_LIMIT: &str = "4194304 bytes";
const MANIFEST_TYPE: (&str, &str) = ("Content-Type", "application/vnd.oci.image.manifest.v1+json");

fn fetch_manifest(srv: &FakeServer) -> anyhow::Result<strata::registry::resolve::Fetched> {
    let client = Client::new(&srv.host(), &quick()).unwrap();
    strata::registry::resolve::fetch(&client, "x", "t", None, "")
}

#[test]
fn a_manifest_declaring_more_than_the_limit_is_refused_before_reading() {
    // Claims 5 GiB and sends nothing: only the Content-Length check can end this at once.
    let srv = FakeServer::start(vec![probe(), truncated("200 OK", &[MANIFEST_TYPE], b"", 5 << 30)]);
    let started = std::time::Instant::now();
    let err = format!("{:#}", fetch_manifest(&srv).unwrap_err());
    assert!(err.contains("the manifest") && err.contains(MANIFEST_LIMIT), "{err}");
    assert!(err.contains(&(5u64 << 30).to_string()), "names the declared size: {err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn a_chunked_manifest_streaming_past_the_limit_is_cut_off() {
    // No Content-Length: the reader must stop at the limit and say so, not buffer 16 MiB.
    let srv = FakeServer::start(vec![probe(), chunked("200 OK", &[MANIFEST_TYPE], 16 << 20)]);
    let err = format!("{:#}", fetch_manifest(&srv).unwrap_err());
    assert!(err.contains("the manifest") && err.contains(MANIFEST_LIMIT), "{err}");
}

#[test]
fn a_token_response_streaming_past_the_limit_is_refused_with_its_name() {
    // The challenge's realm is the fake server itself: its next connection is the token request.
    let srv = FakeServer::start_with(|port| {
        let realm = format!(r#"Bearer realm="http://127.0.0.1:{port}/token",service="x""#);
        vec![
            probe(),
            reply("401 Unauthorized", &[("WWW-Authenticate", &realm)], b""),
            chunked("200 OK", &[("Content-Type", "application/json")], 16 << 20),
        ]
    });
    let err = format!("{:#}", fetch_manifest(&srv).unwrap_err());
    assert!(err.contains("token from") && err.contains("1048576 bytes"), "{err}");
    assert!(srv.requests()[2].starts_with("GET /token"), "{:?}", srv.requests());
}

#[test]
fn a_huge_error_body_is_not_buffered() {
    // A 404 whose body streams 16 MiB: the error is the status, read from a bounded prefix.
    let srv = FakeServer::start(vec![probe(), chunked("404 Not Found", &[], 16 << 20)]);
    let err = format!("{:#}", fetch_manifest(&srv).unwrap_err());
    assert!(err.contains("404"), "{err}");
}

#[test]
fn a_pull_of_an_oversized_manifest_fails_fast_and_stores_nothing() {
    let srv = FakeServer::start(vec![probe(), chunked("200 OK", &[MANIFEST_TYPE], 16 << 20)]);
    let s = common::strata::Strata::new();
    common::strata::store_with_image(&s);
    let before = s.snapshot();
    let err = s.fails(&["pull", &format!("{}/x:t", srv.host())]);
    assert!(err.contains("the manifest") && err.contains(MANIFEST_LIMIT), "{err} {:?}", srv.requests());
    assert_eq!(s.snapshot(), before, "the failed pull changed the store");
    assert_eq!(common::images::tmp_leftovers(&s.root()), Vec::<std::ffi::OsString>::new());
}

//! The registry client against a scripted HTTP server (tests/common/fake_http.rs), for what a
//! real registry cannot be made to do on demand: 5xx answers retried with backoff, a download cut
//! off and resumed with a Range request, a Basic challenge answered.

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

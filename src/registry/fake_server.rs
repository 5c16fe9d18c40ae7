//! A scripted HTTP/1.1 server on 127.0.0.1 for unit tests of retries and resumed downloads: each
//! connection gets the next scripted reply (raw bytes, then the connection closes).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub struct FakeServer {
    pub port: u16,
    /// The request head (request line + headers) of every connection, in order.
    pub seen: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Serves `replies` one per connection, then stops.
    pub fn start(replies: Vec<Vec<u8>>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let thread = std::thread::spawn(move || {
            for reply in replies {
                let Ok((stream, _)) = listener.accept() else { return };
                // A TLS ClientHello (the client's https probe) has no blank line: stop on a timeout.
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(300)));
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                log.lock().expect("log").push(head);
                let mut out = stream;
                let _ = out.write_all(&reply);
                let _ = out.flush();
            }
        });
        FakeServer { port, seen, thread: Some(thread) }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().expect("log").clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // The thread ends once its script is used up; a test that stops early leaves it blocked in
        // accept, which dies with the test process.
        if let Some(t) = self.thread.take() {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// A complete response with `Connection: close`.
pub fn reply(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    truncated(status, headers, body, body.len())
}

/// A response that promises `total` bytes but sends only `body` before closing.
pub fn truncated(status: &str, headers: &[(&str, &str)], body: &[u8], total: usize) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {total}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Duration;

    use super::*;
    use crate::registry::blob_reader::BlobReader;
    use crate::registry::client::{Client, ClientOptions, Request};
    use crate::registry::retry::Backoff;

    fn quick() -> ClientOptions {
        let backoff = Backoff {
            attempts: 4,
            first_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        };
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
        let creds = crate::registry::Credentials { username: "u".into(), password: "p".into() };
        let opts = ClientOptions { credentials: Some(creds), ..quick() };
        let client = Client::new(&srv.host(), &opts).unwrap();
        client.send_expect(&Request::new("GET", "/v2/", ""), &[200]).unwrap();
        assert!(srv.requests()[2].contains("Basic dTpw"), "{:?}", srv.requests());
    }
}

//! A scripted HTTP/1.1 server on 127.0.0.1 for tests of the registry client's retries, resumed
//! downloads and challenges: each connection gets the next scripted reply (raw bytes, then the
//! connection closes). For what a real registry cannot be made to do on demand.

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
        FakeServer::start_with(|_| replies)
    }

    /// Like `start`, for a script that names the server's own port (a token realm, a redirect).
    pub fn start_with(script: impl FnOnce(u16) -> Vec<Vec<u8>>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let replies = script(port);
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

//! Freezing a writable mount while its upper is read (a commit of a mount in use): every request
//! that changes the upper enters the [`Gate`] shared; a freeze takes it exclusive, so it waits
//! for the changes in flight to finish and holds new ones (writers only wait) until thawed.
//!
//! The daemon answers freezes on a unix socket ([`serve`]): a client sends `freeze\n`, gets
//! `frozen\n` once the gate is held, and the mount thaws when that connection closes, so a
//! killed client never leaves the mount frozen. The socket sits in the container's private
//! directory: only its owner (or root) reaches it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Shared by the requests that change the upper, exclusive for a freeze. std's RwLock on Linux
/// queues new readers behind a waiting writer, so a stream of writes cannot starve a freeze.
#[derive(Debug, Default)]
pub struct Gate(RwLock<()>);

impl Gate {
    /// Entered at the top of a request that changes the upper; waits while frozen.
    pub fn enter(&self) -> RwLockReadGuard<'_, ()> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the changes in flight; no new one starts until the guard is dropped.
    pub fn freeze(&self) -> RwLockWriteGuard<'_, ()> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A socket path short enough for `sockaddr_un` (108 bytes) however deep `path` is: through
/// the `/proc/self/fd` link of its directory, opened here (the fd must outlive its use).
fn short_path(path: &Path) -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    use std::os::fd::AsRawFd;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or_else(|| std::io::Error::other("socket path has no name"))?;
    let d = std::fs::File::open(dir)?;
    let short = Path::new("/proc/self/fd").join(d.as_raw_fd().to_string()).join(name);
    Ok((d, short))
}

/// Listens on `path` (replacing a stale socket) and serves freezes in a thread; the socket is
/// removed when the returned guard drops (the session is over).
pub fn serve(path: &Path, gate: Arc<Gate>) -> std::io::Result<SocketGuard> {
    listen(path)?.serve(gate)
}

/// The control socket bound and listening, its thread not started yet: a mount binds it before
/// it answers (a freeze asked at once connects and waits in the backlog) and starts the thread
/// after, so the thread's start is not on the way to the mount's answer.
pub struct Listening {
    listener: UnixListener,
    guard: SocketGuard,
}

/// Binds the control socket at `path` (replacing a stale one).
pub fn listen(path: &Path) -> std::io::Result<Listening> {
    let _ = std::fs::remove_file(path);
    let (_dir, short) = short_path(path)?;
    let listener = UnixListener::bind(&short)?;
    Ok(Listening { listener, guard: SocketGuard(path.to_path_buf()) })
}

impl Listening {
    /// Starts answering freezes through `gate`.
    pub fn serve(self, gate: Arc<Gate>) -> std::io::Result<SocketGuard> {
        spawn_server(self.listener, gate)?;
        Ok(self.guard)
    }
}

fn spawn_server(listener: UnixListener, gate: Arc<Gate>) -> std::io::Result<()> {
    std::thread::Builder::new().name("strata-freeze".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let gate = gate.clone();
            let spawned = std::thread::Builder::new().name("strata-frozen".into()).spawn(move || {
                if let Err(e) = answer(conn, &gate) {
                    tracing::warn!("freeze request: {e}");
                }
            });
            if let Err(e) = spawned {
                tracing::warn!("no thread for a freeze request: {e}");
            }
        }
    })?;
    Ok(())
}

fn answer(conn: UnixStream, gate: &Gate) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(&conn).take(64).read_line(&mut line)?;
    if line.trim() != "freeze" {
        return (&conn).write_all(b"error: unknown request\n");
    }
    let frozen = gate.freeze();
    tracing::info!("frozen");
    (&conn).write_all(b"frozen\n")?;
    // Held until the client closes (or dies): anything it sends is ignored.
    let _ = std::io::copy(&mut &conn, &mut std::io::sink());
    drop(frozen);
    tracing::info!("thawed");
    Ok(())
}

/// Removes the socket when the session ends.
pub struct SocketGuard(std::path::PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Freezes the mount whose daemon listens on `path`; it stays frozen until the returned
/// stream is dropped. `Ok(None)` when no daemon listens there.
pub fn freeze(path: &Path) -> std::io::Result<Option<UnixStream>> {
    let (_dir, short) = short_path(path)?;
    let conn = match UnixStream::connect(&short) {
        Ok(c) => c,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ECONNREFUSED)) => return Ok(None),
        Err(e) => return Err(e),
    };
    (&conn).write_all(b"freeze\n")?;
    let mut line = String::new();
    BufReader::new(&conn).take(64).read_line(&mut line)?;
    if line.trim() != "frozen" {
        return Err(std::io::Error::other(format!("the mount daemon answered {:?} to freeze", line.trim())));
    }
    Ok(Some(conn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn freeze_waits_for_changes_in_flight_holds_new_ones_and_thaws_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("control.sock");
        let gate = Arc::new(Gate::default());
        let _g = serve(&sock, gate.clone()).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let in_flight = gate.enter();
        let (g2, d2) = (gate.clone(), done.clone());
        let freezer = std::thread::spawn(move || {
            let conn = freeze(&sock).unwrap().unwrap();
            // Frozen: a change started now waits.
            let (g3, d3) = (g2.clone(), d2.clone());
            let writer = std::thread::spawn(move || {
                let _in = g3.enter();
                d3.fetch_add(1, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(100));
            let held = d2.load(Ordering::SeqCst);
            drop(conn);
            writer.join().unwrap();
            held
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!freezer.is_finished(), "freeze must wait for the change in flight");
        drop(in_flight);
        assert_eq!(freezer.join().unwrap(), 0, "a change ran while frozen");
        assert_eq!(done.load(Ordering::SeqCst), 1, "the held change runs after the thaw");
    }
}

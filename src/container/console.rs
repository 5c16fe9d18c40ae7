//! crun's console socket. With `terminal: true` a runtime in the foreground proxies the
//! container's pty to its own stdio (a pty of strata's), and crun can exit before it has copied a
//! short process's last output: under load `run -t … tty` lost it 11 times in 20 (runc: never).
//! So crun gets `--console-socket` instead: it sends the pty's master over it, and strata relays
//! that master to its own pty to the end (EIO), window sizes included. runc refuses a console
//! socket without `--detach` and its proxy drains, so runc keeps proxying.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::runtime::Runtime;

/// The relayed master, for window sizes: one console per strata process (a monitor's or an
/// exec's).
static RELAYED: Mutex<Option<Arc<OwnedFd>>> = Mutex::new(None);

/// How long the relay may go on draining once the runtime is gone (something the container left
/// running may hold its pty).
const DRAIN: Duration = Duration::from_secs(2);

/// A console socket and the thread that receives the master and relays it.
pub struct ConsoleSocket {
    dir: PathBuf,
    path: PathBuf,
    /// Closed to stop the relay (its poll sees the hang-up).
    stop: Option<OwnedFd>,
    done: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl ConsoleSocket {
    /// A console socket for `rt` if it is crun, relaying to `slave`, the pty strata gives it as
    /// stdio. `None` for another runtime, or when no socket can be made (crun proxies then).
    pub fn for_runtime(rt: &Runtime, slave: &OwnedFd) -> Option<ConsoleSocket> {
        if rt.name != "crun" {
            return None;
        }
        match Self::listen(slave) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::debug!("no console socket ({e}): crun proxies the terminal itself");
                None
            }
        }
    }

    fn listen(slave: &OwnedFd) -> io::Result<ConsoleSocket> {
        // sun_path holds 108 bytes, fewer than a store path may take: a private directory of its
        // own under the temp dir.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("strata-console-{}-{}", std::process::id(), nanos.as_nanos()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let path = dir.join("s");
        let made = (|| {
            let listener = UnixListener::bind(&path)?;
            let slave = slave.try_clone()?;
            let (stop_r, stop_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let (done_tx, done) = mpsc::channel();
            let thread = std::thread::Builder::new().name("console".into()).spawn(move || {
                if let Ok((conn, _)) = listener.accept() {
                    if let Ok(Some(master)) = crate::sys::tty::receive_fd(conn.as_fd()) {
                        relay(Arc::new(master), slave, stop_r, &done_tx);
                    }
                }
                let _ = done_tx.send(());
            })?;
            Ok::<_, io::Error>((stop_w, done, thread))
        })();
        match made {
            Ok((stop, done, thread)) => {
                Ok(ConsoleSocket { dir, path, stop: Some(stop), done, thread: Some(thread) })
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ConsoleSocket {
    /// Once the runtime is gone: wakes a listener it never connected to (it failed first), lets
    /// the relay drain for `DRAIN` at most, stops it and cleans up.
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        let _ = UnixStream::connect(&self.path);
        let _ = self.done.recv_timeout(DRAIN);
        drop(self.stop.take());
        let _ = thread.join();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The user's terminal changed size: so does the relayed console, if there is one.
pub fn pass_window_size(ws: &nix::pty::Winsize) {
    let relayed = RELAYED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(m) = relayed {
        let _ = crate::sys::tty::set_window_size(m.as_fd(), ws);
    }
}

/// Relays the container's pty `master` to strata's pty `slave` (output) and back (input) until
/// the container's pty ends or `stop` hangs up.
fn relay(master: Arc<OwnedFd>, slave: OwnedFd, stop: OwnedFd, done: &mpsc::Sender<()>) {
    // strata's pty passes bytes as they are: the container's own does the line discipline.
    if let Ok(mut t) = nix::sys::termios::tcgetattr(&slave) {
        nix::sys::termios::cfmakeraw(&mut t);
        let _ = nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &t);
    }
    if let Some(ws) = crate::sys::tty::window_size(slave.as_fd()) {
        let _ = crate::sys::tty::set_window_size(master.as_fd(), &ws);
    }
    *RELAYED.lock().unwrap_or_else(|e| e.into_inner()) = Some(master.clone());
    let input = match (slave.try_clone(), master.try_clone(), stop.try_clone()) {
        (Ok(from), Ok(to), Ok(stop)) => {
            std::thread::Builder::new().name("console-in".into()).spawn(move || {
                copy_until(from, to, stop);
            })
        }
        _ => Err(io::Error::other("no fds for the console's input")),
    };
    if let Ok(from) = master.try_clone() {
        copy_until(from, slave, stop);
    }
    *RELAYED.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let _ = done.send(());
    if let Ok(t) = input {
        let _ = t.join();
    }
}

/// Copies `from` to `to` until `from` ends (EOF, or EIO: a pty whose other side is gone), a
/// write fails, or `stop` hangs up.
fn copy_until(from: OwnedFd, to: OwnedFd, stop: OwnedFd) {
    let (mut from, mut to) = (File::from(from), File::from(to));
    let mut buf = [0u8; 8192];
    loop {
        let mut fds =
            [PollFd::new(from.as_fd(), PollFlags::POLLIN), PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        if fds[1].any().unwrap_or(true) {
            return;
        }
        if !fds[0].any().unwrap_or(false) {
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

//! The stdio a container's process gets: always pipes or a pty of strata's own, never a file or
//! terminal of the host. Runtimes make the process's stdio its own (crun fchowns it to the
//! container's user), which on an inherited `/dev/null`, terminal or file would change the owner
//! of that host file; for `-t`, strata's pty stands between the user's terminal and the runtime.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

use super::engine::Gate;

/// Input that ends at once, as `/dev/null` would: a pipe whose writing end is already closed.
pub fn empty_input() -> io::Result<Stdio> {
    let (r, _w) = pipe2(OFlag::O_CLOEXEC)?;
    Ok(r.into())
}

/// Input that stays open and gives nothing, as a container's stdin under Docker's `-i` when
/// nobody's input is attached: a shell waits on it instead of ending at EOF. It stays open while
/// the returned writing end is held.
pub fn held_input() -> io::Result<(Stdio, OwnedFd)> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
    Ok((r.into(), w))
}

/// This process's stdin, forwarded through a pipe. The copying thread is not joined: it ends
/// with the input (a read of a terminal blocks until the user types).
pub fn forwarded_input() -> io::Result<Stdio> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
    std::thread::Builder::new().name("stdin".into()).spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut File::from(w));
    })?;
    Ok(r.into())
}

/// A pipe whose output a thread copies to `to` (this process's stdout or stderr); join the
/// thread once the process has ended, so all of its output is written.
pub fn forwarded_output(to: impl Write + Send + 'static) -> io::Result<(Stdio, JoinHandle<()>)> {
    let gate = Gate::default();
    gate.decide(true);
    gated_output(to, &gate)
}

/// [`forwarded_output`] that holds the output back until `gate` decides, and drops it if the
/// decision is no (what a runtime prints when it can't start the process is strata's error).
pub fn gated_output(to: impl Write + Send + 'static, gate: &Gate) -> io::Result<(Stdio, JoinHandle<()>)> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
    Ok((w.into(), copy_out(r, to, gate)?))
}

/// A thread copying `from` to `to` once `gate` says so, up to the end of `from` (or EIO, which a
/// pty's master answers once the last slave is closed).
pub fn copy_out(
    from: OwnedFd,
    mut to: impl Write + Send + 'static,
    gate: &Gate,
) -> io::Result<JoinHandle<()>> {
    let gate = gate.clone();
    std::thread::Builder::new().name("output".into()).spawn(move || {
        let mut from = File::from(from);
        let pass = gate.wait();
        let mut buf = [0u8; 8192];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if pass && to.write_all(&buf[..n]).and_then(|_| to.flush()).is_err() {
                break;
            }
        }
    })
}

/// A pty of strata's own standing in for a terminal (`-t`), of the size of this process's
/// terminal if it has one: the runtime gets the slave as stdin, stdout and stderr (and sets up
/// the container's own terminal from it); the master is strata's side.
pub fn open_pty() -> io::Result<(Arc<OwnedFd>, OwnedFd, [Stdio; 3])> {
    let size = crate::sys::tty::window_size(io::stdout().as_fd())
        .or_else(|| crate::sys::tty::window_size(io::stdin().as_fd()));
    let pty = nix::pty::openpty(size.as_ref(), None)?;
    // Neither end may leak into the runtime but as its stdio (dup2 there clears the flag).
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
    }
    let slave = pty.slave;
    let stdio = [slave.try_clone()?.into(), slave.try_clone()?.into(), slave.try_clone()?.into()];
    Ok((Arc::new(pty.master), slave, stdio))
}

/// Copies this process's stdin to the pty's master. The thread is not joined: it ends with the
/// input (a read of a terminal blocks until the user types).
pub fn forward_input_to(master: &Arc<OwnedFd>) {
    let to = master.clone();
    let _ = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        let Ok(fd) = to.try_clone() else { return };
        let _ = io::copy(&mut io::stdin().lock(), &mut File::from(fd));
    });
}

/// The user's terminal changed size: so does the pty given to the runtime, and the runtime hears
/// it (SIGWINCH: it resizes the container's terminal from its own).
pub fn pass_window_size(master: &OwnedFd, runtime: nix::unistd::Pid) {
    if let Some(ws) = crate::sys::tty::window_size(io::stdout().as_fd()) {
        let _ = crate::sys::tty::set_window_size(master.as_fd(), &ws);
        super::console::pass_window_size(&ws);
        let _ = nix::sys::signal::kill(runtime, nix::sys::signal::Signal::SIGWINCH);
    }
}

/// Puts this process's stdin (a terminal) in raw mode, as `docker run -it` does, so keys such as
/// Ctrl-C reach the container's terminal; restores it when dropped.
pub struct RawTerminal(nix::sys::termios::Termios);

impl RawTerminal {
    /// `None` when stdin is no terminal.
    pub fn new() -> Option<RawTerminal> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ =
            nix::sys::termios::tcsetattr(io::stdin().as_fd(), nix::sys::termios::SetArg::TCSANOW, &self.0);
    }
}

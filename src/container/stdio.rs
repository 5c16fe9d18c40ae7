//! The stdio a container's process gets: always pipes of strata's own, never a file of the host.
//! Runtimes make the process's stdio its own (crun fchowns it to the container's user), which on
//! an inherited `/dev/null`, terminal or file would change the owner of that host file.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::thread::JoinHandle;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

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
pub fn forwarded_output(mut to: impl Write + Send + 'static) -> io::Result<(Stdio, JoinHandle<()>)> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
    let copier = std::thread::Builder::new().name("output".into()).spawn(move || {
        let mut from = File::from(r);
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).and_then(|_| to.flush()).is_err() {
                break;
            }
        }
    })?;
    Ok((w.into(), copier))
}

//! Terminal window sizes (TIOCGWINSZ / TIOCSWINSZ), for the pty `strata run -t` stands between
//! the user's terminal and the container's.

use std::os::fd::{AsRawFd, BorrowedFd};

pub use libc::winsize as Winsize;

/// The window size of the terminal `fd`, if it is one.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<Winsize> {
    let mut ws = Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize into `ws`, a valid, exclusively borrowed struct; the
    // fd is borrowed, so open for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some(ws)
}

/// Sets the window size of the terminal `fd` (the kernel signals SIGWINCH to its foreground
/// process group).
pub fn set_window_size(fd: BorrowedFd<'_>, ws: &Winsize) -> std::io::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize from `ws`, a valid struct; the fd is borrowed.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws as *const Winsize) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Receives the one file descriptor a peer sends over the Unix socket `sock` (SCM_RIGHTS, how a
/// runtime hands over a console's pty master); `None` when the peer sent none.
pub fn receive_fd(sock: BorrowedFd<'_>) -> std::io::Result<Option<std::os::fd::OwnedFd>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::FromRawFd;
    let mut buf = [0u8; 1024];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut got = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel installed `fd` in this process for this message; nothing
                // else owns it.
                let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
    }
    Ok(got)
}

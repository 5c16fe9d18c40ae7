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

//! File-data syscalls nix gates behind features this crate does not enable.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// `copy_file_range(2)` between explicit offsets, which are advanced by the bytes copied.
pub fn copy_file_range(
    src: BorrowedFd<'_>,
    off_in: &mut i64,
    dst: BorrowedFd<'_>,
    off_out: &mut i64,
    len: usize,
) -> Result<usize, Errno> {
    // SAFETY: both fds are valid for the duration of the call (borrowed), and the offsets are
    // valid, exclusive pointers to i64 (loff_t) that the kernel may update.
    let n = unsafe {
        libc::copy_file_range(
            src.as_raw_fd(),
            off_in as *mut i64,
            dst.as_raw_fd(),
            off_out as *mut i64,
            len,
            0,
        )
    };
    Errno::result(n).map(|n| n as usize)
}

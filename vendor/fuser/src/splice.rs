//! READ replies through /dev/fuse by splice (strata patch 3), as libfuse sends them: the out
//! header is written into a pipe, the file's pages are spliced in behind it by reference, and
//! the pipe is spliced into /dev/fuse, where the kernel copies each page once into the FUSE
//! file's page cache. A `pread` into a buffer and a `writev` from it copy the data twice.
//!
//! Each request thread keeps one pipe, sized for the largest reply it has sent. The header goes
//! in first, so the reply's length comes from the file's size beforehand (a READ across the
//! end of the file is cut to it). Whatever can't go this way — a small reply, a pipe that can't
//! be made big enough (an unprivileged user is held to `/proc/sys/fs/pipe-max-size`), a file
//! that doesn't splice or shrank meanwhile — is answered by the caller through a buffer, and a
//! pipe left holding anything is emptied or dropped so nothing reaches the next reply.

use std::cell::RefCell;
use std::io;
use std::os::fd::AsFd;
use std::os::fd::BorrowedFd;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::FcntlArg;
use nix::fcntl::OFlag;
use nix::fcntl::SpliceFFlags;
use nix::fcntl::fcntl;
use nix::fcntl::splice;
use zerocopy::IntoBytes;

use crate::ll::RequestId;
use crate::ll::fuse_abi::fuse_out_header;

/// Smaller replies are cheaper copied: a splice costs a syscall more than `pread` + `writev`.
pub(crate) const MIN_SPLICE: usize = 32 * 1024;

const OUT_HEADER: usize = size_of::<fuse_out_header>();

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes it holds, as the kernel counts them (whole pages per buffer).
    capacity: usize,
}

thread_local! {
    static PIPE: RefCell<Option<Pipe>> = const { RefCell::new(None) };
}

/// What became of a reply offered to `send`.
pub(crate) enum Spliced {
    /// The whole reply went to /dev/fuse (or sending it failed with this error).
    Sent(io::Result<()>),
    /// Nothing was sent: answer through a buffer.
    Fallback,
}

/// Sends the reply to READ `unique`: up to `size` bytes of `file` from `offset`, as many as the
/// file holds there now. `file_size`, when the caller knows it (a file that never changes), saves
/// an `fstat` per reply; a file that holds less after all falls back as one that shrank.
pub(crate) fn send(
    dev: BorrowedFd<'_>,
    unique: RequestId,
    file: BorrowedFd<'_>,
    offset: u64,
    size: usize,
    file_size: Option<u64>,
) -> Spliced {
    let Ok(offset) = i64::try_from(offset) else { return Spliced::Fallback };
    // The header goes in first, so the length must be known: a read across the end of the file
    // (the last READ of nearly every file) is cut to the size now rather than found short.
    let file_size = match file_size.and_then(|s| i64::try_from(s).ok()) {
        Some(s) => s,
        None => match nix::sys::stat::fstat(file) {
            Ok(st) => st.st_size,
            Err(_) => return Spliced::Fallback,
        },
    };
    let size = size.min(usize::try_from(file_size.saturating_sub(offset)).unwrap_or(0));
    if size < MIN_SPLICE {
        return Spliced::Fallback;
    }
    PIPE.with(|cell| {
        let Ok(mut held) = cell.try_borrow_mut() else { return Spliced::Fallback };
        let page = page_size::get();
        // One pipe buffer for the header, one per page of data, one more if `offset` is not
        // page-aligned.
        let needed = (size.div_ceil(page) + 2) * page;
        if held.is_none() {
            let Ok((read, write)) = nix::unistd::pipe2(OFlag::O_CLOEXEC) else { return Spliced::Fallback };
            *held = Some(Pipe { read, write, capacity: 0 });
        }
        let Some(pipe) = held.as_mut() else { return Spliced::Fallback };
        // A pipe that can't grow (the user's limit) still serves smaller replies.
        if pipe.capacity < needed && !grow(pipe, needed) {
            return Spliced::Fallback;
        }
        // Out of `held` until it is known to be empty again.
        let Some(pipe) = held.take() else { return Spliced::Fallback };
        let header = fuse_out_header { len: (OUT_HEADER + size) as u32, error: 0, unique: unique.0 };
        match nix::unistd::write(&pipe.write, header.as_bytes()) {
            Ok(OUT_HEADER) => {}
            _ => return Spliced::Fallback,
        }
        let mut off = offset;
        let mut got = 0;
        while got < size {
            match splice(file, Some(&mut off), &pipe.write, None, size - got, SpliceFFlags::SPLICE_F_NONBLOCK) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        if got < size {
            // The file shrank meanwhile, or doesn't splice: the header in the pipe doesn't fit
            // what is behind it. Empty the pipe (or drop it) and answer through a buffer.
            if drain(&pipe, OUT_HEADER + got) {
                *held = Some(pipe);
            }
            return Spliced::Fallback;
        }
        let total = OUT_HEADER + size;
        let sent = loop {
            match splice(&pipe.read, None, dev, None, total, SpliceFFlags::empty()) {
                Ok(n) if n == total => break Ok(()),
                Ok(n) => break Err(io::Error::other(format!("spliced {n} of a {total}-byte reply"))),
                Err(Errno::EINTR) => {}
                Err(e) => break Err(e.into()),
            }
        };
        // A failed send can leave part of the reply in the pipe: keep the pipe only if it is
        // empty.
        if sent.is_ok() {
            *held = Some(pipe);
        }
        Spliced::Sent(sent)
    })
}

/// Sizes the (empty) pipe for `needed` bytes (the kernel rounds up to a power of two pages);
/// false if it may not be that big.
fn grow(pipe: &mut Pipe, needed: usize) -> bool {
    let Ok(asked) = i32::try_from(needed) else { return false };
    match fcntl(pipe.write.as_fd(), FcntlArg::F_SETPIPE_SZ(asked)) {
        Ok(got) => {
            pipe.capacity = usize::try_from(got).unwrap_or(0);
            pipe.capacity >= needed
        }
        Err(_) => false,
    }
}

/// Reads and discards the `len` bytes the pipe holds; false if that failed.
fn drain(pipe: &Pipe, mut len: usize) -> bool {
    let mut sink = [0u8; 16384];
    while len > 0 {
        let n = len.min(sink.len());
        match nix::unistd::read(&pipe.read, &mut sink[..n]) {
            Ok(0) => return false,
            Ok(k) => len -= k,
            Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    true
}

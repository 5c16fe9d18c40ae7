use std::cell::RefCell;
use std::io;
use std::os::fd::AsFd;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use nix::errno::Errno;

use crate::dev_fuse::DevFuse;
use crate::ll::RequestId;
use crate::ll::ResponseErrno;
use crate::ll::ResponseSlice;
use crate::ll::reply::Response;
use crate::passthrough::BackingId;

thread_local! {
    /// The body of this thread's /dev/fuse replies built with `send_filled` (READ data): kept
    /// and reused, as a fresh buffer per request costs an mmap, a page fault per page and a
    /// munmap (glibc serves allocations of 128 KiB and more with mmap).
    static REPLY_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A raw communication channel to the FUSE kernel driver
#[derive(Debug, Clone)]
pub(crate) struct Channel(Arc<DevFuse>);

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Channel {
    /// Create a new communication channel to the kernel driver by mounting the
    /// given path. The kernel driver will delegate filesystem operations of
    /// the given path to the channel.
    pub(crate) fn new(device: Arc<DevFuse>) -> Self {
        Self(device)
    }

    /// Receives data up to the capacity of the given buffer (can block).
    fn receive(&self, buffer: &mut [u8]) -> nix::Result<usize> {
        nix::unistd::read(&self.0, buffer)
    }

    /// Polls until a request is waiting or `deadline` passes; true if one is. Between polls the
    /// thread yields, so a runnable thread on this CPU (often the requester, woken by the last
    /// reply) goes first: a busy spin held it back. Strata patch 6.
    pub(crate) fn spin_until(&self, deadline: std::time::Instant) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        loop {
            let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::ZERO) {
                Ok(n) if n > 0 => return true,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return false,
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::yield_now();
        }
    }

    /// Receives data up to the capacity of the given buffer (can block),
    /// retrying on errors that are safe to retry (ENOENT, EINTR, EAGAIN).
    ///
    /// - ENOENT: Operation interrupted. According to FUSE, this is safe to retry.
    /// - EINTR: Interrupted system call, retry.
    /// - EAGAIN: Explicitly instructed to try again.
    pub(crate) fn receive_retrying(&self, buffer: &mut [u8]) -> nix::Result<usize> {
        loop {
            match self.receive(buffer) {
                Ok(size) => return Ok(size),
                Err(Errno::ENOENT | Errno::EINTR | Errno::EAGAIN) => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// Returns a sender object for this channel. The sender object can be
    /// used to send to the channel. Multiple sender objects can be used
    /// and they can safely be sent to other threads.
    pub(crate) fn sender(&self) -> ChannelSender {
        // Since write/writev syscalls are threadsafe, we can simply create
        // a sender by using the same file and use it in other threads.
        ChannelSender {
            dev: self.0.clone(),
            #[cfg(target_os = "linux")]
            ring: None,
        }
    }

    /// A sender whose replies go into an io_uring entry (`uring.rs`) instead of /dev/fuse;
    /// passthrough's backing-file ioctls still use the device.
    #[cfg(target_os = "linux")]
    pub(crate) fn ring_sender(&self, slot: Arc<crate::uring::RingSlot>) -> ChannelSender {
        ChannelSender { dev: self.0.clone(), ring: Some(slot) }
    }

    /// Clone the FUSE device fd using FUSE_DEV_IOC_CLONE ioctl.
    ///
    /// This creates a new fd that can read FUSE requests independently,
    /// enabling true parallel request processing. The kernel distributes
    /// requests across all cloned fds.
    ///
    /// Requires Linux 4.5+. Returns an error on older kernels or non-Linux.
    #[cfg(target_os = "linux")]
    pub(crate) fn clone_fd(&self) -> io::Result<Channel> {
        use std::os::fd::AsRawFd;

        let new_dev = DevFuse::open()?;

        let mut source_fd = self.0.as_raw_fd() as u32;
        // SAFETY: fuse_dev_ioc_clone is a valid ioctl for /dev/fuse
        unsafe {
            crate::ll::ioctl::fuse_dev_ioc_clone(new_dev.as_raw_fd(), &mut source_fd)?;
        }

        Ok(Channel::new(Arc::new(new_dev)))
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ChannelSender {
    dev: Arc<DevFuse>,
    /// The io_uring entry that holds the request being answered, if it came through one.
    #[cfg(target_os = "linux")]
    ring: Option<Arc<crate::uring::RingSlot>>,
}

impl ChannelSender {
    pub(crate) fn send(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(slot) = &self.ring {
            return slot.reply(bufs);
        }
        let rc = nix::sys::uio::writev(&self.dev, bufs)?;
        // writev is atomic, so do not need to check how many bytes are written.
        // libfuse does not do it either
        // https://github.com/libfuse/libfuse/blob/6278995cca991978abd25ebb2c20ebd3fc9e8a13/lib/fuse_lowlevel.c#L267
        debug_assert_eq!(bufs.iter().map(|b| b.len()).sum::<usize>(), rc);
        Ok(())
    }

    /// Sends a reply whose body `fill` writes in place: into the io_uring entry's payload, or
    /// into this thread's reply buffer, then to /dev/fuse.
    pub(crate) fn send_filled(
        &self,
        unique: RequestId,
        size: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, crate::Errno>,
    ) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(slot) = &self.ring {
            if size <= slot.payload_len() {
                return slot.reply_filled(unique, size, fill);
            }
            // Too big for the entry: `send` below answers EIO, as for any reply that can't fit.
        }
        REPLY_BUF.with(|cell| {
            // A fill that itself replied to another request would find the buffer taken.
            let mut spare = Vec::new();
            let mut held = cell.try_borrow_mut();
            let buf = match held.as_deref_mut() {
                Ok(buf) => buf,
                Err(_) => &mut spare,
            };
            if buf.len() < size {
                // Grows to the largest request once; zeroed so `fill` gets initialised bytes.
                buf.resize(size, 0);
            }
            match fill(&mut buf[..size]) {
                Ok(n) => ResponseSlice(&buf[..n.min(size)]).with_iovec(unique, |iov| self.send(iov)),
                Err(e) => ResponseErrno(e).with_iovec(unique, |iov| self.send(iov)),
            }
        })
    }

    /// Sends the reply to READ `unique`: up to `size` bytes of `file` from `offset` (fewer at
    /// its end; `file_size` if the caller knows it). Through /dev/fuse a big reply is spliced (`splice.rs`); otherwise the data is
    /// read into the buffer the reply leaves from (`send_filled`). Returns the sending error,
    /// and the read error that was answered in place of data.
    pub(crate) fn send_file(
        &self,
        unique: RequestId,
        file: BorrowedFd<'_>,
        offset: u64,
        size: usize,
        file_size: Option<u64>,
    ) -> (io::Result<()>, Option<crate::Errno>) {
        #[cfg(target_os = "linux")]
        if self.ring.is_none() && size >= crate::splice::MIN_SPLICE {
            if let crate::splice::Spliced::Sent(res) =
                crate::splice::send(self.dev.as_fd(), unique, file, offset, size, file_size)
            {
                return (res, None);
            }
        }
        let mut failed = None;
        let sent = self.send_filled(unique, size, |buf| {
            read_full(file, offset, buf).inspect_err(|e| failed = Some(*e))
        });
        (sent, failed)
    }

    pub(crate) fn open_backing(&self, fd: BorrowedFd<'_>) -> std::io::Result<BackingId> {
        BackingId::create(&self.dev, fd)
    }

    pub(crate) unsafe fn wrap_backing(&self, id: u32) -> BackingId {
        unsafe { BackingId::wrap_raw(&self.dev, id) }
    }
}

/// Reads `buf.len()` bytes of `file` from `offset`, fewer only at its end.
pub(crate) fn read_full(file: BorrowedFd<'_>, offset: u64, buf: &mut [u8]) -> Result<usize, crate::Errno> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset
            .checked_add(done as u64)
            .and_then(|at| i64::try_from(at).ok())
            .ok_or(crate::Errno::EINVAL)?;
        match nix::sys::uio::pread(file, &mut buf[done..], at) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(crate::Errno::from_i32(e as i32)),
        }
    }
    Ok(done)
}

//! FUSE over io_uring (strata patch 2): the kernel hands requests to per-CPU queues of ring
//! entries instead of making the daemon read `/dev/fuse`, and one io_uring command both sends
//! a reply and fetches the next request.
//!
//! The protocol (the kernel's `Documentation/filesystems/fuse-io-uring.rst`, uapi `linux/fuse.h`,
//! `fs/fuse/dev_uring.c`):
//! - The kernel offers `FUSE_OVER_IO_URING` (a `flags2` bit) in INIT only when the admin has set
//!   `/sys/module/fuse/parameters/enable_uring`; accepting it in the INIT reply makes the kernel
//!   hold every new request until each per-CPU queue (one per *possible* CPU) has an entry
//!   registered, or until a registration fails, which turns io_uring off for the connection and
//!   lets the held requests go to `/dev/fuse`. So the rings are set up before the INIT reply, and
//!   the flag is accepted only if that worked.
//! - An entry is a header buffer (`struct fuse_uring_req_header`: in/out header, the opcode's own
//!   header, `struct fuse_uring_ent_in_out`) and a payload buffer at least as large as the
//!   connection's biggest request, registered with `FUSE_IO_URING_CMD_REGISTER`
//!   (`IORING_OP_URING_CMD` in a 128-byte SQE on the `/dev/fuse` fd, `addr` = two iovecs,
//!   `len` = 2). The entry's completion is a request.
//! - The reply is written into the same two buffers (out header in the header buffer, the rest in
//!   the payload) and `FUSE_IO_URING_CMD_COMMIT_AND_FETCH` (the `commit_id` the kernel gave)
//!   sends it and puts the entry back in the queue.
//! - FORGET and INTERRUPT still come through `/dev/fuse`, and notifications still go there, so
//!   the session keeps its `/dev/fuse` threads (which also serve everything if io_uring is
//!   turned off after INIT).
//!
//! Requests are copied out of the entry into a buffer of the thread's own before fuser parses
//! them: the reply is written into the entry's payload while the parsed request (a WRITE's
//! data, a name) still borrows its bytes.

use std::io;
use std::io::IoSlice;
use std::mem::size_of;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use io_uring::IoUring;
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::squeue;
use io_uring::types;
use log::debug;
use log::warn;

use crate::Filesystem;
use crate::ll;
use crate::ll::Operation;
use crate::ll::fuse_abi::fuse_in_header;
use crate::ll::fuse_abi::fuse_out_header;
use crate::request::RequestWithSender;
use crate::session::SessionEventLoop;

const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;
const IN_OUT_SZ: usize = 128;
const OP_IN_SZ: usize = 128;
const IN_HEADER: usize = size_of::<fuse_in_header>();
const OUT_HEADER: usize = size_of::<fuse_out_header>();
/// The payload starts one page into the entry's allocation; the header buffer is at its start.
const PAYLOAD_OFFSET: usize = 4096;
/// The kernel's `FUSE_MIN_READ_BUFFER`: no payload buffer may be smaller.
const MIN_PAYLOAD: usize = 8192;
/// Opcodes the kernel expects no answer to (FORGET and BATCH_FORGET normally come through
/// /dev/fuse; NOTIFY_REPLY is the answer to a retrieve): their entry is committed empty.
const NO_REPLY_OPCODES: [u32; 3] = [2, 41, 42];

/// `struct fuse_uring_ent_in_out`.
#[repr(C)]
struct EntInOut {
    flags: u64,
    commit_id: u64,
    payload_sz: u32,
    padding: u32,
    reserved: u64,
}

/// `struct fuse_uring_req_header`.
#[repr(C)]
struct ReqHeader {
    in_out: [u8; IN_OUT_SZ],
    op_in: [u8; OP_IN_SZ],
    ent: EntInOut,
}

const _: () = assert!(size_of::<ReqHeader>() == 288);
const _: () = assert!(size_of::<ReqHeader>() <= PAYLOAD_OFFSET);
const _: () = assert!(size_of::<squeue::Entry128>() == 128);

/// What the session's transport did, for logs and tests: a request counted here was served
/// through the ring, so a test can tell a silent fallback from the real thing.
#[derive(Debug, Default)]
pub struct TransportStats {
    queues: AtomicUsize,
    ring_requests: AtomicU64,
    dev_requests: AtomicU64,
    register_failures: AtomicU64,
    note: Mutex<String>,
}

impl TransportStats {
    /// io_uring queues accepted in INIT (one per possible CPU), 0 when only /dev/fuse is used.
    pub fn io_uring_queues(&self) -> usize {
        self.queues.load(Ordering::Relaxed)
    }

    /// Requests answered through io_uring entries.
    pub fn io_uring_requests(&self) -> u64 {
        self.ring_requests.load(Ordering::Relaxed)
    }

    /// Requests read from /dev/fuse (with io_uring on: FORGET, INTERRUPT).
    pub fn dev_fuse_requests(&self) -> u64 {
        self.dev_requests.load(Ordering::Relaxed)
    }

    /// Entries the kernel refused to register (it then turns io_uring off for the connection).
    pub fn io_uring_register_failures(&self) -> u64 {
        self.register_failures.load(Ordering::Relaxed)
    }

    /// Why io_uring is, or is not, used: for a log line.
    pub fn io_uring_note(&self) -> String {
        self.note.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn set_note(&self, note: impl Into<String>) {
        *self.note.lock().unwrap_or_else(PoisonError::into_inner) = note.into();
    }

    pub(crate) fn set_queues(&self, n: usize) {
        self.queues.store(n, Ordering::Relaxed);
    }

    pub(crate) fn count_dev_request(&self) {
        self.dev_requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// The number of possible CPUs (`/sys/devices/system/cpu/possible`, e.g. `0-3`): the kernel
/// makes one queue for each and switches to io_uring only once every one has an entry.
fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let max = text
        .trim()
        .split([',', '-'])
        .filter_map(|n| n.parse::<usize>().ok())
        .max()
        .ok_or_else(|| io::Error::other(format!("unreadable possible CPUs {text:?}")))?;
    Ok(max + 1)
}

/// One entry's memory: the header buffer at the start, the payload one page in. The kernel
/// reads and writes it only while the entry is its own (between a submission and the
/// completion that hands it back); then the thread that owns the entry, and a reply under
/// `RingSlot::replied`, do.
///
/// Mapped straight from the kernel (anonymous, page-aligned, zero pages on first touch): the
/// allocator's `alloc_zeroed` at page alignment is `memalign` + `memset`, which wrote (and
/// faulted in) the whole payload of every entry at every mount: megabytes and milliseconds of
/// CPU before the first request, and memory a mount that reads little never needed.
struct EntryBuf {
    base: *mut u8,
    len: usize,
    payload_len: usize,
    iov: [libc::iovec; 2],
}

impl EntryBuf {
    fn new(payload_len: usize) -> io::Result<EntryBuf> {
        let len = PAYLOAD_OFFSET
            .checked_add(payload_len)
            .ok_or_else(|| io::Error::other("io_uring payload too large"))?;
        // SAFETY: an anonymous private mapping at an address the kernel chooses touches no
        // existing memory; MAP_FAILED is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = base.cast::<u8>();
        // SAFETY: PAYLOAD_OFFSET is inside the mapping of PAYLOAD_OFFSET + payload_len bytes.
        let payload = unsafe { base.add(PAYLOAD_OFFSET) };
        let iov = [
            libc::iovec { iov_base: base.cast(), iov_len: size_of::<ReqHeader>() },
            libc::iovec { iov_base: payload.cast(), iov_len: payload_len },
        ];
        Ok(EntryBuf { base, len, payload_len, iov })
    }

    fn header(&self) -> *mut ReqHeader {
        self.base.cast()
    }

    fn payload(&self) -> *mut u8 {
        // SAFETY: within the allocation (see `new`).
        unsafe { self.base.add(PAYLOAD_OFFSET) }
    }
}

impl Drop for EntryBuf {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length; the ring that could still write to it is
        // dropped first (`QueueThread::serve`).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// One registered entry, shared by its queue thread and the reply sender of the request it
/// holds.
pub(crate) struct RingSlot {
    buf: EntryBuf,
    replied: Mutex<bool>,
    answered: Condvar,
}

// SAFETY: the raw pointers in `buf` point at memory this slot owns; it is written by the kernel
// only while the entry is submitted, and otherwise by `reply` under the `replied` lock or read by
// the owning queue thread before the request is dispatched.
unsafe impl Send for RingSlot {}
// SAFETY: as above.
unsafe impl Sync for RingSlot {}

impl std::fmt::Debug for RingSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingSlot").field("payload_len", &self.buf.payload_len).finish()
    }
}

impl RingSlot {
    fn new(payload_len: usize) -> io::Result<RingSlot> {
        Ok(RingSlot {
            buf: EntryBuf::new(payload_len)?,
            replied: Mutex::new(false),
            answered: Condvar::new(),
        })
    }

    /// Writes a reply (out header + body, as fuser builds it for /dev/fuse) into the entry.
    pub(crate) fn reply(&self, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        let mut replied = self.replied.lock().unwrap_or_else(PoisonError::into_inner);
        if *replied {
            return Err(io::Error::other("a second reply to one FUSE request"));
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total < OUT_HEADER {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let body = total - OUT_HEADER;
        let header = self.buf.header();
        if body > self.buf.payload_len {
            // The kernel would refuse it; answer EIO in its place so the request ends.
            let mut out = [0u8; OUT_HEADER];
            copy_prefix(bufs, &mut out);
            out[0..4].copy_from_slice(&(OUT_HEADER as u32).to_ne_bytes());
            out[4..8].copy_from_slice(&(-libc::EIO).to_ne_bytes());
            // SAFETY: the entry is ours until committed (see RingSlot); the header buffer holds
            // IN_OUT_SZ ≥ OUT_HEADER bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(out.as_ptr(), (*header).in_out.as_mut_ptr(), OUT_HEADER);
                (*header).ent.payload_sz = 0;
            }
            *replied = true;
            self.answered.notify_all();
            return Err(io::Error::other(format!(
                "a {body}-byte reply does not fit the {}-byte io_uring payload",
                self.buf.payload_len
            )));
        }
        let mut done = 0usize;
        for b in bufs {
            let mut src: &[u8] = b;
            while !src.is_empty() {
                // SAFETY: as above; `done` < total, so the destinations stay inside the header's
                // first OUT_HEADER bytes and the payload's first `body` ≤ payload_len bytes.
                let (dst, room) = unsafe {
                    if done < OUT_HEADER {
                        ((*header).in_out.as_mut_ptr().add(done), OUT_HEADER - done)
                    } else {
                        (self.buf.payload().add(done - OUT_HEADER), total - done)
                    }
                };
                let n = room.min(src.len());
                // SAFETY: `dst` has `room` ≥ n writable bytes (above); `src` is a separate buffer.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, n) };
                done += n;
                src = &src[n..];
            }
        }
        // SAFETY: as above.
        unsafe { (*header).ent.payload_sz = body as u32 };
        *replied = true;
        self.answered.notify_all();
        Ok(())
    }

    /// The largest reply body the entry holds.
    pub(crate) fn payload_len(&self) -> usize {
        self.buf.payload_len
    }

    /// Writes a reply whose body `fill` puts straight into the entry's payload (no buffer in
    /// between: a READ's data is read into the memory the kernel copies it from).
    /// `size` ≤ `payload_len()`.
    pub(crate) fn reply_filled(
        &self,
        unique: ll::RequestId,
        size: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, crate::Errno>,
    ) -> io::Result<()> {
        let mut replied = self.replied.lock().unwrap_or_else(PoisonError::into_inner);
        if *replied {
            return Err(io::Error::other("a second reply to one FUSE request"));
        }
        let size = size.min(self.buf.payload_len);
        // SAFETY: the entry is ours until committed (see RingSlot) and its payload holds
        // payload_len ≥ size initialised (zeroed at allocation) bytes. Nothing else refers to
        // the payload meanwhile: the request was copied out of it before dispatch (`handle`),
        // and replies write it only under `replied`, which is held here.
        let body = unsafe { std::slice::from_raw_parts_mut(self.buf.payload(), size) };
        let (len, error) = match fill(body) {
            Ok(n) => (n.min(size), 0),
            Err(e) => (0, -e.code()),
        };
        let out = ll::fuse_abi::fuse_out_header { len: (OUT_HEADER + len) as u32, error, unique: unique.0 };
        let bytes = zerocopy::IntoBytes::as_bytes(&out);
        let header = self.buf.header();
        // SAFETY: as above; the header buffer holds IN_OUT_SZ ≥ OUT_HEADER bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), (*header).in_out.as_mut_ptr(), OUT_HEADER);
            (*header).ent.payload_sz = len as u32;
        }
        *replied = true;
        self.answered.notify_all();
        Ok(())
    }

    fn is_replied(&self) -> bool {
        *self.replied.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the request's reply (normally already written: replies are synchronous in
    /// most filesystems; one sent later from another thread holds this queue until it comes),
    /// and readies the slot for the next request.
    fn take_reply(&self) {
        let mut replied = self.replied.lock().unwrap_or_else(PoisonError::into_inner);
        while !*replied {
            replied = self.answered.wait(replied).unwrap_or_else(PoisonError::into_inner);
        }
        *replied = false;
    }
}

fn copy_prefix(bufs: &[IoSlice<'_>], out: &mut [u8]) {
    let mut done = 0;
    for b in bufs {
        let n = (out.len() - done).min(b.len());
        out[done..done + n].copy_from_slice(&b[..n]);
        done += n;
        if done == out.len() {
            break;
        }
    }
}

/// An io_uring-capable connection's rings, made before the INIT reply and each handed to its
/// own thread by the session.
#[derive(Debug)]
pub(crate) struct Rings {
    pub(crate) threads: Vec<QueueThread>,
    pub(crate) queues: usize,
}

/// One thread's ring and entries, all for queue `qid`.
pub(crate) struct QueueThread {
    qid: u16,
    pin: bool,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    slots: Vec<Arc<RingSlot>>,
}

impl std::fmt::Debug for QueueThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueThread").field("qid", &self.qid).field("entries", &self.slots.len()).finish()
    }
}

impl Rings {
    /// Sets up `threads_per_queue` rings for each possible CPU, `entries` entries each, with
    /// payload buffers of `payload_len` (raised to the kernel's minimum).
    pub(crate) fn new(threads_per_queue: usize, entries: usize, payload_len: usize, pin: bool) -> io::Result<Rings> {
        let queues = possible_cpus()?;
        if queues > usize::from(u16::MAX) {
            return Err(io::Error::other(format!("{queues} CPUs: more queues than FUSE can name")));
        }
        let payload_len = payload_len.max(MIN_PAYLOAD).next_multiple_of(4096);
        let entries = entries.max(1);
        let mut threads = Vec::with_capacity(queues * threads_per_queue.max(1));
        for qid in 0..queues {
            for _ in 0..threads_per_queue.max(1) {
                // Each thread waits in its own ring: COOP_TASKRUN, since the kernel's work for an
                // entry (copying a request in) runs in the thread's context anyway.
                let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
                    .setup_coop_taskrun()
                    .setup_taskrun_flag()
                    .build((2 * entries).next_power_of_two() as u32)?;
                if threads.is_empty() {
                    let mut probe = io_uring::Probe::new();
                    ring.submitter().register_probe(&mut probe)?;
                    if !probe.is_supported(opcode::UringCmd80::CODE) {
                        return Err(io::Error::new(
                            io::ErrorKind::Unsupported,
                            "io_uring has no IORING_OP_URING_CMD",
                        ));
                    }
                }
                let slots =
                    (0..entries).map(|_| RingSlot::new(payload_len).map(Arc::new)).collect::<io::Result<_>>()?;
                threads.push(QueueThread { qid: qid as u16, pin, ring, slots });
            }
        }
        Ok(Rings { threads, queues })
    }
}

/// A 128-byte `IORING_OP_URING_CMD` for the FUSE device: `struct fuse_uring_cmd_req` is the
/// first 24 bytes of the command area.
fn fuse_cmd(fd: types::Fd, op: u32, qid: u16, commit_id: u64, addr: Option<u64>) -> squeue::Entry128 {
    let mut cmd = [0u8; 80];
    cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
    cmd[16..18].copy_from_slice(&qid.to_ne_bytes());
    opcode::UringCmd80::new(fd, op).cmd(cmd).addr(addr).build()
}

/// Sets `sqe->len`, which io-uring 0.7's `UringCmd80` has no setter for and REGISTER requires
/// (the number of iovecs, 2).
fn with_len(entry: squeue::Entry128, len: u32) -> squeue::Entry128 {
    // SAFETY: Entry128 is `#[repr(C)]` over the kernel's 128-byte SQE (size asserted above),
    // whose fields are plain integers and unions of them: every byte pattern is a valid value.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(entry) };
    // `len` is the u32 at byte 24 of `struct io_uring_sqe` (after opcode, flags, ioprio, fd,
    // off, addr).
    raw[24..28].copy_from_slice(&len.to_ne_bytes());
    // SAFETY: as above.
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
}

/// Runs this thread on CPU `cpu`: requests a process makes on that CPU come to this queue, so
/// the reply is handed over without waking another CPU. A failure (an offline CPU) only costs
/// that.
fn pin_to_cpu(cpu: usize) {
    if cpu >= libc::CPU_SETSIZE as usize {
        return;
    }
    // SAFETY: cpu_set_t is plain data and all-zero is the empty set; CPU_SET writes inside it for
    // cpu < CPU_SETSIZE (checked); sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        debug!("io_uring queue thread: not pinned to CPU {cpu}: {}", io::Error::last_os_error());
    }
}

/// A buffer aligned for `fuse_in_header`, where a request is rebuilt as /dev/fuse would give it.
struct RequestBuf(Vec<u64>);

impl RequestBuf {
    fn new(len: usize) -> RequestBuf {
        RequestBuf(vec![0; len.div_ceil(8)])
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.0.len() * 8;
        // SAFETY: a Vec<u64> of n elements is 8n initialised bytes; u8 has no alignment needs.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), len) }
    }
}

impl QueueThread {
    /// Registers this thread's entries and serves their requests until the connection ends.
    pub(crate) fn serve<FS: Filesystem>(
        self,
        se: SessionEventLoop<FS>,
        stats: Arc<TransportStats>,
    ) -> io::Result<()> {
        let QueueThread { qid, pin, mut ring, slots } = self;
        if pin {
            pin_to_cpu(usize::from(qid));
        }
        let fd = types::Fd(se.ch.as_fd().as_raw_fd());
        for (i, slot) in slots.iter().enumerate() {
            let iov = slot.buf.iov.as_ptr() as u64;
            let sqe = with_len(fuse_cmd(fd, CMD_REGISTER, qid, 0, Some(iov)), 2).user_data(i as u64);
            // SAFETY: the SQE points at this slot's iovecs and buffers, which live in `slots`,
            // dropped only after `ring` (below) or leaked.
            unsafe { ring.submission().push(&sqe) }.map_err(io::Error::other)?;
        }
        let payload_len = slots.first().map_or(0, |s| s.buf.payload_len);
        let mut req_buf = RequestBuf::new(IN_HEADER + OP_IN_SZ + payload_len);
        let mut served = vec![false; slots.len()];
        let mut live = slots.len();
        let mut clean = true;
        let mut done: Vec<(u64, i32)> = Vec::with_capacity(slots.len());
        let result = 'serve: loop {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => {
                    clean = false;
                    break Err(e);
                }
            }
            done.clear();
            done.extend(ring.completion().map(|c| (c.user_data(), c.result())));
            for &(idx, res) in &done {
                let idx = idx as usize;
                let Some(slot) = slots.get(idx) else { continue };
                if res < 0 {
                    live -= 1;
                    let err = io::Error::from_raw_os_error(-res);
                    if [libc::ENOTCONN, libc::ECONNABORTED, libc::ENODEV].contains(&-res) {
                        // The connection ended (unmount, abort): the kernel released the entry.
                        debug!("io_uring queue {qid}: connection ended ({err})");
                    } else if !served[idx] {
                        stats.register_failures.fetch_add(1, Ordering::Relaxed);
                        warn!("io_uring: registering an entry of queue {qid} failed: {err}");
                        clean = false;
                    } else {
                        warn!("io_uring queue {qid}: {err}");
                        clean = false;
                    }
                    continue;
                }
                served[idx] = true;
                stats.ring_requests.fetch_add(1, Ordering::Relaxed);
                let (commit_id, last) = handle(slot, &mut req_buf, &se);
                if last {
                    // DESTROY: answer it; the kernel tears the queues down after.
                    let sqe = fuse_cmd(fd, CMD_COMMIT_AND_FETCH, qid, commit_id, None).user_data(idx as u64);
                    // SAFETY: as for REGISTER above.
                    let _ = unsafe { ring.submission().push(&sqe) };
                    let _ = ring.submit();
                    break 'serve Ok(());
                }
                let sqe = fuse_cmd(fd, CMD_COMMIT_AND_FETCH, qid, commit_id, None).user_data(idx as u64);
                // SAFETY: as for REGISTER above.
                if let Err(e) = unsafe { ring.submission().push(&sqe) } {
                    clean = false;
                    break 'serve Err(io::Error::other(e));
                }
            }
            if live == 0 {
                break Ok(());
            }
        };
        // The ring goes first: once it is closed the kernel no longer writes to the entries.
        drop(ring);
        if !clean {
            // The kernel may still hold entries of a ring that ended abnormally: never hand their
            // memory back to the allocator.
            for slot in slots {
                std::mem::forget(slot);
            }
        }
        result
    }
}

/// Rebuilds the entry's request as /dev/fuse would have given it, dispatches it, and waits for
/// its reply. Returns the commit id and whether it was DESTROY.
fn handle<FS: Filesystem>(slot: &Arc<RingSlot>, req_buf: &mut RequestBuf, se: &SessionEventLoop<FS>) -> (u64, bool) {
    let header = slot.buf.header();
    let mut in_header = [0u8; IN_HEADER];
    // SAFETY: the kernel finished writing this entry before posting its completion and writes it
    // again only after the commit; the reads stay inside the header buffer.
    let (commit_id, payload_sz) = unsafe {
        std::ptr::copy_nonoverlapping((*header).in_out.as_ptr(), in_header.as_mut_ptr(), IN_HEADER);
        ((*header).ent.commit_id, (*header).ent.payload_sz as usize)
    };
    let len = u32::from_ne_bytes([in_header[0], in_header[1], in_header[2], in_header[3]]) as usize;
    let opcode = u32::from_ne_bytes([in_header[4], in_header[5], in_header[6], in_header[7]]);
    let unique = u64::from_ne_bytes(in_header[8..16].try_into().unwrap_or([0; 8]));
    let op_size = len.checked_sub(IN_HEADER + payload_sz);
    let mut last = false;
    match op_size {
        Some(op_size) if op_size <= OP_IN_SZ && payload_sz <= slot.buf.payload_len => {
            let buf = req_buf.bytes_mut();
            buf[..IN_HEADER].copy_from_slice(&in_header);
            // SAFETY: as above; op_size ≤ OP_IN_SZ and payload_sz ≤ payload_len bound the reads,
            // and `buf` holds IN_HEADER + OP_IN_SZ + payload_len bytes.
            unsafe {
                std::ptr::copy_nonoverlapping((*header).op_in.as_ptr(), buf[IN_HEADER..].as_mut_ptr(), op_size);
                std::ptr::copy_nonoverlapping(
                    slot.buf.payload(),
                    buf[IN_HEADER + op_size..].as_mut_ptr(),
                    payload_sz,
                );
            }
            match RequestWithSender::new(se.ch.ring_sender(slot.clone()), &buf[..len]) {
                Some(req) => {
                    if let Ok(Operation::Destroy(_)) = req.request.operation() {
                        req.reply::<crate::ReplyEmpty>().ok();
                        last = true;
                    } else {
                        req.dispatch(se);
                    }
                }
                None => reply_errno(slot, unique, libc::EIO),
            }
        }
        _ => {
            warn!("io_uring: malformed request (len {len}, payload {payload_sz}): answering EIO");
            reply_errno(slot, unique, libc::EIO);
        }
    }
    if NO_REPLY_OPCODES.contains(&opcode) && !slot.is_replied() {
        reply_errno(slot, unique, 0);
    }
    slot.take_reply();
    (commit_id, last)
}

fn reply_errno(slot: &RingSlot, unique: u64, errno: i32) {
    let out = ll::fuse_abi::fuse_out_header { len: OUT_HEADER as u32, error: -errno, unique };
    let bytes = zerocopy::IntoBytes::as_bytes(&out);
    if let Err(e) = slot.reply(&[IoSlice::new(bytes)]) {
        debug!("io_uring: {e}");
    }
}

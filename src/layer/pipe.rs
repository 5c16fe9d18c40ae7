//! A bounded in-process pipe of reusable byte chunks, so decompression and
//! hashing run on one core while extraction (mostly kernel time) runs on another.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, channel, sync_channel};

/// Creates a pipe holding at most `depth` chunks of `size` bytes in flight.
pub fn pipe(depth: usize, size: usize) -> (ChunkSender, ChunkReader) {
    let (tx, rx) = sync_channel(depth);
    let (back_tx, back_rx) = channel();
    let reader = ChunkReader { rx, back: back_tx, cur: Vec::new(), len: 0, off: 0 };
    (ChunkSender { tx, back: back_rx, size }, reader)
}

/// A full-size buffer and how much of it is data (buffers are never resized).
type Chunk = (Vec<u8>, usize);

pub struct ChunkSender {
    tx: SyncSender<Chunk>,
    back: Receiver<Vec<u8>>,
    size: usize,
}

/// What one [`ChunkSender::pump`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pump {
    Sent,
    /// The source is exhausted.
    Eof,
    /// The reading side has gone away (finished or failed).
    ReaderGone,
}

impl ChunkSender {
    /// Reads up to one chunk from `src` and sends it.
    pub fn pump(&mut self, src: &mut impl Read) -> io::Result<Pump> {
        let mut buf = match self.back.try_recv() {
            Ok(buf) => buf,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => vec![0; self.size],
        };
        let mut filled = 0;
        // Fill at least half a chunk so small decoder reads don't become many messages.
        while filled < self.size / 2 {
            match src.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(Pump::Eof);
        }
        match self.tx.send((buf, filled)) {
            Ok(()) => Ok(Pump::Sent),
            Err(_) => Ok(Pump::ReaderGone),
        }
    }
}

/// The reading end: a plain `Read` that ends when the sender is dropped.
pub struct ChunkReader {
    rx: Receiver<Chunk>,
    back: Sender<Vec<u8>>,
    cur: Vec<u8>,
    len: usize,
    off: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.off == self.len {
            let Ok((next, len)) = self.rx.recv() else { return Ok(0) };
            let used = std::mem::replace(&mut self.cur, next);
            if !used.is_empty() {
                let _ = self.back.send(used); // the sender may be gone: the buffer is just dropped
            }
            (self.len, self.off) = (len, 0);
        }
        let n = buf.len().min(self.len - self.off);
        buf[..n].copy_from_slice(&self.cur[self.off..self.off + n]);
        self.off += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_every_byte_in_order() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let (mut tx, mut rx) = pipe(2, 4096);
        let got = std::thread::scope(|s| {
            let h = s.spawn(move || {
                let mut v = Vec::new();
                rx.read_to_end(&mut v).unwrap();
                v
            });
            let mut src = &data[..];
            while tx.pump(&mut src).unwrap() == Pump::Sent {}
            drop(tx);
            h.join().unwrap()
        });
        assert_eq!(got, data);
    }

    #[test]
    fn reports_a_vanished_reader() {
        let (mut tx, rx) = pipe(1, 16);
        drop(rx);
        assert_eq!(tx.pump(&mut &[1u8; 64][..]).unwrap(), Pump::ReaderGone);
    }
}

//! Request bodies that can be sent again after a transient failure: nothing, bytes, or a byte range
//! of a file read with `pread` (so a retry restarts from the range's beginning).

use std::fs::File;
use std::io::{self, Read};

use crate::layer::range::FileRange;

#[derive(Clone, Copy)]
pub enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of `file` from `offset`; `on_read` sees each chunk's size (progress).
    File {
        file: &'a File,
        offset: u64,
        len: u64,
        on_read: Option<&'a (dyn Fn(u64) + Sync)>,
    },
}

impl<'a> Payload<'a> {
    pub fn len(&self) -> u64 {
        match self {
            Payload::Empty => 0,
            Payload::Bytes(b) => b.len() as u64,
            Payload::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fresh reader over the whole payload.
    pub fn reader(&self) -> Box<dyn Read + 'a> {
        match *self {
            Payload::Empty => Box::new(io::empty()),
            Payload::Bytes(b) => Box::new(b),
            Payload::File { file, offset, len, on_read } => {
                Box::new(RangeReader { range: FileRange::new(file, offset, len), on_read })
            }
        }
    }
}

/// A file range that reports each chunk it reads (upload progress).
struct RangeReader<'a> {
    range: FileRange<'a>,
    on_read: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.range.read(buf)?;
        if let Some(f) = self.on_read {
            f(n as u64);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ranges_reread_from_their_start() {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, b"0123456789").unwrap();
        let p = Payload::File { file: &f, offset: 2, len: 5, on_read: None };
        for _ in 0..2 {
            let mut s = String::new();
            p.reader().read_to_string(&mut s).unwrap();
            assert_eq!(s, "23456");
        }
        assert_eq!(p.len(), 5);
    }
}

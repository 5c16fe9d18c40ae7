//! A byte range of a file, read by position (`pread`): members of an indexed tar archive, and blob
//! ranges a registry upload sends again after a transient failure. Readers of one file never
//! disturb each other's position.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

pub struct FileRange<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl<'a> FileRange<'a> {
    /// `len` bytes of `file` from `offset`; a file that ends sooner is an `UnexpectedEof` error.
    pub fn new(file: &'a File, offset: u64, len: u64) -> FileRange<'a> {
        FileRange { file, pos: offset, end: offset.saturating_add(len) }
    }
}

impl Read for FileRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos).try_into().unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            let missing = self.end - self.pos;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file ends {missing} bytes early"),
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exactly_the_range_and_reports_a_short_file() {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, b"0123456789").unwrap();
        let mut s = String::new();
        FileRange::new(&f, 2, 5).read_to_string(&mut s).unwrap();
        assert_eq!(s, "23456");
        let err = FileRange::new(&f, 8, 5).read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(FileRange::new(&f, 3, u64::MAX).take(2).read_to_string(&mut String::new()).unwrap(), 2);
    }
}

//! A 100 MiB file streams through unpack and pack without being held in memory.
//! (Its own test binary, so the peak-RSS figure is this test's alone.)

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};
use strata::layer::{Compression, PackOptions, pack_dir, unpack};

const SIZE: u64 = 100 << 20;

/// Generates a tar holding one SIZE-byte file of a repeating pattern, on the fly.
struct GenTar {
    pos: u64,
    header: [u8; 512],
}

impl GenTar {
    fn new() -> Self {
        let mut h = tar::Header::new_ustar();
        h.set_path("big").unwrap();
        h.set_size(SIZE);
        h.set_mode(0o644);
        h.set_mtime(1);
        h.set_cksum();
        GenTar { pos: 0, header: *h.as_bytes() }
    }
    fn total() -> u64 {
        512 + SIZE + 1024
    }
}

fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

impl Read for GenTar {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(Self::total() - self.pos) as usize;
        for (k, b) in buf[..n].iter_mut().enumerate() {
            let p = self.pos + k as u64;
            *b = if p < 512 {
                self.header[p as usize]
            } else if p < 512 + SIZE {
                pattern(p - 512)
            } else {
                0
            };
        }
        self.pos += n as u64;
        Ok(n)
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn hundred_mib_file_streams() {
    let want: String = {
        let mut h = Sha256::new();
        let mut g = GenTar::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = g.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        hex::encode(h.finalize())
    };
    let before = peak_rss_kib();
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("d");
    std::fs::create_dir(&dest).unwrap();
    let zstd_stream = zstd::stream::read::Encoder::new(GenTar::new(), 1).unwrap();
    let u = unpack(zstd_stream, &dest, None).unwrap();
    assert_eq!(u.diff_id.hex(), want);
    assert_eq!(u.data_bytes, SIZE);
    let meta = std::fs::metadata(dest.join("big")).unwrap();
    assert_eq!(meta.len(), SIZE);

    let p = pack_dir(&dest, io::sink(), &PackOptions { compression: Compression::Gzip, clamp_mtime: None })
        .unwrap();
    assert_eq!(p.tar_size, 512 + SIZE + 1024);
    let grown_mib = (peak_rss_kib() - before) / 1024;
    assert!(grown_mib < 40, "peak RSS grew by {grown_mib} MiB for a 100 MiB file");
}

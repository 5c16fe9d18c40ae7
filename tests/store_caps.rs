//! Lengths an archive claims are capped before anything is read into memory (issue 11 item 2):
//! PAX `x`/`g` and GNU `L`/`K` bodies over 1 MiB (Go's archive/tar limit) are refused with an
//! error naming the entry and the limit, fast and with bounded memory, in layers and in the
//! outer archive of `load`.

mod common;

use std::io::{self, Read};
use std::time::Instant;

use common::strata::Strata;

fn header(name: &str, kind: u8, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// An extension header claiming `size` bytes, then `size` bytes of `b'a'` (never held whole).
struct Claim {
    head: Vec<u8>,
    size: u64,
    pos: u64,
}

impl Read for Claim {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let total = 512 + self.size;
        let n = (buf.len() as u64).min(total - self.pos) as usize;
        for (k, b) in buf[..n].iter_mut().enumerate() {
            let p = self.pos + k as u64;
            *b = if p < 512 { self.head[p as usize] } else { b'a' };
        }
        self.pos += n as u64;
        Ok(n)
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_huge_pax_body_is_refused_fast_with_bounded_memory() {
    // 512 MiB of body really present: a reader that reads it whole needs that much memory.
    const BODY: u64 = 512 << 20;
    let before = peak_rss_kib();
    let t = tempfile::tempdir().unwrap();
    let input = Claim { head: header("PaxHeaders.0/evil", b'x', BODY), size: BODY, pos: 0 };
    let gz = flate2::read::GzEncoder::new(input, flate2::Compression::fast());
    let started = Instant::now();
    let err = strata::layer::unpack(gz, t.path(), None).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("PaxHeaders.0/evil") && msg.contains("1 MiB"), "{msg}");
    assert!(msg.contains("PAX extended header"), "{msg}");
    assert!(!msg.contains("corrupt"), "not a corrupt stream: {msg}");
    let grew_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(grew_mib < 64, "unpacking grew the peak RSS by {grew_mib} MiB");
    assert!(started.elapsed().as_secs() < 5, "took {:?}", started.elapsed());
}

#[test]
fn import_names_the_entry_and_the_limit() {
    let s = Strata::new();
    for (kind, what) in [
        (b'x', "PAX extended header"),
        (b'g', "PAX global header"),
        (b'L', "GNU long name"),
        (b'K', "GNU long link name"),
    ] {
        // Claims 8 GiB, holds a little: the header alone must be refused.
        let mut tar = header("././@LongLink", kind, 8 << 30);
        tar.extend(vec![b'a'; 4096]);
        let path = s.path("evil.tar.gz");
        std::fs::write(&path, gzip(&tar)).unwrap();
        let err = s.fails(&["import", path.to_str().unwrap(), "evil:1"]);
        assert!(err.contains("@LongLink") && err.contains(what) && err.contains("8589934592"), "{err}");
        assert!(err.contains("1 MiB"), "{err}");
        assert!(!err.contains("corrupt"), "{err}");
    }
    // Just over the limit, with the body really there.
    let mut tar = header("././@LongLink", b'L', (1 << 20) + 1);
    tar.extend(vec![b'a'; (1 << 20) + 1 + 511]);
    tar.extend(header("short", b'0', 0));
    tar.extend(vec![0; 1024]);
    let path = s.path("long.tar");
    std::fs::write(&path, &tar).unwrap();
    let err = s.fails(&["import", path.to_str().unwrap(), "evil:1"]);
    assert!(err.contains("GNU long name") && err.contains("1 MiB"), "{err}");
    let images = s.ok(&["images", "-q"]);
    assert!(images.trim().is_empty(), "{images}");
}

#[test]
fn load_refuses_a_huge_extension_header_in_the_archive_itself() {
    let s = Strata::new();
    let mut tar = header("PaxHeaders.0/manifest.json", b'x', 8 << 30);
    tar.extend(vec![b'1'; 8192]);
    let path = s.path("evil-archive.tar");
    std::fs::write(&path, &tar).unwrap();
    let err = s.fails(&["load", "-i", path.to_str().unwrap()]);
    assert!(err.contains("evil-archive.tar") && err.contains("PaxHeaders.0/manifest.json"), "{err}");
    assert!(err.contains("1 MiB"), "{err}");
}

#[test]
fn an_oversized_manifest_json_is_refused_before_it_is_read() {
    let s = Strata::new();
    // 17 MiB of valid JSON: a list of one entry padded with spaces.
    let mut manifest = b"[{\"Config\": \"c.json\", \"RepoTags\": [], \"Layers\": []}".to_vec();
    manifest.resize(17 << 20, b' ');
    manifest.push(b']');
    let mut tar = header("manifest.json", b'0', manifest.len() as u64);
    tar.extend(&manifest);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    let path = s.path("big-manifest.tar");
    std::fs::write(&path, &tar).unwrap();
    let err = s.fails(&["load", "-i", path.to_str().unwrap()]);
    assert!(err.contains("manifest.json") && err.contains("16 MiB"), "{err}");
}

//! Test harness for the layer codec: hand-made tars (including hostile ones),
//! tree snapshots compared entry by entry, and small shell helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use sha2::{Digest as _, Sha256};

/// Everything we restore about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: String,
    pub link: String,
    pub rdev: (u64, u64),
    pub xattrs: Vec<(OsString, Vec<u8>)>,
    pub mtime: (i64, i64),
    /// Index of the first path sharing this inode (hard-link group), if nlink > 1.
    pub link_group: Option<String>,
}

pub struct SnapOpts {
    pub mtimes: bool,
    pub dir_mtimes: bool,
}

impl Default for SnapOpts {
    fn default() -> Self {
        SnapOpts { mtimes: true, dir_mtimes: true }
    }
}

/// Snapshot of everything under `root` (not root itself), keyed by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<String, Info> {
    snapshot_with(root, &SnapOpts::default())
}

pub fn snapshot_with(root: &Path, opts: &SnapOpts) -> BTreeMap<String, Info> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut paths = Vec::new();
    collect(root, "", &mut paths);
    paths.sort();
    for rel in paths {
        let p = root.join(&rel);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_file() {
            'f'
        } else if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            's'
        };
        let content =
            if kind == 'f' { hex::encode(Sha256::digest(std::fs::read(&p).unwrap())) } else { String::new() };
        let link = if kind == 'l' {
            std::fs::read_link(&p).unwrap().to_string_lossy().into_owned()
        } else {
            String::new()
        };
        let mut xattrs: Vec<(OsString, Vec<u8>)> = xattr::list(&p)
            .map(|names| {
                names.map(|n| (n.clone(), xattr::get(&p, &n).unwrap().unwrap_or_default())).collect()
            })
            .unwrap_or_default();
        xattrs.sort();
        let link_group = if kind != 'd' && m.nlink() > 1 {
            Some(inodes.entry((m.dev(), m.ino())).or_insert(rel.clone()).clone())
        } else {
            None
        };
        let want_mtime = opts.mtimes && (kind != 'd' || opts.dir_mtimes);
        out.insert(
            rel,
            Info {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                size: if kind == 'f' { m.len() } else { 0 },
                content,
                link,
                rdev: if kind == 'c' || kind == 'b' {
                    (nix::sys::stat::major(m.rdev()), nix::sys::stat::minor(m.rdev()))
                } else {
                    (0, 0)
                },
                xattrs,
                mtime: if want_mtime { (m.mtime(), m.mtime_nsec()) } else { (0, 0) },
                link_group,
            },
        );
    }
    out
}

fn collect(root: &Path, rel: &str, out: &mut Vec<String>) {
    let dir = if rel.is_empty() { root.to_path_buf() } else { root.join(rel) };
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let is_dir = e.file_type().unwrap().is_dir();
        out.push(child.clone());
        if is_dir {
            collect(root, &child, out);
        }
    }
}

/// Asserts two snapshots are equal, naming the first differing path.
pub fn assert_same(a: &BTreeMap<String, Info>, b: &BTreeMap<String, Info>) {
    let ka: Vec<_> = a.keys().collect();
    let kb: Vec<_> = b.keys().collect();
    assert_eq!(ka, kb, "different path sets");
    for (k, va) in a {
        assert_eq!(va, &b[k], "entry {k} differs");
    }
}

/// A tar built header by header, with no validation of names (for evil cases).
pub struct RawTar {
    pub bytes: Vec<u8>,
}

impl RawTar {
    pub fn new() -> Self {
        RawTar { bytes: Vec::new() }
    }

    fn header(name: &[u8], kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        assert!(name.len() <= 100, "use pax for long names");
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h
    }

    pub fn raw(mut self, mut h: tar::Header, data: &[u8]) -> Self {
        h.set_cksum();
        self.bytes.extend_from_slice(h.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(self, name: &str, data: &[u8]) -> Self {
        let h = Self::header(name.as_bytes(), tar::EntryType::Regular, data.len() as u64, 0o644);
        self.raw(h, data)
    }

    pub fn dir(self, name: &str) -> Self {
        let h = Self::header(name.as_bytes(), tar::EntryType::Directory, 0, 0o755);
        self.raw(h, &[])
    }

    pub fn link(self, kind: tar::EntryType, name: &str, target: &str) -> Self {
        let mut h = Self::header(name.as_bytes(), kind, 0, 0o777);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        self.raw(h, &[])
    }

    pub fn symlink(self, name: &str, target: &str) -> Self {
        self.link(tar::EntryType::Symlink, name, target)
    }

    pub fn hardlink(self, name: &str, target: &str) -> Self {
        self.link(tar::EntryType::Link, name, target)
    }

    /// A PAX extended header applying to the next entry.
    pub fn pax(self, records: &[(&str, &[u8])]) -> Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let base = k.len() + v.len() + 3;
            let mut len = base + 1;
            while base + len.to_string().len() != len {
                len = base + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let h = Self::header(b"PaxHeaders/x", tar::EntryType::XHeader, body.len() as u64, 0o644);
        self.raw(h, &body)
    }

    pub fn end(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        self.bytes
    }
}

impl Default for RawTar {
    fn default() -> Self {
        Self::new()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Runs a command, panicking with its stderr on failure; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sh(script: &str) -> String {
    run(Command::new("sh").arg("-ec").arg(script))
}

/// A scratch area with `dest/` to unpack into and `outside/` holding sentinels.
pub struct Arena {
    pub tmp: tempfile::TempDir,
}

impl Arena {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("dest")).unwrap();
        std::fs::create_dir(tmp.path().join("outside")).unwrap();
        std::fs::write(tmp.path().join("outside/file"), b"sentinel").unwrap();
        std::fs::create_dir(tmp.path().join("outside/dir")).unwrap();
        Arena { tmp }
    }
    pub fn dest(&self) -> std::path::PathBuf {
        self.tmp.path().join("dest")
    }
    pub fn outside(&self) -> std::path::PathBuf {
        self.tmp.path().join("outside")
    }
    /// Everything in the scratch area except dest/ (what must never change).
    pub fn outside_state(&self) -> BTreeMap<String, Info> {
        let mut s = snapshot_with(self.tmp.path(), &SnapOpts { mtimes: true, dir_mtimes: true });
        s.retain(|k, _| k != "dest" && !k.starts_with("dest/"));
        s
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

pub fn name_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

//! Writes tar entries in one fixed, deterministic format: the same tree gives the
//! same bytes, whoever writes it (commit, export, tests).
//!
//! Format: ustar headers, numeric owners only (no user/group names), no atime or
//! ctime; a PAX header only when needed (name or link > 100 bytes, ids or size
//! out of octal range, a sub-second or out-of-range mtime, xattrs as
//! `SCHILY.xattr.*` sorted by name). The archive ends with two zero blocks.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{override_stat, whiteout};

/// What kind of entry, with what it needs beyond the common attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File {
        size: u64,
    },
    Dir,
    Symlink {
        target: Vec<u8>,
    },
    /// A hard link to an earlier entry's path (relative, as written in the tar).
    HardLink {
        target: Vec<u8>,
    },
    Char {
        major: u64,
        minor: u64,
    },
    Block {
        major: u64,
        minor: u64,
    },
    Fifo,
}

/// One entry's metadata, independent of where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    pub kind: EntryKind,
    /// Permission bits incl. setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    /// Sorted by name when written.
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

impl EntryMeta {
    /// Reads metadata, link target and xattrs (minus strata's and overlayfs's
    /// private ones) of `path`, without following a final symlink.
    pub fn from_path(path: &Path) -> Result<EntryMeta> {
        let meta = std::fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
        let mut m = Self::from_metadata(&meta, path)?;
        m.xattrs = read_xattrs(path)?;
        m.take_override(path)?;
        Ok(m)
    }

    fn from_metadata(meta: &Metadata, path: &Path) -> Result<EntryMeta> {
        let ft = meta.file_type();
        let (major, minor) = (nix::sys::stat::major(meta.rdev()), nix::sys::stat::minor(meta.rdev()));
        let kind = if ft.is_file() {
            EntryKind::File { size: meta.len() }
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path).with_context(|| format!("readlink {}", path.display()))?;
            EntryKind::Symlink { target: target.into_os_string().into_vec() }
        } else if ft.is_char_device() {
            EntryKind::Char { major, minor }
        } else if ft.is_block_device() {
            EntryKind::Block { major, minor }
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            bail!("{}: sockets and other special files can't be stored in a layer", path.display());
        };
        Ok(EntryMeta {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid() as u64,
            gid: meta.gid() as u64,
            mtime_sec: meta.mtime(),
            mtime_nsec: meta.mtime_nsec() as u32,
            xattrs: Vec::new(),
        })
    }
}

impl EntryMeta {
    /// Takes what an override xattr among `self.xattrs` records (`layer::override_stat`) as
    /// the entry's owner, mode and type, and drops the xattr: it never goes into a tar. A
    /// directory stays a directory and nothing else becomes one (the walk follows the disk).
    fn take_override(&mut self, path: &Path) -> Result<()> {
        let mut found = None;
        for n in [override_stat::XATTR, override_stat::FUSE_OVERLAYFS_XATTR] {
            if let Some(i) = self.xattrs.iter().position(|(name, _)| name == n) {
                let (_, v) = self.xattrs.remove(i);
                found = found.or(Some(v));
            }
        }
        if let Some(v) = found {
            let o = override_stat::OverrideStat::parse(&v).with_context(|| format!("{}", path.display()))?;
            self.apply_override(&o);
        }
        Ok(())
    }

    /// Applies a recorded stat (see [`EntryMeta::take_override`]).
    pub fn apply_override(&mut self, o: &override_stat::OverrideStat) {
        use override_stat::FileType as T;
        self.uid = u64::from(o.uid);
        self.gid = u64::from(o.gid);
        self.mode = o.mode & 0o7777;
        let is_dir = self.kind == EntryKind::Dir;
        match (o.file_type, &self.kind) {
            (_, EntryKind::HardLink { .. }) | (None, _) => {}
            (Some(T::Char { major, minor }), _) if !is_dir => self.kind = EntryKind::Char { major, minor },
            (Some(T::Block { major, minor }), _) if !is_dir => self.kind = EntryKind::Block { major, minor },
            (Some(T::Pipe), _) if !is_dir => self.kind = EntryKind::Fifo,
            _ => {}
        }
    }
}

/// xattrs of `path` (not following symlinks), sorted, private ones left out.
pub fn read_xattrs(path: &Path) -> Result<Vec<(OsString, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing xattrs of {}", path.display())),
    };
    let mut out = Vec::new();
    for name in names.filter(|n| !whiteout::is_private_xattr(n)) {
        let ctx = || format!("reading xattr {} of {}", name.to_string_lossy(), path.display());
        if let Some(value) = xattr::get(path, &name).with_context(ctx)? {
            out.push((name, value));
        }
    }
    out.sort();
    Ok(out)
}

const BLOCK: usize = 512;
const MAX_OCTAL_7: u64 = 0o7777777;
const MAX_OCTAL_11: u64 = 0o77777777777;

/// Writes entries; remembers hard-linked inodes so later names become link entries.
pub struct TarEntryWriter<W: Write> {
    out: W,
    clamp_mtime: Option<i64>,
    links: HashMap<(u64, u64), Vec<u8>>,
    entries: u64,
    buf: Vec<u8>,
    /// The marker of the directory packed, when its files carry override xattrs: a symlink's
    /// owner comes from it (`override_stat::Marker::symlink_owner`).
    marker: Option<override_stat::Marker>,
}

impl<W: Write> TarEntryWriter<W> {
    /// `clamp_mtime` (SOURCE_DATE_EPOCH-style): later mtimes are written as it.
    pub fn new(out: W, clamp_mtime: Option<i64>) -> Self {
        TarEntryWriter {
            out,
            clamp_mtime,
            links: HashMap::new(),
            entries: 0,
            buf: vec![0; 1 << 20],
            marker: None,
        }
    }

    /// Packs the files of a layer marked with `marker` (see [`TarEntryWriter::marker`]).
    pub fn set_marker(&mut self, marker: Option<override_stat::Marker>) {
        self.marker = marker;
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Appends the file at `source` under the tar name `name` (relative, no
    /// trailing slash). A second name of an inode already written becomes a
    /// hard link to the first.
    pub fn append_path(&mut self, name: &[u8], source: &Path) -> Result<()> {
        let meta = std::fs::symlink_metadata(source).with_context(|| format!("stat {}", source.display()))?;
        if !meta.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                let mut m = EntryMeta::from_metadata(&meta, source)?;
                m.kind = EntryKind::HardLink { target: first.clone() };
                m.xattrs = Vec::new();
                if let Some(o) =
                    override_stat::read_any(source).with_context(|| format!("{}", source.display()))?
                {
                    m.apply_override(&o);
                }
                return self.append(name, &m, None);
            }
            self.links.insert(key, name.to_vec());
        }
        let mut m = EntryMeta::from_metadata(&meta, source)?;
        m.xattrs = read_xattrs(source)?;
        m.take_override(source)?;
        if let (EntryKind::Symlink { .. }, Some(marker)) = (&m.kind, &self.marker) {
            if let Some((uid, gid)) = marker.link_owner(meta.uid(), meta.gid()) {
                (m.uid, m.gid) = (u64::from(uid), u64::from(gid));
            }
        }
        if let EntryKind::File { .. } = m.kind {
            let mut f = File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(source)
                .with_context(|| format!("opening {}", source.display()))?;
            return self.append(name, &m, Some(&mut f));
        }
        self.append(name, &m, None)
    }

    /// Appends one entry; `data` must yield the file's `size` bytes.
    pub fn append(&mut self, name: &[u8], meta: &EntryMeta, data: Option<&mut dyn Read>) -> Result<()> {
        let shown = || String::from_utf8_lossy(name).into_owned();
        self.write_entry(name, meta, data).with_context(|| format!("writing tar entry {}", shown()))
    }

    fn write_entry(&mut self, name: &[u8], meta: &EntryMeta, data: Option<&mut dyn Read>) -> Result<()> {
        if name.is_empty() || name.starts_with(b"/") || name.contains(&0) {
            bail!("invalid entry name");
        }
        let mut path = name.to_vec();
        if meta.kind == EntryKind::Dir {
            path.push(b'/');
        }
        let (mut sec, mut nsec) = (meta.mtime_sec, meta.mtime_nsec);
        if let Some(clamp) = self.clamp_mtime.filter(|&c| sec > c || (sec == c && nsec > 0)) {
            (sec, nsec) = (clamp, 0);
        }
        let (typeflag, link, size, dev) = match &meta.kind {
            EntryKind::File { size } => (b'0', &[][..], *size, (0, 0)),
            EntryKind::Dir => (b'5', &[][..], 0, (0, 0)),
            EntryKind::Symlink { target } => (b'2', &target[..], 0, (0, 0)),
            EntryKind::HardLink { target } => (b'1', &target[..], 0, (0, 0)),
            EntryKind::Char { major, minor } => (b'3', &[][..], 0, (*major, *minor)),
            EntryKind::Block { major, minor } => (b'4', &[][..], 0, (*major, *minor)),
            EntryKind::Fifo => (b'6', &[][..], 0, (0, 0)),
        };
        if dev.0 > MAX_OCTAL_7 || dev.1 > MAX_OCTAL_7 {
            bail!("device number {}:{} too large for a tar header", dev.0, dev.1);
        }

        // PAX records, in a fixed order; xattrs sorted.
        let mut pax = Vec::new();
        if path.len() > 100 {
            pax_record(&mut pax, b"path", &path);
        }
        if link.len() > 100 {
            pax_record(&mut pax, b"linkpath", link);
        }
        if size > MAX_OCTAL_11 {
            pax_record(&mut pax, b"size", size.to_string().as_bytes());
        }
        if meta.uid > MAX_OCTAL_7 {
            pax_record(&mut pax, b"uid", meta.uid.to_string().as_bytes());
        }
        if meta.gid > MAX_OCTAL_7 {
            pax_record(&mut pax, b"gid", meta.gid.to_string().as_bytes());
        }
        if nsec != 0 || sec < 0 || sec as u64 > MAX_OCTAL_11 {
            pax_record(&mut pax, b"mtime", format_pax_time(sec, nsec).as_bytes());
        }
        let mut xattrs: Vec<&(OsString, Vec<u8>)> = meta.xattrs.iter().collect();
        xattrs.sort();
        for (k, v) in xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k.as_bytes());
            pax_record(&mut pax, &key, v);
        }
        if !pax.is_empty() {
            let pax_name = pax_header_name(name);
            let h = Header {
                name: &pax_name,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: pax.len() as u64,
                mtime: 0,
                typeflag: b'x',
                link: &[],
                dev: (0, 0),
            };
            self.out.write_all(&h.encode())?;
            self.write_padded(&pax)?;
        }
        let clip = |v: u64, max: u64| v.min(max);
        let h = Header {
            name: &path[..path.len().min(100)],
            mode: meta.mode & 0o7777,
            uid: clip(meta.uid, MAX_OCTAL_7),
            gid: clip(meta.gid, MAX_OCTAL_7),
            size: clip(size, MAX_OCTAL_11),
            mtime: sec.clamp(0, MAX_OCTAL_11 as i64) as u64,
            typeflag,
            link: &link[..link.len().min(100)],
            dev,
        };
        self.out.write_all(&h.encode())?;
        if let EntryKind::File { size } = meta.kind {
            let data = data.context("no content given for a regular file")?;
            self.copy_data(data, size)?;
        }
        self.entries += 1;
        Ok(())
    }

    fn copy_data(&mut self, data: &mut dyn Read, size: u64) -> Result<()> {
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = data.read(&mut self.buf[..want]).context("reading file content")?;
            if n == 0 {
                bail!("file shrank while being packed ({left} of {size} bytes missing)");
            }
            self.out.write_all(&self.buf[..n])?;
            left -= n as u64;
        }
        let pad = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
        self.out.write_all(&[0u8; BLOCK][..pad])?;
        Ok(())
    }

    fn write_padded(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes)?;
        let pad = (BLOCK - bytes.len() % BLOCK) % BLOCK;
        self.out.write_all(&[0u8; BLOCK][..pad])?;
        Ok(())
    }

    /// Writes the end-of-archive marker (two zero blocks) and returns the writer.
    pub fn finish(mut self) -> Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Go's convention: `DIR/PaxHeaders.0/BASE`, cut to fit the name field.
fn pax_header_name(name: &[u8]) -> Vec<u8> {
    let (dir, base) = super::tarpath::split_parent(name);
    let mut n = Vec::new();
    if !dir.is_empty() {
        n.extend_from_slice(dir);
        n.push(b'/');
    }
    n.extend_from_slice(b"PaxHeaders.0/");
    n.extend_from_slice(base);
    n.truncate(100);
    n
}

/// `LEN KEY=VALUE\n`, where LEN counts the whole record including itself.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // space, '=', '\n'
    let mut len = body + 1;
    while body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// `SECONDS[.NANOS]` with trailing zeros trimmed; negative times as `-S.F`.
fn format_pax_time(sec: i64, nsec: u32) -> String {
    let (neg, s, n) = if sec < 0 && nsec > 0 {
        (true, (-(sec + 1)) as u64, 1_000_000_000 - nsec)
    } else {
        (sec < 0, sec.unsigned_abs(), nsec)
    };
    let sign = if neg { "-" } else { "" };
    if n == 0 {
        return format!("{sign}{s}");
    }
    let frac = format!("{n:09}");
    format!("{sign}{s}.{}", frac.trim_end_matches('0'))
}

struct Header<'a> {
    name: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    link: &'a [u8],
    dev: (u64, u64),
}

impl Header<'_> {
    fn encode(&self) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..self.name.len()].copy_from_slice(self.name);
        octal(&mut b[100..108], self.mode as u64);
        octal(&mut b[108..116], self.uid);
        octal(&mut b[116..124], self.gid);
        octal(&mut b[124..136], self.size);
        octal(&mut b[136..148], self.mtime);
        b[156] = self.typeflag;
        b[157..157 + self.link.len()].copy_from_slice(self.link);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        octal(&mut b[329..337], self.dev.0);
        octal(&mut b[337..345], self.dev.1);
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&x| x as u32).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        b
    }
}

/// Zero-padded octal filling the field but its last byte (a NUL).
fn octal(field: &mut [u8], v: u64) {
    let w = field.len() - 1;
    field[..w].copy_from_slice(format!("{v:0w$o}").as_bytes());
    field[w] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        let mut v = Vec::new();
        pax_record(&mut v, b"path", b"x");
        assert_eq!(v, b"9 path=x\n");
        let mut v = Vec::new();
        pax_record(&mut v, b"k", &[b'a'; 95]);
        assert_eq!(v.len(), 102);
        assert!(v.starts_with(b"102 k="));
    }

    #[test]
    fn pax_times_format() {
        assert_eq!(format_pax_time(5, 0), "5");
        assert_eq!(format_pax_time(5, 500_000_000), "5.5");
        assert_eq!(format_pax_time(-2, 750_000_000), "-1.25");
        assert_eq!(format_pax_time(-3, 0), "-3");
    }

    #[test]
    fn headers_parse_back_with_the_tar_crate() {
        let mut w = TarEntryWriter::new(Vec::new(), None);
        let long = vec![b'n'; 150];
        let meta = EntryMeta {
            kind: EntryKind::File { size: 3 },
            mode: 0o4755,
            uid: 3_000_000,
            gid: 7,
            mtime_sec: 1_700_000_000,
            mtime_nsec: 250_000_000,
            xattrs: vec![("user.b".into(), b"2".to_vec()), ("user.a".into(), b"1".to_vec())],
        };
        w.append(&long, &meta, Some(&mut &b"abc"[..])).unwrap();
        let out = w.finish().unwrap();
        let mut ar = tar::Archive::new(&out[..]);
        let mut entries = ar.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(&*e.path_bytes(), &long[..]);
        assert_eq!(e.header().mode().unwrap(), 0o4755);
        assert_eq!(e.header().uid().unwrap(), 3_000_000);
        let keys: Vec<String> =
            e.pax_extensions().unwrap().unwrap().map(|x| x.unwrap().key().unwrap().to_string()).collect();
        assert_eq!(keys, ["path", "uid", "mtime", "SCHILY.xattr.user.a", "SCHILY.xattr.user.b"]);
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "abc");
        drop(e);
        assert!(entries.next().is_none());
    }
}

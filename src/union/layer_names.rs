//! A layer's record of its own directories, written once when the layer is stored
//! (`layers/<id>/names`, beside `fs/`), so that a directory merged from many layers is indexed
//! without reading its copy in each of them.
//!
//! For every directory of the layer tree: its [`DirMarks`] (opaque, implicit) and its names,
//! each a directory, something else, or a whiteout (of either format): exactly what
//! [`scan_fresh_dir_fd`] and [`dir_marks`] read from the tree, since the record is made by
//! walking the unpacked tree with them, never from the tar. A store layer never changes once
//! unpacked, so the record stays true; it is tied to the tree it was made from by the tree
//! root's inode number and ctime (a record beside another tree, or a tree copied elsewhere, is
//! not used), and one that is missing (a layer stored by an older version), unreadable, too big
//! or malformed is ignored: the layer is read from disk as before. A writable upper never has one.
//!
//! The format (integers little-endian): [`MAGIC`]; the root's inode number (u64), ctime seconds
//! and nanoseconds (i64, i64); the directory count (u32); per directory, sorted by path bytes:
//! its path relative to the root (u32 length + bytes, "" for the root), its marks (u8: 1 opaque,
//! 2 implicit), its name count (u32) and per name, sorted by name bytes (a name held and whited
//! out in one layer, `N` and `.wh.N`, twice: the whiteout after): its file type (u8,
//! `S_IFMT >> 12`, 0 for a whiteout), its inode number in the layer (u64, 0 for a whiteout) and
//! the name (u16 length + bytes).

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{FileStat, fstat};

use super::layer::{DirMarks, SafeFd, dir_marks};
use super::listing::{LayerName, scan_fresh_dir_fd};

/// The record's name in a store layer's directory, beside the tree `fs/`.
pub const FILE_NAME: &str = "names";
/// The tree directory a record is looked for beside.
const TREE_DIR: &str = "fs";
/// First bytes of a record (the format's version is in it).
pub const MAGIC: &[u8; 16] = b"strata-names-v1\n";
/// Records larger than this are not read (the layer is read from disk instead).
pub const MAX_BYTES: u64 = 64 << 20;

const OPAQUE: u8 = 1;
const IMPLICIT: u8 = 2;
/// Bytes a name takes besides its own: file type, inode number, length.
const NAME_HEAD: usize = 1 + 8 + 2;

/// What a record says about one name of a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Other,
    /// Hides the name in the layers below (a `.wh.` file or an overlay 0/0 device).
    Whiteout,
}

/// One name of a recorded directory.
#[derive(Clone, Copy, Debug)]
pub struct RecordedName<'a> {
    pub name: &'a OsStr,
    /// File type bits (`libc::S_IFDIR`, …); 0 for a whiteout.
    pub file_type: u32,
    /// Its inode number in the layer (0 for a whiteout).
    pub ino: u64,
}

impl RecordedName<'_> {
    pub fn kind(&self) -> Kind {
        match self.file_type {
            0 => Kind::Whiteout,
            libc::S_IFDIR => Kind::Dir,
            _ => Kind::Other,
        }
    }
}

fn type_byte(file_type: u32) -> u8 {
    (file_type >> 12) as u8
}

fn file_type_of(b: u8) -> Option<u32> {
    let t = u32::from(b) << 12;
    match t {
        0
        | libc::S_IFIFO
        | libc::S_IFCHR
        | libc::S_IFDIR
        | libc::S_IFBLK
        | libc::S_IFREG
        | libc::S_IFLNK
        | libc::S_IFSOCK => Some(t),
        _ => None,
    }
}

/// The order of names in a directory: by bytes, a name before its whiteout.
fn order(name: &[u8], file_type: u32) -> (&[u8], bool) {
    (name, file_type == 0)
}

/// A layer's record, read and checked whole.
#[derive(Debug)]
pub struct LayerNames {
    bytes: Vec<u8>,
    /// Per directory, sorted by path: where its path is in `bytes`, and its names in `names`.
    dirs: Vec<DirSlot>,
    /// Where each name starts in `bytes`, directory after directory (each in [`order`]).
    names: Vec<u32>,
}

#[derive(Debug)]
struct DirSlot {
    path: (u32, u32),
    marks: DirMarks,
    /// Its names' range in `names`.
    names: (u32, u32),
}

/// The part of a tree root's stat a record is tied to.
fn fingerprint(st: &FileStat) -> (u64, i64, i64) {
    (st.st_ino, st.st_ctime, st.st_ctime_nsec)
}

/// The record belonging beside the layer tree `root` (a directory named `fs`), if it could have one.
pub fn path_for(root: &Path) -> Option<PathBuf> {
    (root.file_name() == Some(OsStr::new(TREE_DIR))).then(|| root.with_file_name(FILE_NAME))
}

impl LayerNames {
    /// Reads the record of the tree `root` (open, with `root_stat` its fstat) if there is a
    /// usable one: `None` when there is none, or it is for another tree, too big or malformed.
    pub fn load(root: &Path, root_stat: &FileStat) -> Option<LayerNames> {
        let path = path_for(root)?;
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::debug!("layer record {}: {e}", path.display());
                return None;
            }
        };
        let mut bytes = Vec::new();
        if let Err(e) = file.take(MAX_BYTES + 1).read_to_end(&mut bytes) {
            tracing::debug!("layer record {}: {e}", path.display());
            return None;
        }
        match LayerNames::parse(bytes, fingerprint(root_stat)) {
            Ok(names) => Some(names),
            Err(why) => {
                tracing::debug!("layer record {} not used: {why}", path.display());
                None
            }
        }
    }

    /// Checks `bytes` whole (every length in bounds, directories and names in order, names and
    /// types valid) for the tree with `print`.
    fn parse(bytes: Vec<u8>, print: (u64, i64, i64)) -> Result<LayerNames, &'static str> {
        if bytes.len() as u64 > MAX_BYTES {
            return Err("too big");
        }
        let mut r = Reader { bytes: &bytes, at: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err("not a record of this version");
        }
        let ino = r.u64()?;
        let (sec, nsec) = (r.u64()? as i64, r.u64()? as i64);
        if (ino, sec, nsec) != print {
            return Err("made for another tree (inode or ctime differ)");
        }
        let count = r.u32()? as usize;
        let mut dirs: Vec<DirSlot> = Vec::with_capacity(count.min(bytes.len() / 9));
        let mut names: Vec<u32> = Vec::new();
        for _ in 0..count {
            let len = r.u32()? as usize;
            let start = r.at;
            let path = r.take(len)?;
            if path.first() == Some(&b'/') || path.last() == Some(&b'/') || path.contains(&0) {
                return Err("a directory path is not relative");
            }
            if let Some(prev) = dirs.last() {
                if &bytes[prev.path.0 as usize..prev.path.1 as usize] >= path {
                    return Err("directories out of order");
                }
            }
            let m = r.u8()?;
            if m & !(OPAQUE | IMPLICIT) != 0 {
                return Err("unknown directory marks");
            }
            let marks = DirMarks { opaque: m & OPAQUE != 0, implicit: m & IMPLICIT != 0 };
            let n = r.u32()? as usize;
            let first = names.len();
            let mut prev: Option<(&[u8], bool)> = None;
            for _ in 0..n {
                let at = r.at;
                let t = file_type_of(r.u8()?).ok_or("unknown file type")?;
                r.u64()?;
                let len = r.u16()? as usize;
                let name = r.take(len)?;
                if name.is_empty()
                    || name == b"."
                    || name == b".."
                    || name.iter().any(|&b| b == b'/' || b == 0)
                {
                    return Err("an invalid name");
                }
                if prev.is_some_and(|p| p >= order(name, t)) {
                    return Err("names out of order");
                }
                prev = Some(order(name, t));
                names.push(u32::try_from(at).map_err(|_| "too big")?);
            }
            dirs.push(DirSlot {
                path: (start as u32, (start + len) as u32),
                marks,
                names: (first as u32, names.len() as u32),
            });
        }
        if r.at != bytes.len() {
            return Err("trailing bytes");
        }
        Ok(LayerNames { bytes, dirs, names })
    }

    /// The directory `dir` (relative to the layer root) as the record has it: its marks and
    /// names, or `None` when the layer has no such directory.
    pub fn dir(&self, dir: &Path) -> Option<RecordedDir<'_>> {
        let want = dir.as_os_str().as_bytes();
        let i = self
            .dirs
            .binary_search_by(|d| self.bytes[d.path.0 as usize..d.path.1 as usize].cmp(want))
            .ok()?;
        let d = &self.dirs[i];
        let names = &self.names[d.names.0 as usize..d.names.1 as usize];
        Some(RecordedDir { bytes: &self.bytes, marks: d.marks, names })
    }

    /// How many directories it records.
    pub fn dirs(&self) -> usize {
        self.dirs.len()
    }
}

/// One directory of a record.
#[derive(Clone, Copy)]
pub struct RecordedDir<'a> {
    bytes: &'a [u8],
    /// The marks of this copy of the directory.
    pub marks: DirMarks,
    /// Where its names start in `bytes`, in [`order`].
    names: &'a [u32],
}

impl<'a> RecordedDir<'a> {
    /// The name at `at` in the record (checked whole at load: every length in bounds, every
    /// type known).
    fn at(&self, at: u32) -> RecordedName<'a> {
        let (at, b) = (at as usize, self.bytes);
        let file_type = file_type_of(b[at]).unwrap_or(0);
        let mut ino = [0u8; 8];
        ino.copy_from_slice(&b[at + 1..at + 9]);
        let len = u16::from_le_bytes([b[at + 9], b[at + 10]]) as usize;
        let name = OsStr::from_bytes(&b[at + NAME_HEAD..at + NAME_HEAD + len]);
        RecordedName { name, file_type, ino: u64::from_le_bytes(ino) }
    }

    /// Its names (whiteouts included), in order.
    pub fn names(self) -> impl Iterator<Item = RecordedName<'a>> {
        self.names.iter().map(move |&at| self.at(at))
    }

    /// How many names it holds, whiteouts included.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// What this copy of the directory holds at `name`: the name itself (not a whiteout), and
    /// whether it whites the name out for the layers below (a `.wh.` file or a 0/0 device).
    pub fn probe(&self, name: &OsStr) -> (Option<RecordedName<'a>>, bool) {
        let want = name.as_bytes();
        let i = self.names.partition_point(|&at| self.at(at).name.as_bytes() < want);
        let mut held = None;
        let mut whiteout = false;
        for &at in self.names[i..].iter().take(2) {
            let n = self.at(at);
            if n.name.as_bytes() != want {
                break;
            }
            match n.kind() {
                Kind::Whiteout => whiteout = true,
                _ => held = Some(n),
            }
        }
        (held, whiteout)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("truncated")?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().map_err(|_| "truncated")?))
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "truncated")?))
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "truncated")?))
    }
}

/// Walks the layer tree `root` (not changing under the walk: a staged layer) and writes its
/// record to `dest`. Returns how many directories it records.
pub fn write(root: &Path, dest: &Path) -> io::Result<usize> {
    let (bytes, dirs) = encode(root)?;
    std::fs::write(dest, bytes)?;
    Ok(dirs)
}

/// The record of the layer tree `root` and how many directories it holds: each directory read
/// with [`scan_fresh_dir_fd`] and [`dir_marks`], the very calls a lookup reads a layer's copy
/// of a directory with. Names longer than a u16 can't exist (NAME_MAX is 255).
pub fn encode(root: &Path) -> io::Result<(Vec<u8>, usize)> {
    let root_fd = SafeFd::root(root)?;
    let print = fingerprint(&fstat(root_fd.as_fd())?);
    let mut dirs: Vec<(Vec<u8>, u8, Vec<u8>, u32)> = Vec::new();
    let mut todo: Vec<(PathBuf, SafeFd)> = vec![(PathBuf::new(), root_fd.reopen()?)];
    while let Some((rel, fd)) = todo.pop() {
        let (mut listed, mut marker) = (Vec::new(), false);
        scan_fresh_dir_fd(&fd, 0, |n| {
            listed.push(match n {
                LayerName::Entry(le) => (le.name, le.kind, le.ino),
                LayerName::Whiteout(name) => (name, 0, 0),
                LayerName::OpaqueMarker => {
                    marker = true;
                    return true;
                }
            });
            true
        })?;
        listed.sort_by(|a, b| order(a.0.as_bytes(), a.1).cmp(&order(b.0.as_bytes(), b.1)));
        listed.dedup_by(|a, b| order(a.0.as_bytes(), a.1) == order(b.0.as_bytes(), b.1));
        let mut names = Vec::new();
        for (name, t, ino) in &listed {
            names.push(type_byte(*t));
            names.extend_from_slice(&ino.to_le_bytes());
            names.extend_from_slice(&(name.len() as u16).to_le_bytes());
            names.extend_from_slice(name.as_bytes());
        }
        let m = dir_marks(fd.as_fd(), marker);
        let marks = (u8::from(m.opaque) * OPAQUE) | (u8::from(m.implicit) * IMPLICIT);
        for (name, t, _) in &listed {
            if *t == libc::S_IFDIR {
                todo.push((rel.join(name), fd.dir_beneath(Path::new(name))?));
            }
        }
        dirs.push((rel.into_os_string().into_vec(), marks, names, listed.len() as u32));
    }
    dirs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out =
        Vec::with_capacity(MAGIC.len() + 28 + dirs.iter().map(|d| d.0.len() + d.2.len() + 9).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&print.0.to_le_bytes());
    out.extend_from_slice(&print.1.to_le_bytes());
    out.extend_from_slice(&print.2.to_le_bytes());
    out.extend_from_slice(&(dirs.len() as u32).to_le_bytes());
    for (path, marks, names, count) in &dirs {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path);
        out.push(*marks);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(names);
    }
    Ok((out, dirs.len()))
}

/// Whether the record beside the store layer tree `root` is missing (`None`), or is (true) or
/// is not (false) the one its tree gives now: for `strata system check`.
pub fn verify_beside(root: &Path) -> io::Result<Option<bool>> {
    let Some(path) = path_for(root) else { return Ok(None) };
    let stored = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(encode(root)?.0 == stored))
}

/// [`write`] for a store layer's tree `root` (named `fs`): the record goes to [`path_for`] it.
pub fn write_beside(root: &Path) -> io::Result<usize> {
    let dest = path_for(root).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a layer tree named fs", root.display()),
        )
    })?;
    write(root, &dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("fs");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/f"), "").unwrap();
        std::fs::write(root.join("a/.wh.gone"), "").unwrap();
        std::fs::write(root.join("a/gone"), "").unwrap(); // held and whited out in one layer
        std::fs::write(root.join("a/b/.wh..wh..opq"), "").unwrap();
        std::fs::write(root.join("top"), "").unwrap();
        (t, root)
    }

    #[test]
    fn a_record_reads_back_what_the_tree_holds() {
        let (_t, root) = sample();
        assert_eq!(write_beside(&root).unwrap(), 3);
        let st = fstat(SafeFd::root(&root).unwrap().as_fd()).unwrap();
        let rec = LayerNames::load(&root, &st).expect("a usable record");
        let a = rec.dir(Path::new("a")).unwrap();
        let got: Vec<_> = a.names().map(|n| (n.kind(), n.name.to_owned())).collect();
        assert_eq!(
            got,
            [
                (Kind::Dir, "b".into()),
                (Kind::Other, "f".into()),
                (Kind::Other, "gone".into()),
                (Kind::Whiteout, "gone".into())
            ]
        );
        let ino = std::fs::symlink_metadata(root.join("a/f")).unwrap();
        let (held, whiteout) = a.probe(OsStr::new("f"));
        assert_eq!((held.map(|n| n.ino), whiteout), (Some(std::os::unix::fs::MetadataExt::ino(&ino)), false));
        assert!(matches!(a.probe(OsStr::new("gone")), (Some(_), true)));
        assert!(matches!(a.probe(OsStr::new("nothing")), (None, false)));
        assert!(rec.dir(Path::new("a/b")).unwrap().marks.opaque);
        assert!(rec.dir(Path::new("a/b")).unwrap().is_empty());
        assert!(!rec.dir(Path::new("")).unwrap().marks.opaque);
        assert!(rec.dir(Path::new("top")).is_none() && rec.dir(Path::new("nothing")).is_none());
    }

    #[test]
    fn a_record_of_another_tree_or_a_damaged_one_is_not_used() {
        let (_t, root) = sample();
        write_beside(&root).unwrap();
        let rec = path_for(&root).unwrap();
        let good = std::fs::read(&rec).unwrap();
        let st = || fstat(SafeFd::root(&root).unwrap().as_fd()).unwrap();
        // Every truncation, and a flipped byte anywhere in the header, is refused.
        for cut in 0..good.len() {
            assert!(LayerNames::parse(good[..cut].to_vec(), fingerprint(&st())).is_err(), "cut at {cut}");
        }
        for at in 0..MAGIC.len() + 28 {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert!(LayerNames::parse(bad, fingerprint(&st())).is_err(), "byte {at} flipped");
        }
        // A change of the tree's root moves its ctime: the record is for another tree then.
        std::fs::write(root.join("new"), "").unwrap();
        assert!(LayerNames::load(&root, &st()).is_none());
    }
}

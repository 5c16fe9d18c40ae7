//! Directory descriptors that can only point inside their layer.
//!
//! A [`SafeFd`] is made in two ways only: [`SafeFd::root`] opens a layer's root (the trust
//! anchor, a path the caller chose), and [`SafeFd::dir_beneath`] opens a directory *below*
//! another `SafeFd` with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`.
//! So every `SafeFd` of a layer names a directory inside that layer, whatever renames or
//! symlinks a user makes: "every access stays inside its layer" is a property of the type
//! (as fuse-overlayfs 2.0's `SafeFd`). Files are opened the same way ([`SafeFd::open_beneath`]).
//!
//! Paths longer than PATH_MAX are walked in pieces, each piece resolved beneath the directory
//! the previous one reached, so a tree of any depth stays reachable.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

/// The longest piece of a relative path given to one `openat2` (below PATH_MAX = 4096).
const PIECE: usize = 3072;

/// A directory descriptor known to lie inside its layer (see the module docs).
#[derive(Debug)]
pub struct SafeFd(OwnedFd);

fn how(flags: OFlag, mode: Mode) -> OpenHow {
    OpenHow::new().flags(flags | OFlag::O_CLOEXEC).mode(mode).resolve(
        ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
}

/// Splits `rel` into pieces of at most [`PIECE`] bytes at `/` boundaries (a single name is
/// at most 255 bytes, so every piece is non-empty).
fn pieces(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = rel;
    std::iter::from_fn(move || {
        while rest.first() == Some(&b'/') {
            rest = &rest[1..];
        }
        if rest.is_empty() {
            return None;
        }
        let end = if rest.len() <= PIECE {
            rest.len()
        } else {
            rest[..=PIECE].iter().rposition(|&b| b == b'/').filter(|&i| i > 0).unwrap_or(PIECE)
        };
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

impl SafeFd {
    /// Opens the layer root `path` (a directory, read-only): the anchor every other `SafeFd` of
    /// the layer is reached from.
    pub fn root(path: &Path) -> io::Result<SafeFd> {
        let fd =
            nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", path.display())))?;
        Ok(SafeFd(fd))
    }

    /// Opens `rel` below this directory ("" or "." = this directory again) with `flags`, never
    /// leaving it and never following a symlink; any length.
    pub fn open_beneath(&self, rel: &Path, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
        let bytes = rel.as_os_str().as_bytes();
        let mut parts = pieces(bytes).peekable();
        if parts.peek().is_none() {
            return Ok(openat2(&self.0, ".", how(flags, mode))?);
        }
        let mut cur: Option<OwnedFd> = None;
        while let Some(p) = parts.next() {
            let at: BorrowedFd<'_> = cur.as_ref().map(|f| f.as_fd()).unwrap_or(self.0.as_fd());
            let last = parts.peek().is_none();
            let (f, m) =
                if last { (flags, mode) } else { (OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()) };
            let next = openat2(at, OsStr::from_bytes(p), how(f, m))?;
            cur = Some(next);
        }
        cur.ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))
    }

    /// Opens the directory `rel` below this one (read-only, usable for `*at` calls and
    /// reading).
    pub fn dir_beneath(&self, rel: &Path) -> io::Result<SafeFd> {
        self.open_beneath(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).map(SafeFd)
    }

    /// A second descriptor of this directory (its own read position, for listing it).
    pub fn reopen(&self) -> io::Result<SafeFd> {
        self.dir_beneath(Path::new(""))
    }

    /// Gives up the guarantee: the plain descriptor (e.g. for `nix::dir::Dir`).
    pub fn into_owned(self) -> OwnedFd {
        self.0
    }
}

/// How many files this process may hold open (the soft `RLIMIT_NOFILE`; 1024 if unknown): caches
/// of directory fds size themselves by it.
pub fn open_files_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 1024, rlim_max: 1024 };
    // SAFETY: `lim` is a valid, exclusively borrowed rlimit for getrlimit to fill.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if ok { lim.rlim_cur } else { 1024 }
}

impl AsFd for SafeFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for SafeFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_at_slashes_below_path_max() {
        let mut long: Vec<u8> = std::iter::repeat_n(&b"abcdefgh/"[..], 2000).flatten().copied().collect();
        long.pop();
        let parts: Vec<&[u8]> = pieces(&long).collect();
        assert!(parts.len() > 4);
        assert!(parts.iter().all(|p| p.len() <= PIECE && !p.is_empty() && p[0] != b'/'));
        let joined: usize = parts.iter().map(|p| p.len()).sum::<usize>() + parts.len() - 1;
        assert_eq!(joined, long.len());
        assert_eq!(pieces(b"").count(), 0);
        assert_eq!(pieces(b"a/b").collect::<Vec<_>>(), vec![&b"a/b"[..]]);
    }

    #[test]
    fn deep_paths_resolve_and_escapes_fail() {
        let t = tempfile::tempdir().unwrap();
        let root = SafeFd::root(t.path()).unwrap();
        let mut cur = root.reopen().unwrap();
        let mut rel = std::path::PathBuf::new();
        for _ in 0..1500 {
            nix::sys::stat::mkdirat(&cur, "dd", Mode::from_bits_truncate(0o755)).unwrap();
            cur = cur.dir_beneath(Path::new("dd")).unwrap();
            rel.push("dd");
        }
        assert!(rel.as_os_str().len() > 4096);
        let deep = root.dir_beneath(&rel).unwrap();
        let a = nix::sys::stat::fstat(&deep).unwrap();
        let b = nix::sys::stat::fstat(&cur).unwrap();
        assert_eq!(a.st_ino, b.st_ino);
        std::os::unix::fs::symlink("/", t.path().join("out")).unwrap();
        assert!(root.dir_beneath(Path::new("out")).is_err());
        assert!(root.dir_beneath(Path::new("dd/../..")).is_err());
    }
}

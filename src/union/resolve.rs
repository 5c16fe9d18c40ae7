//! Following symlinks inside the merged view, and reading entries: what the offline tools
//! (`strata cat`, `ls`, `export`) need beyond lookup. A symlink never leads out of the merged
//! root: absolute targets start at the merged root, and `..` stops there.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::stack::{Entry, Stack};

const MAX_SYMLINKS: usize = 40;

impl Stack {
    /// The target of a symlink entry (raw bytes; need not be UTF-8).
    pub fn read_link(&self, e: &Entry) -> io::Result<OsString> {
        let (Some(parent), Some(name)) = (e.path.parent(), e.path.file_name()) else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let fd = self.dir_fd(e.layer, parent)?;
        Ok(nix::fcntl::readlinkat(fd.as_fd(), name)?)
    }

    /// Opens a regular file entry for reading (in its layer, never following a symlink).
    pub fn open_file(&self, e: &Entry) -> io::Result<File> {
        let fd = self.open_in(e.layer, &e.path, OFlag::O_RDONLY | OFlag::O_NOFOLLOW, Mode::empty())?;
        Ok(File::from(fd))
    }

    /// Looks up `path` (absolute or relative to the merged root) the way a chroot would: symlinks
    /// in the middle are always followed, the last component only with `follow_last`; an absolute
    /// target starts again at the merged root and `..` at the root stays there. `Ok(None)` when
    /// it does not exist; ENOTDIR through a non-directory, ELOOP after 40 links.
    pub fn resolve(&self, path: &Path, follow_last: bool) -> io::Result<Option<Entry>> {
        let mut todo: VecDeque<OsString> = components(path.as_os_str().as_bytes());
        // The directories from the root to the current one, for `..`.
        let mut chain: Vec<Entry> = vec![self.root()?];
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                if chain.len() > 1 {
                    chain.pop();
                }
                continue;
            }
            let cur = chain.last().expect("the chain always holds the root");
            if !cur.is_dir() {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            let Some(next) = self.lookup_child(cur, &name)? else { return Ok(None) };
            let last = todo.is_empty();
            if next.stat.st_mode & libc::S_IFMT == libc::S_IFLNK && (!last || follow_last) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = self.read_link(&next)?;
                if target.is_empty() {
                    // An empty target names nothing (ENOENT), as in the kernel.
                    return Ok(None);
                }
                let mut rest = components(target.as_bytes());
                rest.extend(todo.drain(..));
                todo = rest;
                if target.as_bytes().starts_with(b"/") {
                    chain.truncate(1);
                }
                continue;
            }
            chain.push(next);
        }
        Ok(chain.pop())
    }
}

/// Splits on `/`, dropping empty and `.` components (they change nothing).
fn components(p: &[u8]) -> VecDeque<OsString> {
    p.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
        .collect()
}

/// A relative path made from a user-supplied one (`/etc/passwd` → `etc/passwd`).
pub fn relative(p: &Path) -> PathBuf {
    p.components().filter(|c| matches!(c, Component::Normal(_))).collect()
}

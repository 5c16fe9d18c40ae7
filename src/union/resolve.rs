//! Following symlinks inside the merged view, and reading entries: what the offline tools
//! (`strata cat`, `ls`, `export`) need beyond lookup. A symlink never leads out of the merged
//! root: absolute targets start at the merged root, and `..` stops there.

use std::ffi::OsString;
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
    /// The target of a symlink entry.
    pub fn read_link(&self, e: &Entry) -> io::Result<OsString> {
        let (Some(parent), Some(name)) = (e.path.parent(), e.path.file_name()) else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let fd = self.dir_fd(e.layer, parent)?;
        Ok(nix::fcntl::readlinkat(fd.as_fd(), name)?)
    }

    /// Opens a regular file entry for reading.
    pub fn open_file(&self, e: &Entry) -> io::Result<File> {
        let fd =
            self.layers()[e.layer].open_at(&e.path, OFlag::O_RDONLY | OFlag::O_NOFOLLOW, Mode::empty())?;
        Ok(File::from(fd))
    }

    /// Looks up `path`, following symlinks (also in the last component) inside the merged
    /// view. ELOOP after 40 links.
    pub fn resolve(&self, path: &Path) -> io::Result<Option<Entry>> {
        let mut todo: Vec<OsString> = components(path);
        todo.reverse();
        let mut cur = self.root()?;
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                let parent = cur.path.parent().map(Path::to_path_buf).unwrap_or_default();
                cur = match self.lookup(&parent)? {
                    Some(e) => e,
                    None => return Ok(None),
                };
                continue;
            }
            if !cur.is_dir() {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            let Some(next) = self.lookup_child(&cur, &c)? else { return Ok(None) };
            if next.stat.st_mode & libc::S_IFMT == libc::S_IFLNK {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = self.read_link(&next)?;
                let t = Path::new(&target);
                let mut more = components(t);
                more.reverse();
                todo.extend(more);
                if t.is_absolute() {
                    cur = self.root()?;
                }
                continue;
            }
            cur = next;
        }
        Ok(Some(cur))
    }
}

fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .filter(|n| !n.as_bytes().is_empty())
        .collect()
}

/// A relative path made from a user-supplied one (`/etc/passwd` → `etc/passwd`).
pub fn relative(p: &Path) -> PathBuf {
    p.components().filter(|c| matches!(c, Component::Normal(_))).collect()
}

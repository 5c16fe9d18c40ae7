//! What COPY and ADD read from: the build context (a directory, `.dockerignore` applied) or the
//! merged tree of an image or earlier stage. Paths are relative and never leave the tree: symlinks
//! are followed inside it only, as in a chroot.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::ignore::Ignore;
use crate::union::Stack;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
}

impl Meta {
    fn from_mode(st_mode: u32, uid: u32, gid: u32, size: u64, mtime: i64) -> Meta {
        let kind = match st_mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        };
        Meta { kind, mode: st_mode & 0o7777, uid, gid, size, mtime }
    }
}

pub trait Tree {
    /// lstat of a path whose parents are directories of the tree (never symlinks).
    fn lstat(&self, rel: &Path) -> Result<Option<Meta>>;
    /// Names in a directory, sorted bytewise.
    fn list(&self, rel: &Path) -> Result<Vec<OsString>>;
    fn open(&self, rel: &Path) -> Result<File>;
    fn readlink(&self, rel: &Path) -> Result<PathBuf>;
    /// Whether `.dockerignore` leaves this path out (context only).
    fn excluded(&self, _rel: &Path) -> bool {
        false
    }
    fn has_exceptions(&self) -> bool {
        false
    }

    /// Follows symlinks inside the tree: the real path of `rel`, or None when it does not exist.
    fn resolve(&self, rel: &Path, follow_last: bool) -> Result<Option<PathBuf>> {
        let mut todo: Vec<OsString> = parts(rel).into_iter().rev().collect();
        let mut cur = PathBuf::new();
        let mut links = 0;
        while let Some(name) = todo.pop() {
            if name == ".." {
                cur.pop();
                continue;
            }
            let next = cur.join(&name);
            let Some(meta) = self.lstat(&next)? else { return Ok(None) };
            if meta.kind == Kind::Symlink && (!todo.is_empty() || follow_last) {
                links += 1;
                if links > 40 {
                    bail!("too many levels of symbolic links at {}", next.display());
                }
                let target = self.readlink(&next)?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                todo.extend(parts(&target).into_iter().rev());
                continue;
            }
            if !todo.is_empty() && meta.kind != Kind::Dir {
                return Ok(None);
            }
            cur = next;
        }
        Ok(Some(cur))
    }
}

fn parts(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// A user-written path made relative and cleaned; `..` may not climb above the root.
pub fn clean_relative(p: &str) -> Result<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir if out.pop().is_none() => {
                bail!("{p:?} is outside of the build context")
            }
            Component::ParentDir => {}
            _ => {}
        }
    }
    Ok(out.iter().collect())
}

/// The build context directory.
pub struct DirTree<'a> {
    pub root: &'a Path,
    pub ignore: &'a Ignore,
}

impl Tree for DirTree<'_> {
    fn lstat(&self, rel: &Path) -> Result<Option<Meta>> {
        match std::fs::symlink_metadata(self.root.join(rel)) {
            Ok(m) => Ok(Some(Meta::from_mode(m.mode(), m.uid(), m.gid(), m.size(), m.mtime()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot stat {} in the build context", rel.display())),
        }
    }

    fn list(&self, rel: &Path) -> Result<Vec<OsString>> {
        let dir = self.root.join(rel);
        let mut names = Vec::new();
        for e in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            names.push(e.with_context(|| format!("cannot read {}", dir.display()))?.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(names)
    }

    fn open(&self, rel: &Path) -> Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.root.join(rel))
            .with_context(|| format!("cannot open {} in the build context", rel.display()))
    }

    fn readlink(&self, rel: &Path) -> Result<PathBuf> {
        std::fs::read_link(self.root.join(rel)).with_context(|| format!("cannot read link {}", rel.display()))
    }

    fn excluded(&self, rel: &Path) -> bool {
        match rel.to_str() {
            Some(s) => self.ignore.excludes(s),
            None => self.ignore.excludes(&String::from_utf8_lossy(rel.as_os_str().as_bytes())),
        }
    }

    fn has_exceptions(&self) -> bool {
        self.ignore.has_exceptions()
    }
}

/// The merged tree of an image (a stack of its layer directories).
pub struct ImageTree {
    pub stack: Stack,
}

impl ImageTree {
    fn entry(&self, rel: &Path) -> Result<Option<crate::union::stack::Entry>> {
        self.stack.lookup(rel).with_context(|| format!("cannot look up /{} in the image", rel.display()))
    }
}

impl Tree for ImageTree {
    fn lstat(&self, rel: &Path) -> Result<Option<Meta>> {
        Ok(self.entry(rel)?.map(|e| {
            let s = e.stat;
            Meta::from_mode(s.st_mode, s.st_uid, s.st_gid, s.st_size as u64, s.st_mtime)
        }))
    }

    fn list(&self, rel: &Path) -> Result<Vec<OsString>> {
        let e = self.entry(rel)?.with_context(|| format!("/{} is gone from the image", rel.display()))?;
        let listing = self.stack.list(&e).with_context(|| format!("cannot list /{}", rel.display()))?;
        let mut names: Vec<OsString> = listing.entries.iter().map(|l| l.name.clone()).collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(names)
    }

    fn open(&self, rel: &Path) -> Result<File> {
        let e = self.entry(rel)?.with_context(|| format!("/{} is gone from the image", rel.display()))?;
        self.stack.open_file(&e).with_context(|| format!("cannot open /{}", rel.display()))
    }

    fn readlink(&self, rel: &Path) -> Result<PathBuf> {
        let e = self.entry(rel)?.with_context(|| format!("/{} is gone from the image", rel.display()))?;
        Ok(self.stack.read_link(&e).with_context(|| format!("cannot read link /{}", rel.display()))?.into())
    }
}

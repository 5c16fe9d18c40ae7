//! COPY and ADD: which files go where (Docker's rules), a content hash of them for the cache key,
//! and the new layer's tree written into a staging directory that the store packs like a
//! container's upper.
//!
//! Rules (Docker's reference): a directory source copies its contents, not itself; several
//! sources, or a destination ending in `/`, need a directory destination; a file copied onto an
//! existing directory lands inside it; missing parents are created (0755); files from the context
//! belong to 0:0 unless `--chown`, files from another stage or image keep their owners; mtimes are
//! kept; `.dockerignore`d paths are never seen. ADD unpacks local tar archives (plain, gzip, zstd).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::layer::override_stat;
use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256};

use super::ignore::{glob_component, has_glob};
use super::tree::{Kind, Meta, Tree, clean_relative};

/// One thing to write into the layer, at a path relative to the image root.
#[derive(Debug)]
pub enum Op {
    Dir {
        dest: PathBuf,
        meta: Meta,
    },
    File {
        src: PathBuf,
        dest: PathBuf,
        meta: Meta,
    },
    Symlink {
        dest: PathBuf,
        target: PathBuf,
        meta: Meta,
    },
    Content {
        dest: PathBuf,
        bytes: Vec<u8>,
        meta: Meta,
    },
    /// ADD of a local archive: its entries go under `dest` (a directory).
    Unpack {
        src: PathBuf,
        dest: PathBuf,
    },
}

/// Ownership and mode overrides from `--chown` / `--chmod`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    pub owner: Option<(u32, u32)>,
    pub mode: Option<u32>,
    /// Sources keep their owners (another stage or image) instead of becoming 0:0.
    pub keep_owner: bool,
}

impl Overrides {
    fn apply(&self, mut m: Meta) -> Meta {
        match self.owner {
            Some((u, g)) => (m.uid, m.gid) = (u, g),
            None if !self.keep_owner => (m.uid, m.gid) = (0, 0),
            None => {}
        }
        if let (Some(mode), Kind::File | Kind::Dir) = (self.mode, m.kind) {
            m.mode = mode;
        }
        m
    }
}

/// A source as written: a path (maybe a glob) in the source tree, or heredoc content.
pub enum Source {
    Path(String),
    Heredoc { name: String, content: Vec<u8> },
}

pub struct Plan {
    pub ops: Vec<Op>,
}

/// Works out what COPY/ADD writes. `dest_is_dir` tells whether the destination (absolute, in the
/// image) already is a directory in the image; `unpack` is ADD.
pub fn plan(
    tree: &dyn Tree,
    sources: &[Source],
    dest: &str,
    dest_is_dir: bool,
    ov: Overrides,
    unpack: bool,
    heredoc_mtime: i64,
) -> Result<Plan> {
    let dest_rel = clean_relative(dest).unwrap_or_default();
    let mut expanded: Vec<(PathBuf, Meta)> = Vec::new();
    let mut heredocs = Vec::new();
    for s in sources {
        match s {
            Source::Path(p) => {
                let matches = expand(tree, p)?;
                if matches.is_empty() {
                    bail!(
                        "{p:?}: not found in the {}",
                        if ov.keep_owner { "source image" } else { "build context" }
                    );
                }
                expanded.extend(matches);
            }
            Source::Heredoc { name, content } => heredocs.push((name.clone(), content.clone())),
        }
    }
    let count = expanded.len() + heredocs.len();
    let into_dir = dest.ends_with('/') || dest_is_dir || dest.is_empty() || dest == ".";
    if sources.len() > 1 && !into_dir {
        bail!(
            "when using COPY with more than one source file, the destination must be a directory and end with a /"
        );
    }
    let mut ops = Vec::new();
    for (src, meta) in expanded {
        match meta.kind {
            Kind::Dir => {
                if count > 1 || into_dir || !dest_rel.as_os_str().is_empty() {
                    // The directory's contents go into dest; dest itself is created if missing.
                    ops.push(Op::Dir { dest: dest_rel.clone(), meta: ov.apply(meta) });
                }
                walk(tree, &src, &dest_rel, ov, &mut ops)?;
            }
            _ => {
                let target = if into_dir || count > 1 {
                    dest_rel.join(src.file_name().unwrap_or(OsStr::new("")))
                } else {
                    dest_rel.clone()
                };
                if unpack && meta.kind == Kind::File && is_archive(tree, &src)? {
                    ops.push(Op::Unpack { src, dest: dest_rel.clone() });
                } else {
                    ops.push(leaf(tree, &src, target, meta, ov)?);
                }
            }
        }
    }
    for (name, content) in heredocs {
        let target = if into_dir || count > 1 { dest_rel.join(&name) } else { dest_rel.clone() };
        let meta = Meta {
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: content.len() as u64,
            mtime: heredoc_mtime,
        };
        ops.push(Op::Content { dest: target, bytes: content, meta: ov.apply(meta) });
    }
    Ok(Plan { ops })
}

/// A source path, with Docker's globs, to the matching entries (top-level symlinks followed).
fn expand(tree: &dyn Tree, pattern: &str) -> Result<Vec<(PathBuf, Meta)>> {
    let rel = clean_relative(pattern)?;
    let mut found: Vec<PathBuf> = Vec::new();
    if !has_glob(pattern) {
        if tree.excluded(&rel) && !rel.as_os_str().is_empty() {
            return Ok(Vec::new());
        }
        found.push(rel);
    } else {
        let mut partial = vec![PathBuf::new()];
        for comp in rel.components() {
            let c = comp.as_os_str();
            let mut next = Vec::new();
            for base in &partial {
                let glob = c.to_str().is_some_and(has_glob);
                if glob {
                    let Some(meta) = tree.lstat(base)? else { continue };
                    if meta.kind != Kind::Dir {
                        continue;
                    }
                    for name in tree.list(base)? {
                        if glob_component(c.to_str().unwrap_or(""), &name.to_string_lossy()) {
                            next.push(base.join(name));
                        }
                    }
                } else {
                    next.push(base.join(c));
                }
            }
            partial = next;
        }
        found = partial.into_iter().filter(|p| !tree.excluded(p)).collect();
    }
    let mut out = Vec::new();
    for p in found {
        let Some(real) = tree.resolve(&p, true)? else { continue };
        if let Some(meta) = tree.lstat(&real)? {
            out.push((real, meta));
        }
    }
    Ok(out)
}

fn leaf(tree: &dyn Tree, src: &Path, dest: PathBuf, meta: Meta, ov: Overrides) -> Result<Op> {
    let meta = ov.apply(meta);
    Ok(match meta.kind {
        Kind::File => Op::File { src: src.to_path_buf(), dest, meta },
        Kind::Symlink => Op::Symlink { dest, target: tree.readlink(src)?, meta },
        Kind::Dir => Op::Dir { dest, meta },
        Kind::Other => bail!("{}: cannot copy a device, socket or fifo", src.display()),
    })
}

/// A directory's descendants, sorted, `.dockerignore` applied (an excluded directory is still
/// entered when an exception might bring something back).
fn walk(tree: &dyn Tree, src: &Path, dest: &Path, ov: Overrides, ops: &mut Vec<Op>) -> Result<bool> {
    let mut any = false;
    for name in tree.list(src)? {
        let s = src.join(&name);
        let d = dest.join(&name);
        let excluded = tree.excluded(&s);
        let Some(meta) = tree.lstat(&s)? else { continue };
        if meta.kind == Kind::Dir {
            if excluded && !tree.has_exceptions() {
                continue;
            }
            let at = ops.len();
            ops.push(Op::Dir { dest: d.clone(), meta: ov.apply(meta) });
            let inner = walk(tree, &s, &d, ov, ops)?;
            if excluded && !inner {
                ops.truncate(at);
            } else {
                any = true;
            }
        } else if !excluded {
            ops.push(leaf(tree, &s, d, meta, ov)?);
            any = true;
        }
    }
    Ok(any)
}

fn is_archive(tree: &dyn Tree, src: &Path) -> Result<bool> {
    let mut f = tree.open(src)?;
    let mut head = vec![0u8; 512];
    let n = read_full(&mut f, &mut head)?;
    head.truncate(n);
    // Docker unpacks these too; strata has no xz or bzip2 decoder (no crate added for them), so
    // say so rather than copy the archive as a file.
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) || head.starts_with(b"BZh") {
        bail!(
            "{}: ADD of xz or bzip2 archives is not supported (plain, gzip and zstd tars are)",
            src.display()
        );
    }
    let Ok(compression) = crate::layer::compression::Compression::detect(&head) else { return Ok(false) };
    if compression != crate::layer::compression::Compression::None {
        return Ok(true);
    }
    Ok(n == 512 && &head[257..262] == b"ustar")
}

fn read_full(f: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The cache key part of a plan: names, kinds, modes, owners and contents (never mtimes).
pub fn hash(tree: &dyn Tree, plan: &Plan) -> Result<String> {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    for op in &plan.ops {
        match op {
            Op::Dir { dest, meta } => {
                field(b"dir");
                field(dest.as_os_str().as_bytes());
                field(format!("{:o} {} {}", meta.mode, meta.uid, meta.gid).as_bytes());
            }
            Op::File { src, dest, meta } => {
                field(b"file");
                field(dest.as_os_str().as_bytes());
                field(format!("{:o} {} {}", meta.mode, meta.uid, meta.gid).as_bytes());
                field(&file_sha(tree, src)?);
            }
            Op::Symlink { dest, target, meta } => {
                field(b"link");
                field(dest.as_os_str().as_bytes());
                field(target.as_os_str().as_bytes());
                field(format!("{} {}", meta.uid, meta.gid).as_bytes());
            }
            Op::Content { dest, bytes, meta } => {
                field(b"content");
                field(dest.as_os_str().as_bytes());
                field(format!("{:o} {} {}", meta.mode, meta.uid, meta.gid).as_bytes());
                field(bytes);
            }
            Op::Unpack { src, dest } => {
                field(b"unpack");
                field(dest.as_os_str().as_bytes());
                field(&file_sha(tree, src)?);
            }
        }
    }
    Ok(hex::encode(h.finalize()))
}

fn file_sha(tree: &dyn Tree, src: &Path) -> Result<Vec<u8>> {
    let mut f = tree.open(src)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("cannot read {}", src.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_vec())
}

/// The image's tree below the staging dir, for parents the layer must carry.
pub trait Base {
    /// lstat of an image path (relative, parents real directories).
    fn dir_meta(&self, rel: &Path) -> Result<Option<Meta>>;
}

/// Writes the layer tree under `stage`: parents first (with the image's attributes when it has
/// them, else 0755 and the `new_owner`), then every op. Directory mtimes are set last.
pub struct Writer<'a> {
    pub stage: &'a Path,
    pub base: &'a dyn Base,
    pub new_owner: (u32, u32),
    pub now: i64,
    dir_times: BTreeMap<PathBuf, i64>,
    /// Some owner went to the override xattr (rootless): the stage root is marked at the end.
    recorded: bool,
}

impl<'a> Writer<'a> {
    pub fn new(stage: &'a Path, base: &'a dyn Base, new_owner: (u32, u32), now: i64) -> Writer<'a> {
        Writer { stage, base, new_owner, now, dir_times: BTreeMap::new(), recorded: false }
    }

    /// Makes `rel` and its parents exist as directories in the stage.
    pub fn ensure_dir(&mut self, rel: &Path) -> Result<()> {
        let mut cur = PathBuf::new();
        for c in rel.components() {
            cur.push(c);
            let p = self.stage.join(&cur);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => continue,
                Ok(_) => {
                    std::fs::remove_file(&p).with_context(|| format!("cannot replace {}", p.display()))?
                }
                Err(_) => {}
            }
            let meta = match self.base.dir_meta(&cur)? {
                Some(m) if m.kind == Kind::Dir => m,
                _ => Meta {
                    kind: Kind::Dir,
                    mode: 0o755,
                    uid: self.new_owner.0,
                    gid: self.new_owner.1,
                    size: 0,
                    mtime: self.now,
                },
            };
            self.make_dir(&cur, &meta)?;
        }
        Ok(())
    }

    fn make_dir(&mut self, rel: &Path, meta: &Meta) -> Result<()> {
        let p = self.stage.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(&p).with_context(|| format!("cannot replace {}", p.display()))?;
                std::fs::create_dir(&p).with_context(|| format!("cannot create {}", p.display()))?;
            }
            Err(_) => std::fs::create_dir(&p).with_context(|| format!("cannot create {}", p.display()))?,
        }
        self.recorded |= override_stat::chown_or_record(&p, meta.uid, meta.gid, meta.mode)
            .with_context(|| format!("cannot chown {}", p.display()))?;
        self.dir_times.insert(rel.to_path_buf(), meta.mtime);
        Ok(())
    }

    fn prepare(&mut self, dest: &Path) -> Result<PathBuf> {
        if let Some(parent) = dest.parent() {
            self.ensure_dir(parent)?;
        }
        let p = self.stage.join(dest);
        if let Ok(m) = std::fs::symlink_metadata(&p) {
            if m.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) }
                .with_context(|| format!("cannot replace {}", p.display()))?;
        }
        Ok(p)
    }

    pub fn apply(&mut self, tree: &dyn Tree, ops: &[Op]) -> Result<()> {
        for op in ops {
            match op {
                Op::Dir { dest, meta } => {
                    if let Some(parent) = dest.parent() {
                        self.ensure_dir(parent)?;
                    }
                    if dest.as_os_str().is_empty() {
                        continue;
                    }
                    // An existing directory of the image keeps its attributes (Docker copies the
                    // contents into it); a new one takes the source's.
                    let meta = match self.base.dir_meta(dest)? {
                        Some(m) if m.kind == Kind::Dir => m,
                        _ => *meta,
                    };
                    self.make_dir(dest, &meta)?;
                }
                Op::File { src, dest, meta } => {
                    let p = self.prepare(dest)?;
                    let mut from = tree.open(src)?;
                    let mut to = create(&p)?;
                    std::io::copy(&mut from, &mut to)
                        .with_context(|| format!("copying {}", src.display()))?;
                    self.recorded |= finish_file(&p, to, meta)?;
                }
                Op::Content { dest, bytes, meta } => {
                    let p = self.prepare(dest)?;
                    let mut to = create(&p)?;
                    to.write_all(bytes).with_context(|| format!("cannot write {}", p.display()))?;
                    self.recorded |= finish_file(&p, to, meta)?;
                }
                Op::Symlink { dest, target, meta } => {
                    let p = self.prepare(dest)?;
                    std::os::unix::fs::symlink(target, &p)
                        .with_context(|| format!("cannot create {}", p.display()))?;
                    self.recorded |= override_stat::chown_or_record(&p, meta.uid, meta.gid, 0o777)
                        .with_context(|| format!("cannot chown {}", p.display()))?;
                    set_times(&p, meta.mtime, false)?;
                }
                Op::Unpack { src, dest } => {
                    self.ensure_dir(dest)?;
                    let input = tree.open(src)?;
                    let (_, decoder) = crate::layer::compression::open_decompressed(input)
                        .with_context(|| format!("ADD {}", src.display()))?;
                    let mut archive = tar::Archive::new(decoder);
                    archive.set_preserve_permissions(true);
                    archive.set_preserve_ownerships(true);
                    archive.set_preserve_mtime(true);
                    archive.set_unpack_xattrs(false);
                    archive
                        .unpack(self.stage.join(dest))
                        .with_context(|| format!("ADD: cannot unpack {}", src.display()))?;
                }
            }
        }
        let dirs: Vec<_> = std::mem::take(&mut self.dir_times).into_iter().rev().collect();
        for (rel, t) in dirs {
            set_times(&self.stage.join(rel), t, true)?;
        }
        if self.recorded {
            // Rootless: owners went to the override xattr; the marked root makes the pack read
            // them, and a symlink of ours stands for root's (`layer::override_stat`).
            let root = File::open(self.stage).with_context(|| format!("opening {}", self.stage.display()))?;
            override_stat::mark_layer_root(&root, 0, 0, 0o755)?;
        }
        Ok(())
    }
}

fn create(p: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .with_context(|| format!("cannot create {}", p.display()))
}

/// Owner (recorded when it can't be given: `Ok(true)`), then mode (chown clears setuid/setgid
/// bits), then times.
fn finish_file(p: &Path, f: File, meta: &Meta) -> Result<bool> {
    drop(f);
    let recorded = override_stat::chown_or_record(p, meta.uid, meta.gid, meta.mode)
        .with_context(|| format!("cannot chown {}", p.display()))?;
    set_times(p, meta.mtime, true)?;
    Ok(recorded)
}

fn set_times(p: &Path, mtime: i64, follow: bool) -> Result<()> {
    let t = nix::sys::time::TimeSpec::new(mtime, 0);
    use nix::sys::stat::UtimensatFlags;
    let flag = if follow { UtimensatFlags::FollowSymlink } else { UtimensatFlags::NoFollowSymlink };
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, p, &t, &t, flag)
        .with_context(|| format!("cannot set the times of {}", p.display()))
}

//! Reading one merged entry: its attributes, link target, xattrs and content — always from the
//! layer the entry comes from, through that layer's root fd, never following a symlink.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;

use crate::layer::override_stat::is_override_xattr;
use crate::layer::whiteout::is_private_xattr;
use crate::oci::Digest;
use crate::oci::digest::HashingWriter;
use crate::union::layer::{file_type, proc_path};
use crate::union::{Entry, Stack};

/// File type of an entry, as its one-word name (`file`, `dir`, …) and `ls` letter.
pub fn type_name(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "symlink",
        libc::S_IFREG => "file",
        libc::S_IFCHR => "char",
        libc::S_IFBLK => "block",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        _ => "unknown",
    }
}

pub fn is_reg(e: &Entry) -> bool {
    file_type(&e.stat) == libc::S_IFREG
}

pub fn is_symlink(e: &Entry) -> bool {
    file_type(&e.stat) == libc::S_IFLNK
}

/// st_nlink as the mount reports it: a directory merged from several layers says 1 (unknown),
/// as overlayfs does.
pub fn nlink(e: &Entry) -> u64 {
    if e.is_dir() && e.is_merged() { 1 } else { e.stat.st_nlink }
}

/// Size in bytes (0 for directories, whose size is the layer filesystem's business).
pub fn data_size(e: &Entry) -> u64 {
    if is_reg(e) { e.stat.st_size.max(0) as u64 } else { 0 }
}

/// The directory fd of the entry's parent in the entry's layer, and the entry's name.
fn parent_fd(
    stack: &Stack,
    e: &Entry,
) -> io::Result<(std::sync::Arc<crate::union::layer::SafeFd>, OsString)> {
    let parent = e.path.parent().unwrap_or(std::path::Path::new(""));
    let name = if e.path.as_os_str().is_empty() { OsString::from(".") } else { e.name().to_os_string() };
    Ok((stack.dir_fd(e.layer, parent)?, name))
}

/// The target of a symlink entry, as raw bytes.
pub fn read_link(stack: &Stack, e: &Entry) -> io::Result<Vec<u8>> {
    Ok(stack.read_link(e)?.into_vec())
}

/// The entry's xattrs, sorted, without strata's and overlayfs's private ones and the override
/// xattrs (their values are the entry's stat already). Symlinks have none
/// we can read without following them.
pub fn xattrs(stack: &Stack, e: &Entry) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    if is_symlink(e) {
        return Ok(Vec::new());
    }
    let (dir, name) = parent_fd(stack, e)?;
    let p = proc_path(dir.as_fd(), &name);
    let names = match xattr::list(&p) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for n in names.filter(|n| !is_private_xattr(n) && !is_override_xattr(n)) {
        if let Some(v) = xattr::get(&p, &n)? {
            out.push((n, v));
        }
    }
    out.sort();
    Ok(out)
}

/// Opens a regular file entry for reading.
pub fn open(stack: &Stack, e: &Entry) -> io::Result<File> {
    if !is_reg(e) {
        return Err(io::Error::other(format!("/{} is not a regular file", e.path.display())));
    }
    stack.open_file(e)
}

/// The path of an entry as shown to users: `/` + its path in the image.
pub fn shown(e: &Entry) -> std::path::PathBuf {
    std::path::Path::new("/").join(&e.path)
}

/// sha256 of a regular file's content.
pub fn content_hash(stack: &Stack, e: &Entry) -> io::Result<Digest> {
    let mut f = open(stack, e)?;
    let mut w = HashingWriter::new(io::sink());
    io::copy(&mut f, &mut w)?;
    Ok(w.finish().1)
}

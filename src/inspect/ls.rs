//! `strata ls`: what a merged directory holds, with everything `ls -l` shows and the layer each
//! entry comes from.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use super::node::{self, is_symlink};
use super::view::{Origin, View};
use super::walk;
use crate::union::Entry;

/// One listed entry, with what `ls -l` and the JSON output need.
#[derive(Debug, Clone)]
pub struct Item {
    /// Absolute path in the image (`/etc/passwd`).
    pub path: PathBuf,
    /// The name shown in a directory listing (or the path as given, for a non-directory operand).
    pub name: OsString,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// (major, minor) for device nodes.
    pub rdev: Option<(u64, u64)>,
    pub mtime: i64,
    pub mtime_nsec: i64,
    /// Symlink target, raw bytes.
    pub target: Option<Vec<u8>>,
    pub origin: Origin,
}

/// A directory's listing (`dir` is `None` for the entries given directly).
#[derive(Debug)]
pub struct Group {
    pub dir: Option<PathBuf>,
    pub items: Vec<Item>,
}

/// Lists `path` in `view`: a directory's children (and with `recursive` every directory below,
/// each as its own group), or the entry itself. As `ls` does, a symlink operand naming a
/// directory is followed unless `long` asks for the link itself.
pub fn list(view: &View, path: &Path, long: bool, recursive: bool) -> Result<Vec<Group>> {
    let stack = &view.stack;
    let missing = || anyhow::anyhow!("{}: no such file or directory in {}", path.display(), view.name);
    let resolving = || format!("resolving {} in {}", path.display(), view.name);
    let mut e = stack.resolve(path, false).with_context(resolving)?.ok_or_else(missing)?;
    if is_symlink(&e) && !long {
        if let Some(t) = stack.resolve(path, true).with_context(resolving)?.filter(Entry::is_dir) {
            e = t;
        }
    }
    if !e.is_dir() {
        let mut item = item(view, &e)?;
        item.name = path.as_os_str().to_os_string();
        return Ok(vec![Group { dir: None, items: vec![item] }]);
    }
    // Depth first like `ls -R`: a directory's listing, then each subdirectory's, in name order.
    let mut groups = Vec::new();
    let mut todo = vec![e];
    while let Some(dir) = todo.pop() {
        let kids = walk::children(stack, &dir)
            .map_err(|err| anyhow::anyhow!("cannot list /{} in {}: {err}", dir.path.display(), view.name))?;
        let items = kids.iter().map(|k| item(view, k)).collect::<Result<Vec<_>>>()?;
        groups.push(Group { dir: Some(Path::new("/").join(&dir.path)), items });
        if recursive {
            todo.extend(kids.into_iter().filter(Entry::is_dir).rev());
        }
    }
    Ok(groups)
}

/// Gathers one entry's facts.
pub fn item(view: &View, e: &Entry) -> Result<Item> {
    let st = &e.stat;
    let kind = st.st_mode & libc::S_IFMT;
    let target = if is_symlink(e) {
        Some(node::read_link(&view.stack, e).map_err(|err| {
            anyhow::anyhow!("cannot read the link /{} in {}: {err}", e.path.display(), view.name)
        })?)
    } else {
        None
    };
    Ok(Item {
        path: Path::new("/").join(&e.path),
        name: e.name().to_os_string(),
        mode: st.st_mode,
        nlink: node::nlink(e),
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size.max(0) as u64,
        rdev: (kind == libc::S_IFCHR || kind == libc::S_IFBLK)
            .then(|| (nix::sys::stat::major(st.st_rdev), nix::sys::stat::minor(st.st_rdev))),
        mtime: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec,
        target,
        origin: view.origin(e.layer).clone(),
    })
}

/// `drwxr-xr-x`-style mode string (setuid `s`/`S`, sticky `t`/`T`).
pub fn mode_string(mode: u32) -> String {
    let t = match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        _ => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    let bit = |m: u32, c: char| if mode & m != 0 { c } else { '-' };
    let special = |x: bool, special: bool, on: char, off: char| match (x, special) {
        (true, true) => on,
        (false, true) => off,
        (true, false) => 'x',
        (false, false) => '-',
    };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(mode & 0o100 != 0, mode & 0o4000 != 0, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(mode & 0o010 != 0, mode & 0o2000 != 0, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(mode & 0o001 != 0, mode & 0o1000 != 0, 't', 'T'));
    s
}

/// Lossy text for JSON, plus the raw bytes in hex when the text is not exact.
fn text_fields(obj: &mut serde_json::Map<String, Value>, key: &str, bytes: &[u8]) {
    obj.insert(key.into(), String::from_utf8_lossy(bytes).into_owned().into());
    if std::str::from_utf8(bytes).is_err() {
        obj.insert(format!("{key}_hex"), hex::encode(bytes).into());
    }
}

/// The JSON object of one item (schema in `strata ls --help`).
pub fn to_json(i: &Item) -> Value {
    let mut o = serde_json::Map::new();
    text_fields(&mut o, "path", i.path.as_os_str().as_bytes());
    text_fields(&mut o, "name", i.name.as_bytes());
    o.insert("type".into(), node::type_name(i.mode).into());
    o.insert("mode".into(), (i.mode & 0o7777).into());
    o.insert("mode_string".into(), mode_string(i.mode).into());
    o.insert("nlink".into(), i.nlink.into());
    o.insert("uid".into(), i.uid.into());
    o.insert("gid".into(), i.gid.into());
    o.insert("size".into(), i.size.into());
    if let Some((major, minor)) = i.rdev {
        o.insert("major".into(), major.into());
        o.insert("minor".into(), minor.into());
    }
    o.insert("mtime".into(), i.mtime.into());
    o.insert("mtime_nsec".into(), i.mtime_nsec.into());
    if let Some(t) = &i.target {
        text_fields(&mut o, "target", t);
    }
    o.insert("layer".into(), i.origin.json_index());
    o.insert("diff_id".into(), i.origin.diff_id().map_or(Value::Null, |d| d.to_string().into()));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::mode_string;

    #[test]
    fn mode_strings_like_ls() {
        assert_eq!(mode_string(libc::S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(libc::S_IFREG | 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(libc::S_IFREG | 0o2611), "-rw---s--x");
        assert_eq!(mode_string(libc::S_IFDIR | 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(libc::S_IFREG | 0o1644), "-rw-r--r-T");
        assert_eq!(mode_string(libc::S_IFLNK | 0o777), "lrwxrwxrwx");
    }
}

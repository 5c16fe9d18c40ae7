//! The `user.containers.override_stat` xattr: the owner, mode and file type a file *should* have,
//! recorded where an unprivileged user cannot give it that owner or type for real.
//!
//! The format is the one containers/storage writes (`pkg/idtools/idtools.go`,
//! `FormatContainersOverrideXattrDevice` / `parseOverrideXattr`) and fuse-overlayfs reads
//! (`utils.c`, `override_mode`, enabled per layer when the layer's root directory carries the
//! xattr: `direct.c`, `direct_load_data_source`):
//!
//! ```text
//! UID:GID:MODE[:TYPE]     e.g. 0:0:4755:file   1000:50:0644   0:6:0660:block-8-0
//! ```
//!
//! UID and GID are decimal, MODE is octal with the setuid/setgid/sticky bits (`%04o` when
//! written), TYPE is one of `file dir symlink pipe socket block-MAJ-MIN char-MAJ-MIN`. Writers
//! always give the type; readers accept it missing (older fuse-overlayfs wrote `%d:%d:%o`, and
//! still reads only those three fields). Like containers/storage, a type is recognised by its
//! prefix and device fields after the minor are ignored, so newer writers stay readable.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sys::stat::FileStat;
use thiserror::Error;
use xattr::FileExt;

/// The xattr name shared with containers/storage and fuse-overlayfs.
pub const XATTR: &str = "user.containers.override_stat";

/// What fuse-overlayfs writes in its upper with `-o xattr_permissions=2` (`UID:GID:MODE`, MODE
/// with the file type bits, e.g. `0:0:104755`); read like [`XATTR`], which wins when both exist.
pub const FUSE_OVERLAYFS_XATTR: &str = "user.fuseoverlayfs.override_stat";

/// Both names, in the order they are looked up.
const NAMES: [&str; 2] = [XATTR, FUSE_OVERLAYFS_XATTR];

/// Whether `name` is an override xattr: it describes the file, it is not part of it, so it
/// never shows through a mount and never goes into a layer tar (the tar header carries the
/// values instead).
pub fn is_override_xattr(name: &OsStr) -> bool {
    NAMES.iter().any(|n| OsStr::new(n) == name)
}

/// The file type part of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    File,
    Dir,
    Symlink,
    Pipe,
    Socket,
    Block { major: u64, minor: u64 },
    Char { major: u64, minor: u64 },
}

impl FileType {
    /// The `S_IFMT` bits of this type.
    pub fn s_ifmt(self) -> u32 {
        match self {
            FileType::File => libc::S_IFREG,
            FileType::Dir => libc::S_IFDIR,
            FileType::Symlink => libc::S_IFLNK,
            FileType::Pipe => libc::S_IFIFO,
            FileType::Socket => libc::S_IFSOCK,
            FileType::Block { .. } => libc::S_IFBLK,
            FileType::Char { .. } => libc::S_IFCHR,
        }
    }

    /// The device number (`st_rdev`) for block and character devices, else 0.
    pub fn rdev(self) -> u64 {
        match self {
            FileType::Block { major, minor } | FileType::Char { major, minor } => libc::makedev(
                u32::try_from(major).unwrap_or(u32::MAX),
                u32::try_from(minor).unwrap_or(u32::MAX),
            ),
            _ => 0,
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileType::File => f.write_str("file"),
            FileType::Dir => f.write_str("dir"),
            FileType::Symlink => f.write_str("symlink"),
            FileType::Pipe => f.write_str("pipe"),
            FileType::Socket => f.write_str("socket"),
            FileType::Block { major, minor } => write!(f, "block-{major}-{minor}"),
            FileType::Char { major, minor } => write!(f, "char-{major}-{minor}"),
        }
    }
}

/// One decoded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverrideStat {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Absent in values written by old fuse-overlayfs: the type on disk is the real one then.
    pub file_type: Option<FileType>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum OverrideStatError {
    #[error("{XATTR} value {0:?} is not UID:GID:MODE[:TYPE]")]
    Shape(String),
    #[error("{XATTR} value {value:?}: bad {field} {text:?}")]
    Field { value: String, field: &'static str, text: String },
    #[error("{XATTR} value {value:?}: unknown file type {text:?}")]
    Type { value: String, text: String },
}

impl OverrideStat {
    /// Decodes an xattr value (a trailing NUL, as C writers may leave, is ignored).
    pub fn parse(raw: &[u8]) -> Result<OverrideStat, OverrideStatError> {
        let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
        let value = String::from_utf8_lossy(raw).into_owned();
        let parts: Vec<&str> = value.split(':').collect();
        if parts.len() < 3 {
            return Err(OverrideStatError::Shape(value));
        }
        let bad = |field: &'static str, text: &str| OverrideStatError::Field {
            value: value.clone(),
            field,
            text: text.to_string(),
        };
        let uid = parts[0].parse::<u32>().map_err(|_| bad("uid", parts[0]))?;
        let gid = parts[1].parse::<u32>().map_err(|_| bad("gid", parts[1]))?;
        // containers/storage parses 32 bits of octal and keeps the permission and special bits.
        let mode = u32::from_str_radix(parts[2], 8).map_err(|_| bad("mode", parts[2]))? & 0o7777;
        let file_type = match parts.get(3) {
            None => None,
            Some(t) => Some(
                parse_type(t)
                    .ok_or_else(|| OverrideStatError::Type { value: value.clone(), text: t.to_string() })?,
            ),
        };
        Ok(OverrideStat { uid, gid, mode, file_type })
    }

    /// The value as containers/storage writes it: `UID:GID:%04o:TYPE`.
    pub fn format(&self) -> String {
        let mut s = format!("{}:{}:{:04o}", self.uid, self.gid, self.mode & 0o7777);
        if let Some(t) = self.file_type {
            s.push(':');
            s.push_str(&t.to_string());
        }
        s
    }

    /// The full `st_mode` to report for a file whose mode on disk is `disk_mode`: the recorded
    /// type (or the one on disk when none is recorded) with the recorded permissions.
    pub fn st_mode(&self, disk_mode: u32) -> u32 {
        let kind = self.file_type.map_or(disk_mode & libc::S_IFMT, FileType::s_ifmt);
        kind | (self.mode & 0o7777)
    }
}

/// A layer whose files may carry override xattrs: fuse-overlayfs' rule is that the layer root
/// carries one, so the common layer pays no xattr read per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// The xattr name the layer uses ([`XATTR`], or fuse-overlayfs' own in its uppers).
    pub xattr: &'static str,
    /// The layer root's owner on disk (whoever wrote the layer)...
    pub disk_owner: (u32, u32),
    /// ... and the owner its xattr records.
    pub recorded_owner: (u32, u32),
}

impl Marker {
    /// A symlink can carry no `user.*` xattr, so its owner can't be recorded: one owned on disk
    /// by the layer's writer stands for the owner the layer root records (the image's root for
    /// an unpacked layer, the user for an upper). The recorded ids, when that applies.
    pub fn symlink_owner(&self, st: &FileStat) -> Option<(u32, u32)> {
        if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
            return None;
        }
        self.link_owner(st.st_uid, st.st_gid)
    }

    /// [`Marker::symlink_owner`] for a symlink owned by `uid`:`gid` on disk.
    pub fn link_owner(&self, uid: u32, gid: u32) -> Option<(u32, u32)> {
        ((uid, gid) == self.disk_owner).then_some(self.recorded_owner)
    }
}

/// The marker of the layer whose root is open as `root`, if it has one.
pub fn layer_marker(root: BorrowedFd<'_>) -> io::Result<Option<Marker>> {
    let st = nix::sys::stat::fstat(root)?;
    for n in NAMES {
        if let Some(o) = read_at(root, OsStr::new(""), n)? {
            return Ok(Some(Marker {
                xattr: n,
                disk_owner: (st.st_uid, st.st_gid),
                recorded_owner: (o.uid, o.gid),
            }));
        }
    }
    Ok(None)
}

/// The stat of an entry of a marked layer as views show it: `st` from disk with what its
/// xattr records (`recorded`, read under `marker.xattr`) applied, or a symlink's stand-in owner.
pub fn present(st: &mut FileStat, marker: &Marker, recorded: Option<&OverrideStat>) {
    match recorded {
        Some(o) => apply(st, o),
        None => {
            if let Some(ids) = marker.symlink_owner(st) {
                (st.st_uid, st.st_gid) = ids;
            }
        }
    }
}

/// The recorded stat of `name` in the open directory `dir` under the xattr `xname`. A value
/// that does not parse is logged and ignored: the file then shows as it is on disk.
/// An empty `name` (or ".") is `dir` itself.
pub fn read_at(dir: BorrowedFd<'_>, name: &OsStr, xname: &str) -> io::Result<Option<OverrideStat>> {
    read(&fd_path(dir, name), xname, name.is_empty() || name == ".")
}

/// Like [`read_at`], for a path (never following a final symlink).
pub fn read_path(path: &Path, xname: &str) -> io::Result<Option<OverrideStat>> {
    read(path, xname, false)
}

fn read(path: &Path, xname: &str, deref: bool) -> io::Result<Option<OverrideStat>> {
    let v = if deref { xattr::get_deref(path, xname) } else { xattr::get(path, xname) };
    let v = match v {
        Ok(v) => v,
        // No xattr support, or a symlink's `user.*` (never set): nothing recorded.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP | libc::EPERM | libc::ENODATA)) => None,
        Err(e) => return Err(e),
    };
    Ok(v.and_then(|v| match OverrideStat::parse(&v) {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::warn!("{}: {e}; shown as it is on disk", path.display());
            None
        }
    }))
}

/// The recorded stat of a path under either name ([`XATTR`] first), for the offline tools that
/// read an upper directory fuse-overlayfs or strata wrote (commit).
pub fn read_any(path: &Path) -> io::Result<Option<OverrideStat>> {
    for n in NAMES {
        if let Some(o) = read_path(path, n)? {
            return Ok(Some(o));
        }
    }
    Ok(None)
}

/// Applies a recorded stat to the one from disk: owner, permissions and, for a non-directory,
/// the type and device number. A directory stays a directory and a non-directory never becomes
/// one, whatever the value says: the tree's shape is the disk's.
pub fn apply(st: &mut FileStat, o: &OverrideStat) {
    let disk_kind = st.st_mode & libc::S_IFMT;
    let mut kind = o.file_type.map_or(disk_kind, FileType::s_ifmt);
    if (kind == libc::S_IFDIR) != (disk_kind == libc::S_IFDIR) {
        kind = disk_kind;
    }
    (st.st_uid, st.st_gid) = (o.uid, o.gid);
    st.st_mode = kind | (o.mode & 0o7777);
    if kind != disk_kind {
        st.st_rdev = o.file_type.map_or(0, FileType::rdev);
        st.st_size = 0;
        st.st_blocks = 0;
    }
}

/// The value that records `st` as it is: owner, permissions, type; to be changed and written
/// when a chown or chmod can't be made for real.
pub fn of_stat(st: &FileStat) -> OverrideStat {
    let file_type = match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Dir,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::Pipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR | libc::S_IFBLK => {
            let (major, minor) = (nix::sys::stat::major(st.st_rdev), nix::sys::stat::minor(st.st_rdev));
            if st.st_mode & libc::S_IFMT == libc::S_IFCHR {
                FileType::Char { major, minor }
            } else {
                FileType::Block { major, minor }
            }
        }
        _ => FileType::File,
    };
    OverrideStat { uid: st.st_uid, gid: st.st_gid, mode: st.st_mode & 0o7777, file_type: Some(file_type) }
}

/// Writes `o` on `name` in the open directory `dir` (a regular file or directory; "" is `dir`
/// itself) under the xattr `xname`.
pub fn write_at(dir: BorrowedFd<'_>, name: &OsStr, xname: &str, o: &OverrideStat) -> io::Result<()> {
    let p = fd_path(dir, name);
    if name.is_empty() || name == "." {
        xattr::set_deref(p, xname, o.format().as_bytes())
    } else {
        xattr::set(p, xname, o.format().as_bytes())
    }
}

/// chown (and chmod, unless a symlink) of `path`; where an unprivileged process may not chown
/// it (EPERM, or EINVAL for an id its namespace does not map), the mode is set and the owner
/// recorded in [`XATTR`] instead. A symlink can't carry it: its owner is left to the layer
/// root's (see [`Marker::symlink_owner`]). `Ok(true)` when something was recorded.
pub fn chown_or_record(path: &Path, uid: u32, gid: u32, mode: u32) -> io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        Ok(()) => {}
        Err(e)
            if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL))
                && !crate::sys::userns::privileged() =>
        {
            let st = nix::sys::stat::lstat(path)?;
            if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                return Ok(false);
            }
            let o = OverrideStat { uid, gid, mode: mode & 0o7777, ..of_stat(&st) };
            xattr::set(path, XATTR, o.format().as_bytes())?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))?;
            return Ok(true);
        }
        Err(e) => return Err(e),
    }
    if !std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    Ok(false)
}

/// Gives every regular file and directory below the open layer root `root` that has no value
/// one recording it as it is on disk (symlinks and special files can't carry one). A layer is
/// marked as a whole: fuse-overlayfs (1.10) answers ENODATA for a file of a marked layer that
/// lacks the xattr, as containers/storage never writes such a layer. Whiteout files are left
/// as they are. Returns how many were written.
pub fn record_missing(root: &File) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let mut written = 0;
    let mut dirs = vec![fd_path(std::os::fd::AsFd::as_fd(root), OsStr::new(""))];
    while let Some(dir) = dirs.pop() {
        for ent in std::fs::read_dir(&dir)? {
            let ent = ent?;
            let ft = ent.file_type()?;
            if !(ft.is_file() || ft.is_dir()) || ent.file_name().as_bytes().starts_with(b".wh.") {
                continue;
            }
            let path = ent.path();
            if ft.is_dir() {
                dirs.push(path.clone());
            }
            if read_any(&path)?.is_some() {
                continue;
            }
            let st = nix::sys::stat::lstat(&path)?;
            let value = of_stat(&st).format();
            match xattr::set(&path, XATTR, value.as_bytes()) {
                // A read-only file or directory of our own: writable for the moment of the write.
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                    let mode = st.st_mode & 0o7777;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o200))?;
                    let r = xattr::set(&path, XATTR, value.as_bytes());
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
                    r?;
                }
                r => r?,
            }
            written += 1;
        }
    }
    Ok(written)
}

/// `/proc/self/fd/N/NAME`: the `l*xattr` calls have no `*at` form.
fn fd_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if !name.is_empty() && name != "." {
        p.push(name);
    }
    p
}

fn parse_type(t: &str) -> Option<FileType> {
    // Prefix matches and ignored extra device fields: what containers/storage accepts.
    Some(if t.starts_with("file") {
        FileType::File
    } else if t.starts_with("dir") {
        FileType::Dir
    } else if t.starts_with("symlink") {
        FileType::Symlink
    } else if t.starts_with("pipe") {
        FileType::Pipe
    } else if t.starts_with("socket") {
        FileType::Socket
    } else if t.starts_with("block") || t.starts_with("char") {
        let mut parts = t.split('-');
        let kind = parts.next()?;
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        match kind {
            "block" => FileType::Block { major, minor },
            "char" => FileType::Char { major, minor },
            _ => return None,
        }
    } else {
        return None;
    })
}

/// The recorded stat of an open file or directory, if it has one.
pub fn read_file(file: &File) -> std::io::Result<Option<OverrideStat>> {
    match file.get_xattr(XATTR)? {
        None => Ok(None),
        Some(v) => OverrideStat::parse(&v)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
    }
}

/// Records `stat` on an open regular file or directory (the kernel allows `user.*` xattrs on
/// nothing else: symlinks, FIFOs, sockets and devices can't carry one).
pub fn write_file(file: &File, stat: &OverrideStat) -> std::io::Result<()> {
    file.set_xattr(XATTR, stat.format().as_bytes())
}

/// Records the owner, mode and type an unpacked entry should have on `file`, which the caller
/// could not give it (see `extract`); `Ok(true)` once written.
pub fn record(file: &File, uid: u64, gid: u64, mode: u32, file_type: FileType) -> anyhow::Result<bool> {
    use anyhow::Context;
    let stat = OverrideStat {
        uid: u32::try_from(uid).context("uid out of range")?,
        gid: u32::try_from(gid).context("gid out of range")?,
        mode: mode & 0o7777,
        file_type: Some(file_type),
    };
    write_file(file, &stat)
        .with_context(|| format!("setting xattr {XATTR} (the filesystem must support user xattrs)"))?;
    Ok(true)
}

/// fuse-overlayfs applies a layer's override xattrs only if the layer's root directory has one:
/// gives the root one (its own owner and mode) unless it has it already.
pub fn mark_layer_root(root: &File, uid: u64, gid: u64, mode: u32) -> anyhow::Result<()> {
    if read_file(root).ok().flatten().is_none() {
        record(root, uid, gid, mode, FileType::Dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(uid: u32, gid: u32, mode: u32, file_type: Option<FileType>) -> OverrideStat {
        OverrideStat { uid, gid, mode, file_type }
    }

    #[test]
    fn formats_as_containers_storage_does() {
        assert_eq!(st(0, 0, 0o755, Some(FileType::Dir)).format(), "0:0:0755:dir");
        assert_eq!(st(1000, 50, 0o4755, Some(FileType::File)).format(), "1000:50:4755:file");
        assert_eq!(st(0, 0, 0o777, Some(FileType::Symlink)).format(), "0:0:0777:symlink");
        assert_eq!(st(0, 0, 0o644, Some(FileType::Pipe)).format(), "0:0:0644:pipe");
        assert_eq!(st(0, 0, 0o755, Some(FileType::Socket)).format(), "0:0:0755:socket");
        assert_eq!(
            st(0, 6, 0o660, Some(FileType::Block { major: 8, minor: 0 })).format(),
            "0:6:0660:block-8-0"
        );
        assert_eq!(
            st(0, 5, 0o620, Some(FileType::Char { major: 136, minor: 3 })).format(),
            "0:5:0620:char-136-3"
        );
        assert_eq!(st(7, 7, 0o1777, None).format(), "7:7:1777");
        assert_eq!(st(0, 0, 0, Some(FileType::File)).format(), "0:0:0000:file");
    }

    #[test]
    fn parses_what_it_formats() {
        for s in [
            st(0, 0, 0o755, Some(FileType::Dir)),
            st(4294967294, 65534, 0o6755, Some(FileType::File)),
            st(0, 0, 0o600, Some(FileType::Char { major: 1, minor: 3 })),
            st(0, 0, 0o600, Some(FileType::Block { major: 259, minor: 1048575 })),
            st(1, 2, 0o640, None),
        ] {
            assert_eq!(OverrideStat::parse(s.format().as_bytes()), Ok(s), "{}", s.format());
        }
    }

    #[test]
    fn reads_old_and_forward_compatible_values() {
        // fuse-overlayfs before types: "%d:%d:%o", no zero padding.
        assert_eq!(OverrideStat::parse(b"0:0:755"), Ok(st(0, 0, 0o755, None)));
        // A C writer's trailing NUL.
        assert_eq!(OverrideStat::parse(b"0:0:0644:file\0"), Ok(st(0, 0, 0o644, Some(FileType::File))));
        // Extra device fields are ignored, as containers/storage does.
        assert_eq!(
            OverrideStat::parse(b"0:0:0600:char-1-3-extra"),
            Ok(st(0, 0, 0o600, Some(FileType::Char { major: 1, minor: 3 })))
        );
        // Bits above 0o7777 are dropped.
        assert_eq!(OverrideStat::parse(b"0:0:100644:file"), Ok(st(0, 0, 0o644, Some(FileType::File))));
    }

    #[test]
    fn rejects_malformed_values_with_the_reason() {
        for (raw, want) in [
            (&b""[..], "is not UID:GID:MODE"),
            (b"0:0", "is not UID:GID:MODE"),
            (b"x:0:0644", "bad uid"),
            (b"0:-1:0644", "bad gid"),
            (b"0:0:0648", "bad mode"),
            (b"0:0:0644:fifo", "unknown file type"),
            (b"0:0:0644:block-8", "unknown file type"),
            (b"0:0:0644:char-a-1", "unknown file type"),
            (b"4294967296:0:0644", "bad uid"),
        ] {
            let err = OverrideStat::parse(raw).expect_err(&String::from_utf8_lossy(raw)).to_string();
            assert!(err.contains(want), "{raw:?}: {err}");
            assert!(err.contains(XATTR), "{err}");
        }
    }

    #[test]
    fn st_mode_takes_the_recorded_type() {
        let dev = st(0, 0, 0o660, Some(FileType::Char { major: 1, minor: 3 }));
        assert_eq!(dev.st_mode(libc::S_IFREG | 0o600), libc::S_IFCHR | 0o660);
        assert_eq!(dev.file_type.unwrap().rdev(), libc::makedev(1, 3));
        let old = st(0, 0, 0o4755, None);
        assert_eq!(old.st_mode(libc::S_IFREG | 0o755), libc::S_IFREG | 0o4755);
    }

    fn disk(mode: u32, uid: u32) -> FileStat {
        let mut st = any_stat();
        st.st_mode = mode;
        st.st_uid = uid;
        st.st_gid = uid;
        st.st_size = 9;
        st
    }

    fn any_stat() -> FileStat {
        let f = std::fs::File::open("/").unwrap();
        let mut st = nix::sys::stat::fstat(&f).unwrap();
        (st.st_mode, st.st_uid, st.st_gid, st.st_rdev, st.st_size) = (0, 0, 0, 0, 0);
        st
    }

    #[test]
    fn applied_values_never_change_the_tree_shape() {
        let mut dev = disk(libc::S_IFREG | 0o600, 1000);
        apply(&mut dev, &st(0, 5, 0o620, Some(FileType::Char { major: 136, minor: 3 })));
        assert_eq!((dev.st_mode, dev.st_uid, dev.st_gid), (libc::S_IFCHR | 0o620, 0, 5));
        assert_eq!((dev.st_rdev, dev.st_size), (libc::makedev(136, 3), 0));
        // A directory stays one, a file never becomes one.
        let mut d = disk(libc::S_IFDIR | 0o755, 1000);
        apply(&mut d, &st(0, 0, 0o700, Some(FileType::File)));
        assert_eq!(d.st_mode, libc::S_IFDIR | 0o700);
        let mut f = disk(libc::S_IFREG | 0o644, 1000);
        apply(&mut f, &st(0, 0, 0o755, Some(FileType::Dir)));
        assert_eq!(f.st_mode, libc::S_IFREG | 0o755);
        // What is recorded round-trips through of_stat.
        assert_eq!(of_stat(&dev), st(0, 5, 0o620, Some(FileType::Char { major: 136, minor: 3 })));
    }

    #[test]
    fn a_symlink_of_the_layer_writer_takes_the_root_owner() {
        let m = Marker { xattr: XATTR, disk_owner: (1000, 1000), recorded_owner: (0, 0) };
        let mut link = disk(libc::S_IFLNK | 0o777, 1000);
        present(&mut link, &m, None);
        assert_eq!((link.st_uid, link.st_gid), (0, 0));
        let mut other = disk(libc::S_IFLNK | 0o777, 7);
        present(&mut other, &m, None);
        assert_eq!(other.st_uid, 7);
        // A file without a value stays as it is on disk.
        let mut file = disk(libc::S_IFREG | 0o644, 1000);
        present(&mut file, &m, None);
        assert_eq!(file.st_uid, 1000);
    }

    #[test]
    fn round_trips_through_a_real_xattr() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("f")).unwrap();
        assert_eq!(read_file(&f).unwrap(), None);
        let s = st(0, 0, 0o4755, Some(FileType::File));
        write_file(&f, &s).unwrap();
        assert_eq!(xattr::get(dir.path().join("f"), XATTR).unwrap().unwrap(), b"0:0:4755:file");
        assert_eq!(read_file(&f).unwrap(), Some(s));
    }
}

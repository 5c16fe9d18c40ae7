//! lstat results as FUSE attributes, and chown/chmod of an upper file: for real, or recorded in
//! the override xattr (`layer::override_stat`) where an unprivileged daemon can't make them.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{FchmodatFlags, FileStat, Mode, fchmodat};
use nix::unistd::{Gid, Uid, fchownat};

use super::filesystem::{R, StrataFs, errno};
use crate::layer::override_stat::{self, OverrideStat};
use crate::sys::userns::IdMaps;
use crate::union::layer::stat_at;

/// The user namespace a rootless mount daemon serves from (`MountOptions::namespace_frame`): it
/// sees files with namespace ids, the kernel speaks the ids outside it, since fusermount3 made
/// the mount there. Unset, ids pass as they are.
static FRAME: std::sync::OnceLock<IdMaps> = std::sync::OnceLock::new();

/// Sets the namespace this daemon serves from (once, when it enters it).
pub fn set_frame(maps: IdMaps) {
    let _ = FRAME.set(maps);
}

/// A uid and gid seen in the namespace as the kernel outside knows them; unmapped ones (none can
/// be: the namespace sees them as the overflow id) pass as they are.
pub(crate) fn host_ids(uid: u32, gid: u32) -> (u32, u32) {
    match FRAME.get() {
        Some(m) => (m.uid_to_host(uid).unwrap_or(uid), m.gid_to_host(gid).unwrap_or(gid)),
        None => (uid, gid),
    }
}

/// A uid and gid the kernel sent (a caller, a chown) as the namespace knows them.
pub(crate) fn ns_ids(uid: u32, gid: u32) -> (u32, u32) {
    match FRAME.get() {
        Some(m) => (m.uid_from_host(uid).unwrap_or(uid), m.gid_from_host(gid).unwrap_or(gid)),
        None => (uid, gid),
    }
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    let nsec = nsec.clamp(0, 999_999_999) as u32;
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::new(sec.unsigned_abs(), 0) + Duration::new(0, nsec)
    }
}

/// FUSE file type of a mode.
pub fn kind(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

/// Builds the attributes reported for `st` under the st_ino `ino`. A directory merged from
/// several layers reports st_nlink 1 ("unknown", as overlayfs does).
pub fn to_attr(st: &FileStat, ino: u64, merged_dir: bool) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: st.st_size.max(0) as u64,
        blocks: st.st_blocks.max(0) as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: kind(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: if merged_dir { 1 } else { st.st_nlink.min(u32::MAX as u64) as u32 },
        uid: host_ids(st.st_uid, st.st_gid).0,
        gid: host_ids(st.st_uid, st.st_gid).1,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize.clamp(512, 1 << 20) as u32,
        flags: 0,
    }
}

/// Attributes of which the kernel reads only the inode number: those sent with "." and ".." in
/// readdirplus (it skips the two names) and a negative entry's (node id 0).
pub fn id_only_attr(ino: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::Directory,
        perm: 0o755,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl StrataFs {
    /// chown and chmod of `name` in the upper directory `dir` (already copied up). A file that
    /// carries an override xattr has its recorded owner and mode changed, the file on disk stays
    /// as it is; a chown the daemon may not make (EPERM: an unprivileged daemon, an owner other
    /// than its own, an id the namespace does not map) is recorded the same way, as fuse-overlayfs
    /// does. Ids come in as the kernel sends them ([`ns_ids`]).
    pub(crate) fn chown_chmod(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        is_link: bool,
        uid: Option<u32>,
        gid: Option<u32>,
        mode: Option<u32>,
    ) -> R<()> {
        if uid.is_none() && gid.is_none() && mode.is_none() {
            return Ok(());
        }
        let (u, g) = ns_ids(uid.unwrap_or(0), gid.unwrap_or(0));
        let (uid, gid) = (uid.map(|_| u), gid.map(|_| g));
        let upper = self.stack.layers().first().ok_or(Errno::EROFS)?;
        let recorded = match upper.overrides() {
            Some(m) if !is_link => override_stat::read_at(dir, name, m.xattr).map_err(errno)?,
            _ => None,
        };
        if let Some(o) = recorded {
            return self.record(dir, name, o, uid, gid, mode);
        }
        if uid.is_some() || gid.is_some() {
            let r = fchownat(
                dir,
                name,
                uid.map(Uid::from_raw),
                gid.map(Gid::from_raw),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            );
            match r {
                // EINVAL: an id the namespace does not map.
                Err(Errno::EPERM | Errno::EINVAL) if !is_link && !crate::sys::userns::privileged() => {
                    let st = stat_at(dir, name).map_err(errno)?.ok_or(Errno::ENOENT)?;
                    upper.mark_overrides().map_err(errno)?;
                    return self.record(dir, name, override_stat::of_stat(&st), uid, gid, mode);
                }
                r => r?,
            }
        }
        if let Some(m) = mode {
            if is_link {
                return Err(Errno::EOPNOTSUPP);
            }
            // `name` is not a symlink, so following it is following nothing.
            fchmodat(dir, name, Mode::from_bits_truncate(m & 0o7777), FchmodatFlags::FollowSymlink)?;
        }
        Ok(())
    }

    /// In an upper whose files carry override xattrs, gives the new or copied-up regular file or
    /// directory `path` one recording it as it is, unless it has one: fuse-overlayfs (1.10)
    /// refuses a file of a marked layer without it (`override_stat::record_missing`). `made`:
    /// the stat of a regular file the caller just created (so it has no xattr yet).
    pub(crate) fn record_new(&self, path: &std::path::Path, made: Option<&FileStat>) -> R<()> {
        let Some(marker) = self.stack.layers().first().and_then(|l| l.overrides()) else { return Ok(()) };
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return Ok(()) };
        let dir = self.stack.dir_fd(0, parent).map_err(errno)?;
        let st = match made {
            Some(st) => *st,
            None => {
                let Some(st) = stat_at(dir.as_fd(), name).map_err(errno)? else { return Ok(()) };
                if !matches!(st.st_mode & libc::S_IFMT, libc::S_IFREG | libc::S_IFDIR)
                    || override_stat::read_at(dir.as_fd(), name, marker.xattr).map_err(errno)?.is_some()
                {
                    return Ok(());
                }
                st
            }
        };
        override_stat::write_at(dir.as_fd(), name, marker.xattr, &override_stat::of_stat(&st)).map_err(errno)
    }

    /// Writes `o` with the requested changes on `name` (the upper's override xattr).
    fn record(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        mut o: OverrideStat,
        uid: Option<u32>,
        gid: Option<u32>,
        mode: Option<u32>,
    ) -> R<()> {
        if let Some(u) = uid {
            o.uid = u;
        }
        if let Some(g) = gid {
            o.gid = g;
        }
        if let Some(m) = mode {
            o.mode = m & 0o7777;
        }
        let xname =
            self.stack.layers().first().and_then(|l| l.overrides()).map_or(override_stat::XATTR, |m| m.xattr);
        override_stat::write_at(dir, name, xname, &o).map_err(errno)
    }
}

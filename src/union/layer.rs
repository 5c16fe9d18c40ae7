//! One layer root, and confined access to the files below it.
//!
//! Every directory is a [`SafeFd`], reached with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! from the layer root or from its parent's `SafeFd` (see [`crate::sys::safefd`]), and the last
//! component is reached with `*at` calls and `AT_SYMLINK_NOFOLLOW`, so no access ever follows a
//! symlink, inside or out of the layer, and no path is limited by PATH_MAX.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode, fstat, fstatat};

pub use crate::sys::safefd::SafeFd;

use super::layer_names::LayerNames;
use crate::layer::override_stat;
use crate::layer::whiteout::{IMPLICIT_DIR_XATTRS, OPAQUE_MARKER, OVERLAY_OPAQUE_XATTRS, is_opaque_value};

/// A layer directory, opened once.
#[derive(Debug)]
pub struct Layer {
    path: PathBuf,
    root: SafeFd,
    dev: u64,
    /// Set when this layer's files may carry override xattrs (its root is marked).
    overrides: std::sync::OnceLock<override_stat::Marker>,
    /// The root's stat at open (what a record of the layer must have been made from).
    root_stat: FileStat,
    /// Whether a record of the layer's directories may be looked for (never for an upper).
    recorded: bool,
    /// The layer's record (`union::layer_names`), read at its first use.
    names: std::sync::OnceLock<Option<std::sync::Arc<LayerNames>>>,
}

impl Layer {
    /// Opens the directory `path` as a layer root.
    pub fn open(path: &Path) -> io::Result<Layer> {
        let root = SafeFd::root(path)?;
        let st = fstat(&root)?;
        let overrides = std::sync::OnceLock::new();
        if let Some(marker) = override_stat::layer_marker(root.as_fd())? {
            let _ = overrides.set(marker);
        }
        Ok(Layer {
            path: path.to_path_buf(),
            root,
            dev: st.st_dev,
            overrides,
            root_stat: st,
            recorded: true,
            names: std::sync::OnceLock::new(),
        })
    }

    /// Opens the directory `path` as a writable layer: it changes, so no record of it is used.
    pub fn open_writable(path: &Path) -> io::Result<Layer> {
        Ok(Layer { recorded: false, ..Layer::open(path)? })
    }

    /// The record of this layer's directories (`union::layer_names`), read once at the first
    /// call; `None` for a writable layer or one stored without a usable record.
    pub fn names(&self) -> Option<&LayerNames> {
        self.names
            .get_or_init(|| {
                if !self.recorded {
                    return None;
                }
                let names = LayerNames::load(&self.path, &self.root_stat)?;
                tracing::debug!(dirs = names.dirs(), "layer record of {}", self.path.display());
                Some(std::sync::Arc::new(names))
            })
            .as_deref()
    }

    /// How this layer's files record what they can't be (`layer::override_stat`), if they do.
    pub fn overrides(&self) -> Option<&override_stat::Marker> {
        self.overrides.get()
    }

    /// Marks the layer root as one whose files carry override xattrs (a rootless chown recorded
    /// one, or copy-up brought some up from below): readers, fuse-overlayfs too, look at them.
    pub fn mark_overrides(&self) -> io::Result<()> {
        if self.overrides().is_none() {
            let st = fstat(&self.root)?;
            let o = override_stat::of_stat(&st);
            override_stat::write_at(self.root.as_fd(), OsStr::new(""), override_stat::XATTR, &o)?;
            let _ = self.overrides.set(override_stat::Marker {
                xattr: override_stat::XATTR,
                disk_owner: (st.st_uid, st.st_gid),
                recorded_owner: (o.uid, o.gid),
            });
        }
        Ok(())
    }

    /// The directory this layer was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// st_dev of the layer root.
    pub fn dev(&self) -> u64 {
        self.dev
    }

    /// The root directory fd.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The root directory as a [`SafeFd`].
    pub fn root_dir(&self) -> &SafeFd {
        &self.root
    }

    /// Opens `rel` (relative to the layer root, "" = root) with `flags`, confined to the layer
    /// (any length: walked in pieces below PATH_MAX).
    pub fn open_at(&self, rel: &Path, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
        self.root.open_beneath(rel, flags, mode)
    }

    /// Opens the directory `rel` for reading and *at calls.
    pub fn open_dir(&self, rel: &Path) -> io::Result<SafeFd> {
        self.root.dir_beneath(rel)
    }
}

/// lstat of `name` in the directory `dir`; `None` when it does not exist.
pub fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<FileStat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A path naming `name` inside the directory open as `dir`, for the `l*xattr` calls that have
/// no `*at` form: `/proc/self/fd/N/NAME`. The fd is followed (it is the directory itself),
/// the last component never is.
pub fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if !name.is_empty() && name.as_bytes() != b"." {
        p.push(name);
    }
    p
}

/// An open file whose xattrs are read through its descriptor (`fgetxattr`): no path to
/// resolve, unlike the `/proc/self/fd/N` path the `l*xattr` calls need (three times the cost,
/// paid per layer of every merged directory a lookup finds).
struct ByFd<'a>(BorrowedFd<'a>);

impl AsRawFd for ByFd<'_> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

impl xattr::FileExt for ByFd<'_> {}

/// Whether the open directory `dir` is opaque in its layer (OCI marker or overlay xattr).
pub fn is_opaque_dir(dir: BorrowedFd<'_>) -> io::Result<bool> {
    use xattr::FileExt;
    if stat_at(dir, OsStr::new(OPAQUE_MARKER))?.is_some() {
        return Ok(true);
    }
    // One listxattr, and a getxattr only for a marker it names (most directories have none).
    let Ok(names) = ByFd(dir).list_xattr() else { return Ok(false) };
    for name in names.filter(|n| OVERLAY_OPAQUE_XATTRS.iter().any(|o| n == o)) {
        match ByFd(dir).get_xattr(&name) {
            Ok(Some(v)) if is_opaque_value(&v) => return Ok(true),
            Ok(_) => {}
            // No xattr support, or no permission to read trusted.*: not opaque.
            Err(_) => {}
        }
    }
    Ok(false)
}

/// What a layer's copy of a merged directory says about the merge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirMarks {
    /// It hides the same directory's children below (OCI marker or overlay xattr).
    pub opaque: bool,
    /// Unpack made it up: its attributes come from below.
    pub implicit: bool,
}

/// The [`DirMarks`] of the open directory `dir`, given whether its listing showed the OCI
/// opaque marker: one `flistxattr` for both xattr marks (and a getxattr only for an overlay
/// opaque xattr it names).
pub fn dir_marks(dir: BorrowedFd<'_>, marker_listed: bool) -> DirMarks {
    use xattr::FileExt;
    let Ok(names) = ByFd(dir).list_xattr() else {
        return DirMarks { opaque: marker_listed, implicit: false };
    };
    let mut marks = DirMarks { opaque: marker_listed, implicit: false };
    for name in names {
        if IMPLICIT_DIR_XATTRS.iter().any(|i| name == *i) {
            marks.implicit = true;
        } else if !marks.opaque
            && OVERLAY_OPAQUE_XATTRS.iter().any(|o| name == *o)
            && matches!(ByFd(dir).get_xattr(&name), Ok(Some(v)) if is_opaque_value(&v))
        {
            marks.opaque = true;
        }
    }
    marks
}

/// A directory unpack created with no tar entry for it: its attributes come from below.
pub fn is_implicit_dir(dir: BorrowedFd<'_>) -> io::Result<bool> {
    use xattr::FileExt;
    let Ok(mut names) = ByFd(dir).list_xattr() else { return Ok(false) };
    Ok(names.any(|n| IMPLICIT_DIR_XATTRS.iter().any(|i| n == *i)))
}

/// File type bits of a stat.
pub fn file_type(st: &FileStat) -> u32 {
    st.st_mode & libc::S_IFMT
}

/// True for a directory.
pub fn is_dir(st: &FileStat) -> bool {
    file_type(st) == libc::S_IFDIR
}

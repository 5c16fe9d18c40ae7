//! Writing the upper layer: whiteouts, opaque directories, new names.
//!
//! Whiteouts are OCI `.wh.` files, so a rootless user can write them and a commit is a plain
//! tar of the upper. overlayfs-style whiteouts found in a user-supplied upper are replaced.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, unlinkat};

use super::filesystem::{R, StrataFs, errno};
use crate::layer::whiteout::{
    NAME_MAX, OPAQUE_MARKER, WhiteoutForm, is_overlay_whiteout_stat, is_reserved, whiteout_form,
};
use crate::union::Entry;
use crate::union::layer::{SafeFd, stat_at};

/// The work-dir file every `.wh.` whiteout of the upper is a hard link of (a `strata-` name:
/// a mount starts with a fresh one, like any leftover of the work dir).
const SHARED_WHITEOUT: &str = "strata-whiteout";

/// A child of an upper directory: its name and its type as readdir reports it.
pub(crate) type UpperChild = (OsString, Option<Type>);

/// Opens the upper directory `parent/name` and lists it (without `.` and `..`): the directory fd
/// (for `*at` calls on the children) and each child's name and type as readdir reports it.
pub(crate) fn read_upper_dir(parent: &SafeFd, name: &OsStr) -> R<(SafeFd, Vec<UpperChild>)> {
    let dfd = parent.dir_beneath(Path::new(name)).map_err(errno)?;
    let mut d = Dir::from_fd(dfd.reopen().map_err(errno)?.into_owned())?;
    let mut out = Vec::new();
    for ent in d.iter() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push((OsStr::from_bytes(n).to_os_string(), ent.file_type()));
        }
    }
    Ok((dfd, out))
}

/// Creates the empty marker file `name` in `dir` (a whiteout or the opaque marker); an existing
/// one is kept.
fn touch(dir: BorrowedFd<'_>, name: &OsStr) -> R<()> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    nix::fcntl::openat(dir, name, flags, Mode::empty()).map(drop)
}

/// Who asked: the caller's uid and gid.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    /// uid
    pub uid: u32,
    /// gid
    pub gid: u32,
}

impl StrataFs {
    /// Refuses names that can't exist in a merged view.
    pub(crate) fn check_name(name: &OsStr) -> R<()> {
        if is_reserved(name) {
            return Err(Errno::EINVAL);
        }
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if name.is_empty() || name == "." || name == ".." || name.as_encoded_bytes().contains(&b'/') {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// Copies up the directory `dir` and returns its upper entry and fd.
    pub(crate) fn writable_dir(&self, dir: &Entry) -> R<(Entry, Arc<SafeFd>)> {
        if !dir.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let up = self.copy_up(dir)?;
        let fd = self.stack.dir_fd(0, &up.path).map_err(errno)?;
        Ok((up, fd))
    }

    /// Whether the directory `dir` is in the upper alone (new, or opaque): no lower name shows
    /// through it, so nothing in it needs a whiteout or a lower lookup.
    pub(crate) fn upper_only(&self, dir: &Entry) -> bool {
        self.stack.has_upper() && dir.layers.iter().all(|&l| l == 0)
    }

    /// What the lower layers show at `name` in the upper directory `dir`.
    pub(crate) fn lower_entry(&self, dir: &Entry, name: &OsStr) -> R<Option<Entry>> {
        let lower: &[usize] = match dir.layers.split_first() {
            Some((0, rest)) if self.stack.has_upper() => rest,
            _ => &dir.layers,
        };
        self.stack.lookup_child_in(dir, name, lower).map_err(errno)
    }

    /// Writes the whiteout of `name` in the upper directory `dir`. `.wh.NAME` is a hard link to
    /// one shared empty file in the work dir, as kernel overlayfs does, so deleting a tree
    /// allocates no inode per name (on ext4 that is most of the cost of `rm -rf`). A name too
    /// long for the `.wh.` prefix gets the overlayfs form, a char device 0/0 at NAME
    /// ([`whiteout_form`]).
    pub(crate) fn write_whiteout(&self, dir: &Path, name: &OsStr) -> R<()> {
        let fd = self.stack.dir_fd(0, dir).map_err(errno)?;
        let wh = match whiteout_form(name) {
            WhiteoutForm::File(wh) => wh,
            WhiteoutForm::Device => {
                return nix::sys::stat::mknodat(
                    fd.as_fd(),
                    name,
                    nix::sys::stat::SFlag::S_IFCHR,
                    Mode::empty(),
                    0,
                );
            }
        };
        self.link_whiteout(&fd, &wh).or_else(|e| {
            tracing::debug!("no shared whiteout ({e}): creating {wh:?}");
            touch(fd.as_fd(), &wh)
        })
    }

    /// Whether the whiteout of `name` is an overlay 0/0 device at `name` itself (the `.wh.`
    /// form would be longer than NAME_MAX).
    pub(crate) fn whiteout_takes_the_name(&self, name: &OsStr) -> bool {
        matches!(whiteout_form(name), WhiteoutForm::Device)
    }

    /// Replaces the upper entry `name` of `dirfd` by its 0/0 whiteout in one step: the device
    /// is made in the work dir and exchanged with the entry (RENAME_EXCHANGE), then the old
    /// entry is removed from the work dir (a crash leaves it there, for the next mount's
    /// clean-up).
    pub(crate) fn swap_in_whiteout(&self, dirfd: &SafeFd, name: &OsStr, dir: bool) -> R<()> {
        let work = self.work.as_ref().ok_or(Errno::EROFS)?;
        let tmp = self.temp_name();
        nix::sys::stat::mknodat(
            work.as_fd(),
            tmp.as_os_str(),
            nix::sys::stat::SFlag::S_IFCHR,
            Mode::empty(),
            0,
        )?;
        if let Err(e) = nix::fcntl::renameat2(
            work.as_fd(),
            tmp.as_os_str(),
            dirfd.as_fd(),
            name,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        ) {
            let _ = unlinkat(work.as_fd(), tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        if dir {
            let wfd =
                SafeFd::root(Path::new(&format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(work))))
                    .map_err(errno)?;
            super::remove::clear_dir(&wfd, &tmp)?;
            unlinkat(work.as_fd(), tmp.as_os_str(), UnlinkatFlags::RemoveDir)
        } else {
            unlinkat(work.as_fd(), tmp.as_os_str(), UnlinkatFlags::NoRemoveDir)
        }
    }

    /// Links the shared whiteout as `wh` in `dirfd`, making a new shared file when there is
    /// none yet or the old one has all the links the filesystem allows.
    fn link_whiteout(&self, dirfd: &SafeFd, wh: &OsStr) -> R<()> {
        let work = self.work.as_ref().ok_or(Errno::EROFS)?;
        for _ in 0..3 {
            let linked = linkat(work.as_fd(), SHARED_WHITEOUT, dirfd.as_fd(), wh, AtFlags::empty());
            match linked {
                Ok(()) | Err(Errno::EEXIST) => return Ok(()),
                Err(Errno::ENOENT) => {}
                Err(Errno::EMLINK) => {
                    match unlinkat(work.as_fd(), SHARED_WHITEOUT, UnlinkatFlags::NoRemoveDir) {
                        Ok(()) | Err(Errno::ENOENT) => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
            touch(work.as_fd(), OsStr::new(SHARED_WHITEOUT))?;
        }
        Err(Errno::EMLINK)
    }

    /// Removes `.wh.NAME` from the upper directory `dir`, if there. A whiteout in the device
    /// form sits at NAME itself: whoever puts something there clears it first
    /// ([`Self::clear_overlay_whiteout`]), so there is nothing left to remove.
    pub(crate) fn remove_whiteout(&self, dir: &Path, name: &OsStr) -> R<bool> {
        let WhiteoutForm::File(wh) = whiteout_form(name) else { return Ok(false) };
        let fd = self.stack.dir_fd(0, dir).map_err(errno)?;
        match unlinkat(fd.as_fd(), wh.as_os_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes an overlayfs whiteout (char device 0/0) occupying `name` in the upper dir;
    /// whether there was one.
    pub(crate) fn clear_overlay_whiteout(&self, dirfd: &SafeFd, name: &OsStr) -> R<bool> {
        match stat_at(dirfd.as_fd(), name).map_err(errno)? {
            Some(st) if is_overlay_whiteout_stat(&st) => {
                unlinkat(dirfd.as_fd(), name, UnlinkatFlags::NoRemoveDir)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Moves the entry `name` of `from` to `to_name` of `to` when a 0/0 whiteout (a deleted
    /// lower name too long for `.wh.`) sits there: the two swap places in one step
    /// (RENAME_EXCHANGE), so the lower name never shows in between, as it would if the whiteout
    /// were removed first (a directory can't replace a device in a plain rename). The device left
    /// at the old name then goes, unless `keep` (it is the old name's own whiteout). Returns
    /// false, having done nothing, when no such whiteout is there.
    pub(crate) fn move_onto_overlay_whiteout(
        &self,
        from: &SafeFd,
        name: &OsStr,
        to: &SafeFd,
        to_name: &OsStr,
        keep: bool,
    ) -> R<bool> {
        match stat_at(to.as_fd(), to_name).map_err(errno)? {
            Some(st) if is_overlay_whiteout_stat(&st) => {}
            _ => return Ok(false),
        }
        let exchanged = nix::fcntl::renameat2(
            from.as_fd(),
            name,
            to.as_fd(),
            to_name,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        );
        match exchanged {
            Ok(()) => {}
            Err(Errno::EINVAL) => {
                // No RENAME_EXCHANGE on this filesystem: the whiteout goes first after all.
                self.clear_overlay_whiteout(to, to_name)?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        if !keep {
            match unlinkat(from.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Marks the upper directory `dir` opaque.
    pub(crate) fn make_opaque(&self, dir: &Path) -> R<()> {
        let fd = self.stack.dir_fd(0, dir).map_err(errno)?;
        touch(fd.as_fd(), OsStr::new(OPAQUE_MARKER))
    }

    /// Gives a new upper entry its owner: the caller, with the group of a setgid parent.
    pub(crate) fn set_owner(&self, dirfd: &SafeFd, parent: &Entry, name: &OsStr, who: Caller) -> R<()> {
        let (uid, gid) = new_owner(parent, who);
        super::copyup::tolerate_eperm(fchownat(
            dirfd.as_fd(),
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ))
    }

    /// After `name` was created in the upper directory `parent`: a new directory over a hidden
    /// lower directory becomes opaque, then the whiteout goes. Returns the new entry; `made` is
    /// its stat when the caller has one (of the file it made), else it is looked up.
    pub(crate) fn after_create(
        &self,
        parent: &Entry,
        name: &OsStr,
        is_dir: bool,
        made: Option<FileStat>,
    ) -> R<Entry> {
        let path = parent.path.join(name);
        // A directory of the upper alone (new, or opaque) hides no lower name and so never got
        // a whiteout: nothing to look for.
        let over_lowers = !self.upper_only(parent);
        if is_dir && over_lowers {
            if let Some(lower) = self.lower_entry(parent, name)? {
                if lower.is_dir() {
                    self.make_opaque(&path)?;
                }
            }
        }
        if over_lowers && self.remove_whiteout(&parent.path, name)? {
            self.changed_one(&path);
        } else {
            self.added(&parent.path);
        }
        match made {
            // Nothing to record (no override xattrs in this upper): the caller's stat is the
            // entry's, and a file just made has no origin.
            Some(stat) if self.stack.layers().first().and_then(|l| l.overrides()).is_none() => {
                self.inos.origins.note(0, &stat, None);
                Ok(Entry { path, layer: 0, stat, layers: vec![0] })
            }
            _ => {
                self.record_new(&path, made.as_ref())?;
                self.lookup_path(&path)
            }
        }
    }
}

/// The owner of a new entry made by `who` in `parent`, as the layer's namespace knows the ids:
/// the caller, with the parent's group when it is setgid.
pub(crate) fn new_owner(parent: &Entry, who: Caller) -> (u32, u32) {
    let (uid, gid) = super::attr::ns_ids(who.uid, who.gid);
    (uid, if parent.stat.st_mode & libc::S_ISGID != 0 { parent.stat.st_gid } else { gid })
}

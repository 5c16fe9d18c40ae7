//! The FUSE filesystem on top of `union/` (fuser 0.18, no libfuse).
//!
//! - Node ids are the files' st_ino ([`ino`]): stable across copy-up and remounts, shared by
//!   hard links. [`nodes`] is the node tree (each name a link to its parent node, the entry
//!   cache on the links; a rename moves one link) and honours lookup counts; a name's new
//!   object whose inode number the layer reused gets a fresh alias id, and a node with no name
//!   left answers ESTALE (the kernel walks the path again) or is served by an open file of it
//!   (fstat & co. on an unlinked descriptor).
//! - Every layer access goes through a [`crate::sys::safefd::SafeFd`]: a directory opened with
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` beneath its parent's fd (or the layer root,
//!   in pieces below PATH_MAX), so no path length limits the tree and nothing leaves its layer.
//!   The directories the kernel holds keep their fds on their nodes (`nodes.rs`, a
//!   [`crate::union::stack::DirFdStore`]), so a request deep in a tree opens at most one
//!   component.
//! - State is split by lock: the namespace lock (`ns`, mutations exclusive), the node table,
//!   the stack's fd and listing caches, the open handles, and one copy-up lock per file: file
//!   data is copied up with no namespace lock held (also a renamed directory's subtree, before
//!   the rename).
//! - Crash order: a whiteout is written before the upper entry it stands in for goes (unlink,
//!   rmdir, rename), and a directory is made opaque before it moves onto a lower directory.
//! - Reads go to the layer holding the entry; the first change copies it up into
//!   the work dir, then renames it into the upper. Deletions write OCI `.wh.` whiteouts, a
//!   directory deleted and recreated becomes opaque ([`upper`]); names starting with `.wh.`
//!   are refused with EINVAL.
//! - Any directory can be renamed: its subtree is copied up, then renamed.
//! - `O_TMPFILE` (`tmpfile.rs`): an unnamed file in the parent's upper directory, a node with no
//!   name until `linkat` gives it one.
//! - Data of opened files goes through FUSE passthrough when the kernel allows it (root,
//!   kernel ≥ 6.9), else through read/write requests. Permission checks are the kernel's
//!   (`default_permissions`). POSIX and BSD locks are handled by the kernel (not forwarded).
//! - Several request threads with cloned /dev/fuse fds; readdirplus; long kernel TTLs (the
//!   layers change only through the mount) and cached listings for lower-only directories.
//! - No operation panics out: errors become an errno and a log line.
//!
//! Mounting: [`mount_foreground`], [`mount_daemon`] (returns once the mount answers),
//! [`unmount`] / [`unmount_and_wait`].

pub mod attr;
mod copyup;
mod create;
mod dir;
pub mod filesystem;
pub mod freeze;
pub mod handles;
pub mod ino;
mod io;
pub mod mount;
pub mod nodes;
mod ops;
mod remove;
mod rename;
mod tmpfile;
mod unlinked;
pub mod upper;
mod xattrs;

pub use filesystem::StrataFs;
pub use mount::{
    MountOptions, is_mounted, mount_daemon, mount_foreground, mount_with, unmount, unmount_and_wait,
};

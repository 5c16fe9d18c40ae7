//! The FUSE filesystem on top of `union/` (fuser 0.18, no libfuse).
//!
//! - Node ids are the files' st_ino ([`ino`]): stable across copy-up and remounts, shared by
//!   hard links. [`nodes`] maps them to merged paths and honours lookup counts.
//! - Reads go to the layer holding the entry; the first change copies it up into
//!   the work dir, then renames it into the upper. Deletions write OCI `.wh.` whiteouts, a
//!   directory deleted and recreated becomes opaque ([`upper`]); names starting with `.wh.`
//!   are refused with EINVAL.
//! - Any directory can be renamed: its subtree is copied up, then renamed.
//! - Data of opened files goes through FUSE passthrough when the kernel allows it (root,
//!   kernel ≥ 6.9), else through read/write requests. Permission checks are the kernel's
//!   (`default_permissions`). POSIX and BSD locks are handled by the kernel (not forwarded).
//! - Several request threads with cloned /dev/fuse fds; readdirplus; long kernel TTLs for
//!   lower-layer entries and cached listings for lower-only directories.
//! - No operation panics out: errors become an errno and a log line.
//!
//! Mounting: [`mount_foreground`], [`mount_daemon`] (returns once the mount answers),
//! [`unmount`] / [`unmount_and_wait`].

pub mod attr;
pub mod containers;
mod copyup;
mod create;
mod dir;
pub mod filesystem;
pub mod handles;
pub mod ino;
mod io;
pub mod mount;
pub mod nodes;
mod ops;
mod remove;
mod rename;
mod unlinked;
pub mod upper;
mod xattrs;

pub use filesystem::StrataFs;
pub use mount::{
    MountOptions, is_mounted, mount_daemon, mount_foreground, mount_with, unmount, unmount_and_wait,
};

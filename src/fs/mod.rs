//! The FUSE filesystem on top of `union/`.

pub mod attr;
pub mod containers;
mod copyup;
pub mod filesystem;
pub mod handles;
pub mod ino;
pub mod nodes;

pub use filesystem::StrataFs;
mod create;
mod dir;
mod io;
pub mod mount;
mod ops;
mod remove;
mod rename;
pub mod upper;
mod xattrs;

pub use mount::{MountOptions, is_mounted, mount_daemon, mount_foreground, unmount, unmount_and_wait};

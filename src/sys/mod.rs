//! Syscall wrappers: the crate's `unsafe` lives here.
pub mod daemon;
pub mod fsio;
pub mod fuse_mount;
pub mod inotify;
pub mod safefd;
pub mod tty;
pub mod userns;
pub mod userns_holder;

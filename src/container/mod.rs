//! Containers: an image plus one writable layer, and the process strata runs in it.
//!
//! - [`mounting`]: the union mount of a container (or image) under the container's [`lock`];
//!   [`mountpoint`] checks what `mount` is given, [`umount`] unmounts without waiting under the
//!   store's lock and names what holds a busy mount.
//! - [`engine`]: one start of a container's process with an OCI [`runtime`] (runc or crun) over
//!   its union mount, with a [`bundle`] of Docker's defaults, an [`init_layer`] of mountpoints
//!   and the user resolved in the image ([`user`]).
//! - [`config_pipe`]: runc started before the mount, reading `config.json` from a pipe.
//! - [`monitor`]: one process per running container, owning its mount and runtime child, writing
//!   its [`logs`] and state; [`status`] tells Created, Running, Exited and Dead apart.
//! - [`spec`]: a container's process from its image's config and the `run` flags.
//! - [`lifecycle`]: start, stop, kill, wait, remove, exec, top; [`inspect`]: Docker's container JSON.
//! - [`started`]: waiting, on events, for a runtime to start a process (`run`, `exec`).
//! - [`oneshot`]: the library API a `RUN` step uses: run one process to completion.

pub mod bundle;
pub mod config_pipe;
pub mod console;
pub mod engine;
pub mod init_layer;
pub mod inspect;
pub mod lifecycle;
pub mod lock;
pub mod logs;
pub mod monitor;
pub mod mounting;
pub mod mountpoint;
pub mod oneshot;
pub mod pause;
pub mod rootless;
pub mod runtime;
pub mod spec;
pub mod started;
pub mod status;
pub mod stdio;
pub mod umount;
pub mod user;
pub mod warm;

pub use engine::StartError;
pub use oneshot::{Cancel, Finished, Output, ProcessSpec, run_cancellable, run_to_completion};

//! Containers: an image plus one writable layer, and the process strata runs in it.
//!
//! - [`mounting`]: the union mount of a container (or image) under the container's [`lock`].
//! - [`engine`]: one start of a container's process with an OCI [`runtime`] (runc or crun) over
//!   its union mount, with a [`bundle`] of Docker's defaults, an [`init_layer`] of mountpoints
//!   and the user resolved in the image ([`user`]).
//! - [`oneshot`]: the library API a `RUN` step uses: run one process to completion.

pub mod bundle;
pub mod engine;
pub mod init_layer;
pub mod lock;
pub mod mounting;
pub mod oneshot;
pub mod runtime;
pub mod user;

pub use engine::StartError;
pub use oneshot::{Finished, Output, ProcessSpec, run_to_completion};

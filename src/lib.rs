//! strata: container image layers without a daemon.
//!
//! Dependencies point downward: cli → (archive, registry, inspect, container) → fs → union → layer
//! → store/oci → sys; `container` (lifecycle, runtime, monitor) is the only one joining `fs` and `store`.
//! `progress` (terminal progress of transfers) is used by cli, archive and registry.

pub mod archive;
pub mod build;
pub mod cli;
pub mod container;
pub mod fs;
pub mod inspect;
pub mod layer;
pub mod logging;
pub mod oci;
pub mod progress;
pub mod registry;
pub mod store;
pub mod sys;
pub mod union;

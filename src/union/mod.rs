//! The merged view of a layer stack, shared by the FUSE filesystem and the offline tools.
//!
//! Knows nothing of FUSE. A [`Stack`] is a list of layer directories, top first (optionally a
//! writable upper as layer 0). [`Stack::lookup`] resolves a relative path through it and
//! [`Stack::list`] merges a directory; both apply the whiteout rules of [`crate::layer::whiteout`] (OCI `.wh.`
//! files and overlayfs 0/0 devices / opaque xattrs). Every access stays inside its layer root.

pub mod layer;
pub mod layer_names;
pub mod listing;
pub mod name_index;
pub mod pathhash;
pub mod resolve;
pub mod stack;
pub mod xattr_memo;

pub use layer::Layer;
pub use listing::{ListEntry, Listing};
pub use stack::{Entry, Stack};

//! OCI vocabulary: digests, image references, manifests and configs.

pub mod digest;

pub use digest::Digest;

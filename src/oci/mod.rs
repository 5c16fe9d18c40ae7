//! OCI vocabulary: digests, image references, manifests and configs.

pub mod digest;
pub mod media;
pub mod reference;

pub use digest::Digest;
pub use reference::Reference;

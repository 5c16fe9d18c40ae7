//! OCI vocabulary: digests, image references, manifests and configs.

pub mod changes;
pub mod digest;
pub mod image;
pub mod media;
pub mod reference;
pub mod time;

pub use digest::Digest;
pub use reference::Reference;

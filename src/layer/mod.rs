//! The layer tar codec: safe streaming unpack, deterministic pack, compression
//! detection, and the whiteout rules shared with the union view.
//!
//! The tar crate is used to parse and never to extract: its own unpack turns
//! device nodes into empty files, skips directory xattrs and ignores PAX mtimes.

pub mod compression;
mod extract;
pub mod ingest;
pub mod pack;
mod pipe;
pub mod tarpath;
pub mod tarwriter;
pub mod unpack;
pub mod whiteout;

pub use compression::Compression;
pub use pack::{PackOptions, Packed, pack_dir};
pub use tarwriter::{EntryKind, EntryMeta, TarEntryWriter};
pub use unpack::{Unpacked, unpack};

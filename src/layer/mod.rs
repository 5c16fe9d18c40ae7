//! The layer tar codec: safe streaming unpack, deterministic pack, compression
//! detection, and the whiteout rules shared with the union view.
//!
//! The tar crate is used to parse and never to extract: its own unpack turns
//! device nodes into empty files, skips directory xattrs and ignores PAX mtimes.
//!
//! - [`unpack()`]: blob (plain/gzip/zstd, detected) → directory, blob digest and
//!   diff_id in the same pass, every path resolved inside the destination.
//! - [`pack_dir`]: directory (layer dir or overlay-style upper) → deterministic
//!   layer blob, digests computed while writing.
//! - [`TarEntryWriter`]: the entry format `pack_dir` writes, for callers that
//!   walk trees of their own (export of a merged view).
//! - [`whiteout`]: what `.wh.` names and overlayfs markers mean; no tar types.

pub mod compression;
mod extract;
pub use extract::Skipped;
pub mod ingest;
pub mod override_stat;
pub mod pack;
mod pipe;
pub mod range;
pub mod targuard;
pub mod tarpath;
pub mod tarwriter;
pub mod unpack;
pub mod whiteout;

pub use compression::Compression;
pub use pack::{PackOptions, Packed, pack_dir};
pub use tarwriter::{EntryKind, EntryMeta, TarEntryWriter};
pub use unpack::{Unpacked, unpack};

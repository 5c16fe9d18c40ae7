//! The store's small JSON records (tags, image records, container and mount records, layer meta):
//! read with an error naming the file, written atomically through `tmp/`.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::staging;

/// Reads and parses a record; `None` when the file does not exist.
pub fn read_optional<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => parse(path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Reads and parses a record that must exist; `missing` is the error when it does not.
pub fn read<T: DeserializeOwned>(path: &Path, missing: impl FnOnce() -> String) -> Result<T> {
    read_optional(path)?.with_context(missing)
}

fn parse<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).with_context(|| format!("corrupt store file {}", path.display()))
}

/// Reads a runtime record (see [`write_runtime`]): one a crash left unreadable counts as absent.
pub fn read_runtime<T: DeserializeOwned>(path: &Path) -> Option<T> {
    match read_optional(path) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("ignoring {e:#}");
            None
        }
    }
}

/// Writes a runtime record (a mount's pid and mountpoint): atomically, not durably. A crash
/// ends every mount, so the record is stale after one whatever it says; skipping the fsync
/// keeps `strata mount` and `umount` at a few milliseconds.
pub fn write_runtime<T: Serialize>(tmp: &Path, dest: &Path, value: &T) -> Result<()> {
    staging::replace(tmp, dest, &serde_json::to_vec_pretty(value)?)
}

/// Writes a record atomically (staged in `tmp`, fsynced, renamed over `dest`).
pub fn write<T: Serialize>(tmp: &Path, dest: &Path, value: &T) -> Result<()> {
    staging::write_atomic(tmp, dest, &serde_json::to_vec_pretty(value)?)
}

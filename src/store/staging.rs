//! Staging in `tmp/`: write there, fsync, rename into place.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

/// A fresh, unique path under `tmp/` (pid + counter + time: unique across processes and calls).
pub fn tmp_path(tmp: &Path, what: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    tmp.join(format!("{what}-{}-{n}-{nanos}", std::process::id()))
}

/// Removes everything in `tmp/` (called with the writer lock held).
pub fn clear(tmp: &Path) -> Result<()> {
    clear_except(tmp, &[])
}

/// Removes everything in `tmp/` but the names in `keep`.
pub fn clear_except(tmp: &Path, keep: &[&str]) -> Result<()> {
    let entries = std::fs::read_dir(tmp).with_context(|| format!("cannot read {}", tmp.display()))?;
    for entry in entries {
        let entry = entry?;
        if keep.iter().any(|k| entry.file_name() == *k) {
            continue;
        }
        let path = entry.path();
        let res = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match res {
            // Gone meanwhile: a removed container's directory is deleted by a process of its own.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove leftover {}: {e}", path.display()),
            Ok(()) => {}
        }
    }
    Ok(())
}

/// Writes `bytes` to `dest` atomically: a staged file, fsynced, renamed over `dest`, directory fsynced.
pub fn write_atomic(tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let staged = tmp_path(tmp, "file");
    let mut f = File::create(&staged).with_context(|| format!("cannot create {}", staged.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", staged.display()))?;
    rename_in(&staged, dest)
}

/// Writes `bytes` to `dest` atomically but not durably (no fsync): for runtime state such as
/// mount records, which a crash makes stale anyway.
pub fn replace(tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let staged = tmp_path(tmp, "file");
    std::fs::write(&staged, bytes).with_context(|| format!("cannot write {}", staged.display()))?;
    std::fs::rename(&staged, dest)
        .with_context(|| format!("cannot move {} to {}", staged.display(), dest.display()))
}

/// Renames a staged path into place and fsyncs the destination directory.
pub fn rename_in(staged: &Path, dest: &Path) -> Result<()> {
    std::fs::rename(staged, dest)
        .with_context(|| format!("cannot move {} to {}", staged.display(), dest.display()))?;
    if let Some(parent) = dest.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", parent.display()))?;
    }
    Ok(())
}

/// Flushes a whole filesystem's dirty data once (cheaper than an fsync per file of an unpacked layer).
pub fn syncfs(path: &Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    nix::unistd::syncfs(&f).with_context(|| format!("syncfs {}", path.display()))
}

//! The on-disk store (see docs/ARCHITECTURE.md): blobs by digest, unpacked layers by diff_id, image records, tags,
//! containers. Everything is staged in `tmp/`, fsynced, then renamed in, so a crash leaves the old or
//! the new state plus garbage in `tmp/` that the next writer removes. Blobs and layers nothing
//! references yet (stored before their image record) are covered by `tmp/gc-pending` (see
//! [`pending`]): a writer handle must have referenced what it stored by the time it is dropped,
//! or it is collected as garbage. Every directory is closed to other users ([`perms`]).

pub mod blobs;
pub mod build_cache;
pub mod check;
pub mod containers;
pub mod derive;
pub mod gc;
pub mod images;
pub mod layers;
mod lock;
pub mod mounts;
pub mod pending;
pub mod perms;
mod records;
pub mod remove;
pub mod staging;
pub mod usage;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use images::{ImageRecord, LayerRef};
pub use lock::LockMode;
use lock::StoreLock;

/// The directories under the root that lead to layer trees, blobs, records, uppers and work dirs:
/// each is kept private on every open (see [`perms`]), so the store is closed to other users
/// even if one of them, or the root, was made wider.
const GATES: [&str; 7] = ["blobs", "blobs/sha256", "layers", "images", "containers", "mounts", "tmp"];

pub struct Store {
    root: PathBuf,
    lock: StoreLock,
    /// This writer wrote `gc-pending` (see [`pending`]): collect garbage when dropped.
    gc_marked: std::sync::atomic::AtomicBool,
    /// A removal a killed `rmi` left, finished when this handle opened.
    finished_removal: Option<pending::Removing>,
    /// What unprivileged unpacks of this command could not restore: said once, on drop.
    skipped: std::sync::Mutex<crate::layer::Skipped>,
}

impl Store {
    /// The default root: `/var/lib/strata` as root, else `$XDG_DATA_HOME/strata`.
    pub fn default_root() -> PathBuf {
        if nix::unistd::geteuid().is_root() {
            return PathBuf::from("/var/lib/strata");
        }
        match std::env::var_os("XDG_DATA_HOME") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join("strata"),
            _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
                .join(".local/share/strata"),
        }
    }

    /// Opens (creating if needed) the store at `root`. A writer also clears `tmp/` of what a crashed
    /// run left: no other writer can be staging while we hold the exclusive lock.
    pub fn open(root: &Path, mode: LockMode) -> Result<Store> {
        perms::private_dir(root)?;
        for dir in GATES {
            perms::private_dir(&root.join(dir))?;
        }
        let lock = StoreLock::acquire(&root.join("lock"), mode)?;
        let mut store = Store {
            root: root.to_path_buf(),
            lock,
            gc_marked: Default::default(),
            finished_removal: None,
            skipped: Default::default(),
        };
        if mode == LockMode::Exclusive {
            // Staging a killed writer left is garbage; its marks of unfinished work are kept
            // until that work is done.
            staging::clear_except(&store.tmp_dir(), &[pending::GC_MARKER, pending::REMOVING])?;
            store.finished_removal = store.finish_pending()?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn is_writable(&self) -> bool {
        self.lock.mode == LockMode::Exclusive
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Errors unless this handle holds the writer lock: a guard against read-only callers writing.
    pub(crate) fn ensure_writable(&self) -> Result<()> {
        anyhow::ensure!(self.is_writable(), "internal error: store opened read-only for a write");
        Ok(())
    }
}

impl Store {
    /// Adds to what this command could not restore without root.
    pub(crate) fn note_skipped(&self, s: crate::layer::Skipped) {
        if let Ok(mut all) = self.skipped.lock() {
            all.add(s);
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.collect_marked();
        let s = self.skipped.lock().map(|s| *s).unwrap_or_default();
        if !s.is_empty() {
            // In the command's own output, not just the log: the stored layers differ from the
            // archive's.
            eprintln!("strata: warning: {}", skipped_summary(&s));
        }
    }
}

/// One line saying what an unprivileged unpack left out.
pub fn skipped_summary(s: &crate::layer::Skipped) -> String {
    let n = |count: u64, one: &str, many: &str| format!("{count} {}", if count == 1 { one } else { many });
    let mut parts = Vec::new();
    if s.capabilities > 0 {
        parts.push(format!("dropped the file capabilities of {}", n(s.capabilities, "file", "files")));
    }
    if s.xattrs > 0 {
        parts.push(format!("dropped {}", n(s.xattrs, "privileged xattr", "privileged xattrs")));
    }
    format!("not running as root: {} (restoring them needs root)", parts.join(", "))
}

/// The digests a directory's entries are named by (`<64 hex><suffix>`); other names are skipped.
fn digest_names(dir: &Path, suffix: &str) -> Result<Vec<crate::oci::Digest>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let name = e.with_context(|| format!("cannot read {}", dir.display()))?.file_name();
        let hex = name.to_str().and_then(|n| n.strip_suffix(suffix));
        if let Some(d) = hex.and_then(|h| crate::oci::Digest::from_hex(h).ok()) {
            out.push(d);
        }
    }
    Ok(out)
}

//! docker-archive and OCI layout / OCI archive, in (`load`) and out (`save`).
//!
//! Loading never trusts the archive: every blob is verified against the digest and size its manifest
//! gives, every layer against the config's diff_id, and a failure removes whatever the load had added,
//! so the store is exactly as before. Tags are written last.

mod docker_in;
mod docker_out;
mod ingest;
mod legacy_in;
mod load;
mod members;
mod oci_in;
mod oci_out;
mod save;
mod shown;
mod sink;
mod source;
mod verify;

use std::io::Write;
use std::path::PathBuf;

pub use load::{load, load_with};
pub use save::{Owner, partial_dirs, remove_partials, save, save_with};

use crate::oci::{Digest, Reference};

/// Where `load` reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadSource {
    /// A docker-archive or OCI archive file (possibly gzip/zstd compressed), or an OCI layout directory.
    File(PathBuf),
    /// The same, from standard input (spooled into the store's `tmp/` first).
    Stdin,
    /// An OCI image layout directory, optionally only the manifest whose ref.name is `tag`.
    OciDir { dir: PathBuf, tag: Option<String> },
}

impl LoadSource {
    /// What the user typed: `-` for stdin, `oci:DIR[:TAG]` for a layout directory, else a path.
    pub fn parse(input: &str) -> LoadSource {
        if input == "-" {
            return LoadSource::Stdin;
        }
        match input.strip_prefix("oci:") {
            Some(rest) => LoadSource::oci_dir(rest),
            None => LoadSource::File(PathBuf::from(input)),
        }
    }

    /// `DIR[:TAG]` as skopeo spells an OCI layout; a DIR that exists as typed wins over a split.
    pub fn oci_dir(spec: &str) -> LoadSource {
        let whole = PathBuf::from(spec);
        if whole.is_dir() {
            return LoadSource::OciDir { dir: whole, tag: None };
        }
        match spec.rsplit_once(':') {
            Some((dir, tag)) if !dir.is_empty() && !tag.is_empty() && !tag.contains('/') => {
                LoadSource::OciDir { dir: PathBuf::from(dir), tag: Some(tag.to_string()) }
            }
            _ => LoadSource::OciDir { dir: whole, tag: None },
        }
    }
}

/// One image a load brought into the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The image id (config digest).
    pub id: Digest,
    /// The names now pointing at it (empty: print `Loaded image ID: …`).
    pub tags: Vec<Reference>,
}

/// What `save` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveFormat {
    /// `docker save` layout: manifest.json, repositories, `<id>/layer.tar` (uncompressed).
    DockerArchive,
    /// A tarred OCI image layout.
    OciArchive,
    /// An OCI image layout directory.
    OciDir,
}

impl std::str::FromStr for SaveFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "docker-archive" | "docker" => Ok(SaveFormat::DockerArchive),
            "oci-archive" | "oci" => Ok(SaveFormat::OciArchive),
            "oci-dir" => Ok(SaveFormat::OciDir),
            _ => anyhow::bail!("unknown format {s:?}: expected docker-archive, oci-archive or oci-dir"),
        }
    }
}

/// Where `save` writes.
pub enum SaveTarget {
    /// A stream (stdout): archive formats only.
    Writer(Box<dyn Write>),
    /// A file, written beside it first and renamed in on success: archive formats only.
    File(PathBuf),
    /// A directory: `OciDir` only (created if missing; an existing layout's index is extended).
    Dir(PathBuf),
}

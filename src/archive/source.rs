//! Opening what `load` reads: a seekable uncompressed archive is used in place; stdin and compressed
//! archives are spooled (decompressed) into the store's `tmp/` once, so members can be read by offset.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::LoadSource;
use super::members::{DirMembers, Members, TarIndex};
use crate::layer::compression::{Compression, read_prefix};
use crate::progress::Progress;
use crate::store::{Store, staging};

/// An opened load source.
pub struct Input {
    pub members: Box<dyn Members>,
    /// `oci:DIR:TAG`: only the manifest with this ref.name.
    pub tag: Option<String>,
    /// The user asked for an OCI layout (`--oci DIR`, `oci:DIR`): nothing else is tried.
    pub oci_only: bool,
    /// The directory's or file's name without archive extensions: the repository of images whose
    /// `ref.name` is a bare tag (umoci's `DIR:TAG` convention). `None` for stdin.
    pub repository: Option<String>,
    /// Removed when the load ends.
    _spool: Option<Spool>,
}

pub fn open(store: &Store, source: &LoadSource, progress: &Progress) -> Result<Input> {
    let mut input = open_members(store, source, progress)?;
    input.repository = match source {
        LoadSource::OciDir { dir: path, .. } | LoadSource::File(path) => repository_of(path),
        LoadSource::Stdin => None,
    };
    Ok(input)
}

fn open_members(store: &Store, source: &LoadSource, progress: &Progress) -> Result<Input> {
    match source {
        LoadSource::OciDir { dir, tag } => open_dir(dir, tag.clone(), true),
        LoadSource::File(path) if path.is_dir() => open_dir(path, None, false),
        LoadSource::File(path) => {
            let name = path.display().to_string();
            let file = File::open(path).with_context(|| format!("cannot open {name}"))?;
            let is_regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
            let mut reader = BufReader::with_capacity(1 << 20, file);
            let prefix = read_prefix(&mut reader).with_context(|| format!("cannot read {name}"))?;
            let compression = detect(&prefix, &name)?;
            if compression == Compression::None && is_regular {
                let file = reader.into_inner();
                return Ok(Input {
                    members: Box::new(TarIndex::new(file, &name)?),
                    tag: None,
                    oci_only: false,
                    repository: None,
                    _spool: None,
                });
            }
            let size = std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| m.len());
            let label = path.file_name().map_or(name.clone(), |n| n.to_string_lossy().into_owned());
            let reader = progress.item(&label, "Waiting").reader("Reading", size, reader, "Read");
            spooled(store, prefix, reader, compression, &name)
        }
        LoadSource::Stdin => {
            let mut reader = BufReader::with_capacity(1 << 20, io::stdin().lock());
            let prefix = read_prefix(&mut reader).context("cannot read standard input")?;
            let compression = detect(&prefix, "standard input")?;
            let reader = progress.item("stdin", "Waiting").reader("Reading", None, reader, "Read");
            spooled(store, prefix, reader, compression, "standard input")
        }
    }
}

fn open_dir(dir: &Path, tag: Option<String>, oci_only: bool) -> Result<Input> {
    anyhow::ensure!(dir.is_dir(), "{}: no such directory", dir.display());
    Ok(Input { members: Box::new(DirMembers::new(dir)), tag, oci_only, repository: None, _spool: None })
}

/// `/tmp/debian-oci` → `debian-oci`, `busybox.oci.tar.gz` → `busybox`: a path's last component
/// without archive extensions.
fn repository_of(path: &Path) -> Option<String> {
    let name = path.canonicalize().ok()?.file_name()?.to_str()?.to_string();
    let stem = name.split('.').next().unwrap_or_default();
    (!stem.is_empty()).then(|| stem.to_string())
}

fn detect(prefix: &[u8], name: &str) -> Result<Compression> {
    anyhow::ensure!(!prefix.is_empty(), "{name}: empty input, not an image archive");
    Compression::detect(prefix).with_context(|| format!("{name}: not an image archive"))
}

/// Decompresses (or copies) the whole input into `tmp/`, then indexes the copy.
fn spooled(
    store: &Store,
    prefix: Vec<u8>,
    rest: impl Read,
    compression: Compression,
    name: &str,
) -> Result<Input> {
    let spool = Spool(staging::tmp_path(&store.tmp_dir(), "load"));
    let mut out = File::options()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&spool.0)
        .with_context(|| format!("cannot create {}", spool.0.display()))?;
    let mut decoder = compression.decoder(io::Cursor::new(prefix).chain(rest))?;
    io::copy(&mut decoder, &mut out).map_err(|e| match compression {
        Compression::None => anyhow::Error::new(e).context(format!("cannot read {name}")),
        c => anyhow::Error::new(e).context(format!("{name}: truncated or corrupt {c} stream")),
    })?;
    let members = TarIndex::new(out, name)?;
    Ok(Input {
        members: Box::new(members),
        tag: None,
        oci_only: false,
        repository: None,
        _spool: Some(spool),
    })
}

/// A spooled copy in `tmp/`, removed on drop.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

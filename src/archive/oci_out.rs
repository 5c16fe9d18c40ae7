//! OCI image layout out (tarred or as a directory): `oci-layout`, `index.json` with one entry per
//! tag (containerd's full-name and OCI ref.name annotations), and the blobs exactly as stored. An
//! image stored with a Docker manifest gets an OCI-converted one, which umoci insists on.

use std::path::Path;

use anyhow::{Context, Result};

use super::save::Selected;
use super::sink::Sink;
use super::verify::Verifying;
use crate::layer::compression::Compression;
use crate::oci::image::{Descriptor, Manifest, build_index, build_manifest, parse_index, parse_manifest};
use crate::oci::{Digest, media};
use crate::store::{ImageRecord, Store};

const ANN_IMAGE_NAME: &str = "io.containerd.image.name";
const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";
const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The entries of an existing layout's index.json in `dir` (saving into it adds to them).
pub fn existing_index(dir: &Path) -> Result<Vec<Descriptor>> {
    let p = dir.join("index.json");
    match std::fs::read(&p) {
        Ok(bytes) => parse_index(&bytes).with_context(|| format!("{} is not a valid OCI index", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

pub fn write(
    store: &Store,
    selected: &[Selected],
    sink: &mut dyn Sink,
    mut index: Vec<Descriptor>,
) -> Result<()> {
    sink.bytes("oci-layout", LAYOUT)?;
    for d in ["blobs", "blobs/sha256"] {
        if !sink.has(d) {
            sink.dir(d)?;
        }
    }
    for s in selected {
        let (bytes, manifest) = oci_manifest(store, &s.record)?;
        for l in &manifest.layers {
            blob(store, sink, &l.digest)?;
        }
        blob(store, sink, &manifest.config.digest)?;
        let digest = Digest::of_bytes(&bytes);
        let path = format!("blobs/sha256/{}", digest.hex());
        if !sink.has(&path) {
            sink.bytes(&path, &bytes)?;
        }
        let desc = Descriptor::new(media::OCI_MANIFEST, &digest, bytes.len() as u64);
        if s.tags.is_empty() {
            index.retain(|e| !(e.digest == desc.digest && e.annotations.is_empty()));
            index.push(desc);
            continue;
        }
        for t in &s.tags {
            let mut d = desc.clone();
            d.annotations.insert(ANN_IMAGE_NAME.into(), t.to_string());
            d.annotations.insert(ANN_REF_NAME.into(), t.tag.clone().unwrap_or_default());
            // A name written again replaces its old entry, as skopeo does.
            index.retain(|e| !same_name(e, &d));
            index.push(d);
        }
    }
    sink.bytes("index.json", &build_index(&index))
}

/// Entries name the same image: by full name when the old one has it, else by ref.name alone
/// (two images tagged `latest` in one save must both survive).
fn same_name(old: &Descriptor, new: &Descriptor) -> bool {
    match old.annotations.get(ANN_IMAGE_NAME) {
        Some(n) => Some(n) == new.annotations.get(ANN_IMAGE_NAME),
        None => {
            old.annotations.contains_key(ANN_REF_NAME)
                && old.annotations.get(ANN_REF_NAME) == new.annotations.get(ANN_REF_NAME)
        }
    }
}

/// The stored manifest if it is OCI, else the same image described with OCI media types.
fn oci_manifest(store: &Store, record: &ImageRecord) -> Result<(Vec<u8>, Manifest)> {
    let bytes = store.read_blob(&record.manifest).context("the image's manifest")?;
    let mut m = parse_manifest(&bytes).with_context(|| format!("stored manifest {}", record.manifest))?;
    if m.media_type == media::OCI_MANIFEST {
        return Ok((bytes, m));
    }
    m.media_type = media::OCI_MANIFEST.into();
    m.config.media_type = media::OCI_CONFIG.into();
    for l in &mut m.layers {
        if let Some(c) = Compression::from_media_type(&l.media_type) {
            l.media_type = c.media_type().into();
        }
    }
    Ok((build_manifest(&m.config, &m.layers), m))
}

/// Copies one blob from the store, verified as it streams.
fn blob(store: &Store, sink: &mut dyn Sink, digest: &Digest) -> Result<()> {
    let path = format!("blobs/sha256/{}", digest.hex());
    if sink.has(&path) {
        return Ok(());
    }
    let file = store.open_blob(digest)?;
    let size = file.metadata().with_context(|| format!("cannot stat blob {digest}"))?.len();
    let mut r = Verifying::new(
        std::io::BufReader::with_capacity(1 << 20, file),
        size,
        digest.clone(),
        format!("blob {digest}"),
    );
    sink.file(&path, size, &mut r)
}

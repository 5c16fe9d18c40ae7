//! OCI image layout in (a directory, or tarred as an OCI archive): `index.json` → manifests (or a
//! per-platform index, of which the host's entry is taken) → config and layer blobs, each verified.
//! Manifests and configs are stored byte-exact, so digests survive the round trip.

use anyhow::{Context, Result, bail};

use super::ingest::{self, LayerSpec, Pending};
use super::members::Members;
use crate::oci::image::{
    Descriptor, Platform, config_diff_ids, declared_media_type, parse_index, parse_manifest,
};
use crate::oci::{Digest, Reference, media};
use crate::store::Store;
use crate::store::blobs::Expected;

const ANN_IMAGE_NAME: &str = "io.containerd.image.name";
const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// `tag`: only the manifest whose `org.opencontainers.image.ref.name` is this (`oci:DIR:TAG`).
/// `repository`: the name for images whose ref.name is a bare tag (the layout's own name).
pub fn load(
    store: &Store,
    members: &dyn Members,
    tag: Option<&str>,
    repository: Option<&str>,
) -> Result<Vec<Pending>> {
    if !members.contains("oci-layout") {
        bail!("not an OCI image layout: oci-layout is missing");
    }
    let index = members.read("index.json")?;
    let mut entries = parse_index(&index).context("index.json")?;
    if let Some(tag) = tag {
        let all: Vec<String> =
            entries.iter().filter_map(|e| e.annotations.get(ANN_REF_NAME).cloned()).collect();
        entries.retain(|e| e.annotations.get(ANN_REF_NAME).map(String::as_str) == Some(tag));
        if entries.is_empty() {
            bail!("index.json has no image named {tag:?} (it has: {})", list(&all));
        }
    }
    // One index listing the same image for several platforms: keep the host's.
    let host = Platform::host();
    if entries.iter().any(|e| e.platform.as_ref().is_some_and(|p| host.matches(p))) {
        entries.retain(|e| e.platform.as_ref().is_none_or(|p| host.matches(p)));
    }
    anyhow::ensure!(!entries.is_empty(), "index.json lists no images");
    // Names first (an invalid one fails before anything is stored), grouped by manifest.
    let mut wanted: Vec<(Descriptor, Vec<u8>, Vec<Reference>)> = Vec::new();
    for entry in &entries {
        let names = name_of(entry, repository)?;
        let (desc, bytes) = resolve(members, entry)?;
        match wanted.iter_mut().find(|(d, _, _)| d.digest == desc.digest) {
            Some((_, _, tags)) => {
                if let Some(n) = names.filter(|n| !tags.contains(n)) {
                    tags.push(n);
                }
            }
            None => wanted.push((desc, bytes, names.into_iter().collect())),
        }
    }
    let mut out = Vec::new();
    for (desc, bytes, tags) in wanted {
        let mut pending = image(store, members, &desc, &bytes)?;
        pending.tags = tags;
        out.push(pending);
    }
    Ok(out)
}

fn list(names: &[String]) -> String {
    if names.is_empty() { "no named images".into() } else { names.join(", ") }
}

/// containerd's full name, else a ref.name that is itself a full reference, else a bare tag
/// (`latest`, as umoci and skopeo write) under `repository` (umoci's `DIR:TAG`: the layout's
/// name is the repository), else untagged.
fn name_of(entry: &Descriptor, repository: Option<&str>) -> Result<Option<Reference>> {
    if let Some(n) = entry.annotations.get(ANN_IMAGE_NAME) {
        return Ok(ingest::parse_tags([n.as_str()])?.pop());
    }
    let Some(r) = entry.annotations.get(ANN_REF_NAME) else { return Ok(None) };
    let full = if r.contains(['/', ':']) {
        r.clone()
    } else if let Some(repo) = repository {
        format!("{}:{r}", repo.to_ascii_lowercase())
    } else {
        return Ok(None);
    };
    Ok(Reference::parse_with_default_tag(&full).ok().filter(|r| r.digest.is_none()))
}

/// Reads an index entry's blob; a nested per-platform index resolves to the host's manifest.
fn resolve(members: &dyn Members, entry: &Descriptor) -> Result<(Descriptor, Vec<u8>)> {
    let mut desc = entry.clone();
    for _ in 0..4 {
        let bytes = read_blob(members, &desc, "index.json names")?;
        let media_type = Some(desc.media_type.clone())
            .filter(|m| !m.is_empty())
            .or_else(|| declared_media_type(&bytes))
            .unwrap_or_else(|| media::OCI_MANIFEST.to_string());
        if media::is_manifest(&media_type) {
            desc.media_type = media_type;
            return Ok((desc, bytes));
        }
        if !media::is_index(&media_type) {
            bail!("index.json names {} of unsupported media type {media_type}", desc.digest);
        }
        desc = pick_platform(&parse_index(&bytes).with_context(|| format!("index {}", desc.digest))?)
            .with_context(|| format!("index {}", desc.digest))?;
    }
    bail!("index {} nests indexes too deeply", entry.digest)
}

/// The host's entry of a per-platform index; a lone image is taken whatever its platform.
fn pick_platform(entries: &[Descriptor]) -> Result<Descriptor> {
    let host = Platform::host();
    // Attestations and other artifacts are listed with platform unknown/unknown.
    let images: Vec<&Descriptor> =
        entries.iter().filter(|e| e.platform.as_ref().is_none_or(|p| p.os != "unknown")).collect();
    if let Some(m) = images.iter().find(|e| e.platform.as_ref().is_some_and(|p| host.matches(p))) {
        return Ok((*m).clone());
    }
    match images[..] {
        [only] => Ok(only.clone()),
        _ => {
            let have: Vec<String> =
                images.iter().filter_map(|e| e.platform.as_ref().map(ToString::to_string)).collect();
            bail!("no manifest for platform {host} (it has: {})", list(&have))
        }
    }
}

/// A blob named by a descriptor, verified; `who` says who named it, for the error.
fn read_blob(members: &dyn Members, desc: &Descriptor, who: &str) -> Result<Vec<u8>> {
    let name = blob_name(&desc.digest);
    if !members.contains(&name) {
        bail!("{who} blob {}, which is missing ({name})", desc.digest);
    }
    ingest::verified(members, &name, &desc.digest, Some(desc.size))
}

fn image(store: &Store, members: &dyn Members, desc: &Descriptor, bytes: &[u8]) -> Result<Pending> {
    let what = format!("manifest {}", desc.digest);
    let manifest = parse_manifest(bytes).with_context(|| what.clone())?;
    let config = read_blob(members, &manifest.config, &format!("{what} names config"))?;
    let parsed: serde_json::Value = serde_json::from_slice(&config)
        .with_context(|| format!("config {} is not valid JSON", manifest.config.digest))?;
    let diff_ids = config_diff_ids(&parsed).with_context(|| format!("config {}", manifest.config.digest))?;
    if diff_ids.len() != manifest.layers.len() {
        bail!("{what} lists {} layers, its config has {} diff_ids", manifest.layers.len(), diff_ids.len());
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (d, diff_id) in manifest.layers.iter().zip(diff_ids) {
        let name = blob_name(&d.digest);
        match members.size(&name) {
            None => bail!("{what} names layer {}, which is missing ({name})", d.digest),
            Some(n) if n != d.size => {
                bail!("layer blob {} has size {n}, the manifest says {}", d.digest, d.size)
            }
            Some(_) => {}
        }
        let spec = LayerSpec {
            name: &name,
            blob: Some(d.digest.clone()),
            diff_id: Some(diff_id),
            media_type: Some(d.media_type.clone()),
        };
        layers.push(ingest::layer(store, members, spec)?);
    }
    let c = &manifest.config;
    let id = store.put_blob(&config[..], Some(&Expected { digest: c.digest.clone(), size: Some(c.size) }))?;
    let m = store.put_blob(bytes, Some(&Expected { digest: desc.digest.clone(), size: Some(desc.size) }))?;
    Ok(Pending::new(id, m, &manifest.media_type, layers))
}

//! From a reference to one image manifest: fetch what the tag or digest names (OCI or Docker,
//! manifest or index), verify its digest, and pick the wanted platform's manifest from an index.

use anyhow::{Context, Result, bail};

use super::client::{Client, Request};
use super::endpoint::manifest_path;
use crate::oci::image::{Descriptor, Manifest, Platform, declared_media_type, parse_index, parse_manifest};
use crate::oci::{Digest, Reference, media};

/// Everything we can read, best first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Manifests larger than this are refused (the spec suggests registries accept at least 4 MiB).
const MAX_MANIFEST: u64 = 4 << 20;

/// A manifest or index exactly as the registry sent it.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
}

/// What a reference resolved to.
pub struct Resolved {
    /// The digest the reference names (the index's, when it names one): `Digest:` and RepoDigests.
    pub digest: Digest,
    pub index: Option<Fetched>,
    pub manifest: Fetched,
    pub parsed: Manifest,
}

/// Fetches `repo`'s manifest `tag_or_digest`; when a digest is given (or the size), the bytes must match.
pub fn fetch(
    client: &Client,
    repo: &str,
    tag_or_digest: &str,
    expected: Option<&Descriptor>,
    scope: &str,
) -> Result<Fetched> {
    let req = Request::new("GET", manifest_path(repo, tag_or_digest), scope).header("Accept", ACCEPT);
    let resp = client.send_expect(&req, &[200])?;
    let header_type =
        Client::header(&resp, "content-type").map(|t| t.split(';').next().unwrap_or("").trim().to_string());
    let header_digest = Client::header(&resp, "docker-content-digest").map(str::to_string);
    let bytes = Client::read_small(resp, MAX_MANIFEST, "the manifest")?;
    let digest = Digest::of_bytes(&bytes);
    if let Some(want) = expected {
        if want.digest != digest || want.size != bytes.len() as u64 {
            bail!(
                "manifest digest mismatch: expected {} ({} bytes), the registry sent {digest} ({} bytes)",
                want.digest,
                want.size,
                bytes.len()
            );
        }
    } else if let Ok(want) = Digest::parse(tag_or_digest) {
        if want != digest {
            bail!(
                "manifest digest mismatch: asked for {want}, the registry sent content hashing to {digest}"
            );
        }
    }
    if let Some(h) = header_digest.filter(|h| h.starts_with("sha256:")) {
        if h != digest.to_string() {
            bail!("manifest digest mismatch: the registry says {h}, the content hashes to {digest}");
        }
    }
    if header_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/vnd.docker.distribution.manifest.v1"))
    {
        bail!(
            "{tag_or_digest} is a Docker schema 1 manifest, which strata does not read (push it again with a newer client)"
        );
    }
    let media_type = declared_media_type(&bytes)
        .or(header_type.filter(|t| media::is_manifest(t) || media::is_index(t)))
        .unwrap_or_else(|| media::OCI_MANIFEST.to_string());
    if !media::is_manifest(&media_type) && !media::is_index(&media_type) {
        bail!(
            "unsupported manifest type {media_type} (strata reads OCI and Docker schema 2 manifests and indexes)"
        );
    }
    Ok(Fetched { bytes, digest, media_type })
}

/// Resolves `reference` to one image manifest for `platform`.
pub fn resolve(client: &Client, reference: &Reference, platform: &Platform, scope: &str) -> Result<Resolved> {
    let repo = &reference.repository;
    let what = match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => crate::oci::reference::DEFAULT_TAG.to_string(),
    };
    let top = fetch(client, repo, &what, None, scope)?;
    if !media::is_index(&top.media_type) {
        let parsed = parse_manifest(&top.bytes).with_context(|| format!("manifest {}", top.digest))?;
        return Ok(Resolved { digest: top.digest.clone(), index: None, manifest: top, parsed });
    }
    let entries = parse_index(&top.bytes).with_context(|| format!("index {}", top.digest))?;
    let chosen = choose(&entries, platform).with_context(|| {
        let have: Vec<String> =
            entries.iter().filter_map(|e| e.platform.as_ref().map(ToString::to_string)).collect();
        format!("no matching manifest for {platform} in the manifest list entries (has: {})", have.join(", "))
    })?;
    let manifest = fetch(client, repo, &chosen.digest.to_string(), Some(chosen), scope)?;
    if !media::is_manifest(&manifest.media_type) {
        bail!(
            "index {} entry {} is a {}, not an image manifest",
            top.digest,
            chosen.digest,
            manifest.media_type
        );
    }
    let parsed = parse_manifest(&manifest.bytes).with_context(|| format!("manifest {}", manifest.digest))?;
    Ok(Resolved { digest: top.digest.clone(), index: Some(top), manifest, parsed })
}

/// The index entry for `want`: an exact variant match first, then any compatible one.
pub fn choose<'a>(entries: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    let compatible: Vec<&Descriptor> =
        entries.iter().filter(|e| e.platform.as_ref().is_some_and(|p| want.matches(p))).collect();
    compatible
        .iter()
        .find(|e| e.platform.as_ref().is_some_and(|p| p.variant == want.variant))
        .or(compatible.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: media::OCI_MANIFEST.into(),
            digest: Digest::of_bytes(&[n]),
            size: 1,
            annotations: Default::default(),
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
            }),
        }
    }

    #[test]
    fn chooses_exact_variant_then_compatible() {
        let entries = [entry("arm", Some("v6"), 1), entry("arm", Some("v7"), 2), entry("amd64", None, 3)];
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(choose(&entries, &v7).unwrap().digest, Digest::of_bytes(&[2]));
        let any_arm = Platform::parse("linux/arm").unwrap();
        assert_eq!(choose(&entries, &any_arm).unwrap().digest, Digest::of_bytes(&[1]));
        assert!(choose(&entries, &Platform::parse("linux/s390x").unwrap()).is_none());
    }
}

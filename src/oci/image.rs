//! Manifests, indexes and configs: parsed with oci-spec, written in a fixed field order so that the
//! same image always gets the same digests.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use oci_spec::image::{ImageIndex, ImageManifest};
use serde::Serialize;

use super::{Digest, media};

/// A content descriptor with our digest type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// A plain descriptor: no annotations, no platform.
    pub fn new(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: digest.clone(),
            size,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this machine, in Go's GOOS/GOARCH vocabulary.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Platform { architecture: architecture.into(), os: "linux".into(), variant: variant.map(Into::into) }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts[..] {
            [os, arch] if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform { os: os.into(), architecture: arch.into(), variant: None })
            }
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => {
                Ok(Platform { os: os.into(), architecture: arch.into(), variant: Some(v.into()) })
            }
            _ => bail!("invalid platform {s:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64"),
        }
    }

    /// Does an index entry's platform satisfy this wanted platform? A wanted variant must match;
    /// none wanted accepts any.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || other.variant.is_none() || self.variant == other.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A single-image manifest (OCI or Docker schema 2).
#[derive(Clone, Debug)]
pub struct Manifest {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

fn descriptor(d: &oci_spec::image::Descriptor) -> Result<Descriptor> {
    let digest =
        Digest::parse(d.digest().as_ref()).map_err(|e| anyhow::anyhow!("unsupported descriptor: {e}"))?;
    let platform = d.platform().as_ref().map(|p| Platform {
        architecture: p.architecture().to_string(),
        os: p.os().to_string(),
        variant: p.variant().clone(),
    });
    let annotations = d.annotations().clone().unwrap_or_default().into_iter().collect();
    Ok(Descriptor { media_type: d.media_type().to_string(), digest, size: d.size(), annotations, platform })
}

/// The media type a manifest or index declares in its own `mediaType` field, if any.
pub fn declared_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    p.media_type.or_else(|| p.manifests.map(|_| media::OCI_INDEX.to_string()))
}

pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest> {
    let m: ImageManifest = serde_json::from_slice(bytes).context("invalid image manifest")?;
    if m.schema_version() != 2 {
        bail!("unsupported manifest schemaVersion {} (only 2 is supported)", m.schema_version());
    }
    let media_type = m.media_type().as_ref().map_or(media::OCI_MANIFEST.to_string(), ToString::to_string);
    if !media::is_manifest(&media_type) {
        bail!("unsupported manifest media type {media_type}");
    }
    let layers = m.layers().iter().map(descriptor).collect::<Result<_>>()?;
    Ok(Manifest { media_type, config: descriptor(m.config())?, layers })
}

/// The entries of an image index / manifest list.
pub fn parse_index(bytes: &[u8]) -> Result<Vec<Descriptor>> {
    let i: ImageIndex = serde_json::from_slice(bytes).context("invalid image index")?;
    i.manifests().iter().map(descriptor).collect()
}

/// Writes an OCI image manifest with fields in a fixed order.
pub fn build_manifest(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Out<'a> {
        schema_version: u32,
        media_type: &'a str,
        config: &'a Descriptor,
        layers: &'a [Descriptor],
    }
    serde_json::to_vec(&Out { schema_version: 2, media_type: media::OCI_MANIFEST, config, layers })
        .expect("serialisable")
}

/// Writes an OCI image index (for OCI layouts).
pub fn build_index(manifests: &[Descriptor]) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Out<'a> {
        schema_version: u32,
        media_type: &'a str,
        manifests: &'a [Descriptor],
    }
    serde_json::to_vec(&Out { schema_version: 2, media_type: media::OCI_INDEX, manifests })
        .expect("serialisable")
}

/// One history entry of an image config.
#[derive(Clone, Debug, Default)]
pub struct HistoryEntry {
    pub created: i64,
    pub created_by: String,
    pub author: Option<String>,
    pub comment: Option<String>,
    pub empty_layer: bool,
}

impl HistoryEntry {
    pub fn to_json(&self) -> serde_json::Value {
        let mut h = serde_json::Map::new();
        h.insert("created".into(), super::time::format_rfc3339(self.created).into());
        h.insert("created_by".into(), self.created_by.clone().into());
        if let Some(a) = &self.author {
            h.insert("author".into(), a.clone().into());
        }
        if let Some(c) = &self.comment {
            h.insert("comment".into(), c.clone().into());
        }
        if self.empty_layer {
            h.insert("empty_layer".into(), true.into());
        }
        h.into()
    }
}

/// A new config: `base` (or an empty linux config for the host) plus one layer and one history entry.
/// Unknown fields of `base` survive, so Docker-specific settings are not lost on commit. A base that
/// is not a JSON object, or has no `rootfs.diff_ids` list, is an error (appending to it would give an
/// image whose config disagrees with its layers).
pub fn extend_config(
    base: Option<&serde_json::Value>,
    diff_id: &Digest,
    history: &HistoryEntry,
) -> Result<serde_json::Value> {
    if let Some(b) = base {
        config_diff_ids(b)?;
    }
    let mut cfg = base.cloned().unwrap_or_else(|| {
        let host = Platform::host();
        let mut m = serde_json::Map::new();
        m.insert("architecture".into(), host.architecture.into());
        if let Some(v) = host.variant {
            m.insert("variant".into(), v.into());
        }
        m.insert("os".into(), host.os.into());
        m.insert("config".into(), serde_json::json!({}));
        m.insert("rootfs".into(), serde_json::json!({"type": "layers", "diff_ids": []}));
        m.into()
    });
    let obj = cfg.as_object_mut().context("image config is not a JSON object")?;
    obj.insert("created".into(), super::time::format_rfc3339(history.created).into());
    match &history.author {
        Some(a) => obj.insert("author".into(), a.clone().into()),
        None => obj.remove("author"),
    };
    // Docker-only fields that describe the build container, not this image.
    obj.remove("container");
    obj.remove("container_config");
    let rootfs = obj.entry("rootfs").or_insert_with(|| serde_json::json!({"type": "layers", "diff_ids": []}));
    if let Some(ids) = rootfs.get_mut("diff_ids").and_then(|v| v.as_array_mut()) {
        ids.push(diff_id.to_string().into());
    }
    let hist = obj.entry("history").or_insert_with(|| serde_json::json!([]));
    match hist.as_array_mut() {
        Some(list) => list.push(history.to_json()),
        None => bail!("image config has a history that is not a list"),
    }
    Ok(cfg)
}

/// The diff_ids a config lists, bottom first.
pub fn config_diff_ids(config: &serde_json::Value) -> Result<Vec<Digest>> {
    anyhow::ensure!(config.is_object(), "image config is not a JSON object");
    let ids = config
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .context("image config has no rootfs.diff_ids list")?;
    ids.iter()
        .map(|v| v.as_str().context("rootfs.diff_ids holds a non-string").and_then(|s| Ok(Digest::parse(s)?)))
        .collect()
}

/// Serialises a config deterministically (serde_json keeps maps sorted without `preserve_order`).
pub fn config_bytes(config: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(config).expect("serialisable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_config_adds_layer_and_history() {
        let d = Digest::of_bytes(b"x");
        let h = HistoryEntry {
            created: 0,
            created_by: "strata import".into(),
            comment: Some("hi".into()),
            ..Default::default()
        };
        let c = extend_config(None, &d, &h).unwrap();
        assert_eq!(config_diff_ids(&c).unwrap(), vec![d.clone()]);
        let c2 = extend_config(Some(&c), &d, &h).unwrap();
        assert_eq!(config_diff_ids(&c2).unwrap().len(), 2);
        assert_eq!(c2["history"].as_array().unwrap().len(), 2);
        assert_eq!(c2["history"][1]["comment"], "hi");
        assert_eq!(config_bytes(&c2), config_bytes(&c2.clone()));
        assert!(extend_config(Some(&serde_json::json!([1])), &d, &h).is_err());
        assert!(extend_config(Some(&serde_json::json!({"os": "linux"})), &d, &h).is_err());
        let bad_history = serde_json::json!({"rootfs": {"diff_ids": []}, "history": 3});
        assert!(extend_config(Some(&bad_history), &d, &h).is_err());
    }

    #[test]
    fn manifest_round_trips_through_oci_spec() {
        let cfg = Descriptor::new(media::OCI_CONFIG, &Digest::of_bytes(b"c"), 1);
        let l = Descriptor::new(media::OCI_LAYER_GZIP, &Digest::of_bytes(b"l"), 2);
        let bytes = build_manifest(&cfg, std::slice::from_ref(&l));
        let m = parse_manifest(&bytes).unwrap();
        assert_eq!(m.config, cfg);
        assert_eq!(m.layers, vec![l]);
        assert_eq!(declared_media_type(&bytes).as_deref(), Some(media::OCI_MANIFEST));
    }

    #[test]
    fn platform_parsing_and_matching() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert!(p.matches(&Platform { os: "linux".into(), architecture: "arm64".into(), variant: None }));
        assert!(Platform::parse("linux").is_err());
    }
}

//! Image records (`images/<config hex>.json`) and tags (`images/tags.json`).
//!
//! Image ID = config digest (Docker's convention). The manifest and config are kept byte-exact in
//! `blobs/`, so digests survive save, load, pull and push.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{Store, records};
use crate::oci::{Digest, Reference};

/// One layer of an image: the unpacked tree (by diff_id) and the blob it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    pub diff_id: Digest,
    pub blob: Digest,
    pub blob_size: u64,
    pub media_type: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest.
    pub id: Digest,
    pub manifest: Digest,
    pub manifest_media_type: String,
    /// Bottom layer first, as in the config's rootfs.diff_ids.
    pub layers: Vec<LayerRef>,
    /// `name@digest` for each registry this manifest was pulled from or pushed to.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// Unix seconds when this image entered the store (orders `images`, `before=`/`since=`).
    pub added: i64,
    /// For committed images: the image the container was created from.
    #[serde(default)]
    pub parent: Option<Digest>,
}

/// `full reference (registry/repo:tag)` → image id.
pub type Tags = BTreeMap<String, Digest>;

impl Store {
    fn image_path(&self, id: &Digest) -> std::path::PathBuf {
        self.root.join("images").join(format!("{}.json", id.hex()))
    }

    fn tags_path(&self) -> std::path::PathBuf {
        self.root.join("images/tags.json")
    }

    pub fn tags(&self) -> Result<Tags> {
        Ok(records::read_optional(&self.tags_path())?.unwrap_or_default())
    }

    pub(crate) fn write_tags(&self, tags: &Tags) -> Result<()> {
        self.ensure_writable()?;
        records::write(&self.tmp_dir(), &self.tags_path(), tags)
    }

    pub fn image(&self, id: &Digest) -> Result<ImageRecord> {
        let p = self.image_path(id);
        let rec: ImageRecord = records::read(&p, || format!("no such image: {id}"))?;
        if rec.id != *id {
            bail!("corrupt store file {}: it records image {}", p.display(), rec.id);
        }
        Ok(rec)
    }

    /// Errors unless every layer of `image` is unpacked in the store (a store someone damaged).
    pub fn check_layers(&self, image: &ImageRecord) -> Result<()> {
        match image.layers.iter().find(|l| !self.has_layer(&l.diff_id)) {
            Some(l) => bail!(
                "image {} is damaged: its layer {} is missing from the store",
                image.id.short(),
                l.diff_id
            ),
            None => Ok(()),
        }
    }

    pub fn has_image(&self, id: &Digest) -> bool {
        self.image_path(id).is_file()
    }

    /// Every image, oldest first.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let ids = super::digest_names(&self.root.join("images"), ".json")?;
        let mut out = ids.iter().map(|id| self.image(id)).collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| (a.added, &a.id).cmp(&(b.added, &b.id)));
        Ok(out)
    }

    /// The config blob of an image, parsed loosely (unknown fields kept).
    pub fn image_config(&self, image: &ImageRecord) -> Result<serde_json::Value> {
        let bytes = self.read_blob(&image.id)?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("image {} has a corrupt config", image.id.short()))
    }

    /// Records an image whose config, manifest and layers are already in the store; then points
    /// `tags` at it. Order matters for crash safety: record first, tags last.
    pub fn add_image(&self, record: &ImageRecord, tags: &[Reference]) -> Result<()> {
        self.add_images(&[(record.clone(), tags.to_vec())])
    }

    /// [`Store::add_image`] for many images at once: each distinct record written once, then
    /// `tags.json` once, so loading thousands of names costs linear time, not a rewrite per name.
    pub fn add_images(&self, images: &[(ImageRecord, Vec<Reference>)]) -> Result<()> {
        self.ensure_writable()?;
        let mut written: std::collections::HashSet<&Digest> = std::collections::HashSet::new();
        for (record, _) in images {
            if written.insert(&record.id) {
                self.write_image_record(record)?;
            }
        }
        if images.iter().any(|(_, t)| !t.is_empty()) {
            let mut all = self.tags()?;
            for (record, tags) in images {
                for t in tags {
                    all.insert(t.clone().with_default_tag().to_string(), record.id.clone());
                }
            }
            self.write_tags(&all)?;
        }
        Ok(())
    }

    fn write_image_record(&self, record: &ImageRecord) -> Result<()> {
        for needed in [&record.id, &record.manifest] {
            if !self.has_blob(needed) {
                bail!("internal error: blob {needed} must be stored before its image");
            }
        }
        for l in &record.layers {
            if !self.has_layer(&l.diff_id) {
                bail!("internal error: layer {} must be stored before its image", l.diff_id);
            }
        }
        let mut rec = record.clone();
        if let Ok(old) = self.image(&record.id) {
            // Same config loaded again: keep when it first arrived and merge the digests. From
            // another format it comes with another manifest: the old one is garbage now.
            if old.manifest != rec.manifest {
                self.expect_garbage()?;
            }
            rec.added = old.added;
            for d in old.repo_digests {
                if !rec.repo_digests.contains(&d) {
                    rec.repo_digests.push(d);
                }
            }
        }
        records::write(&self.tmp_dir(), &self.image_path(&rec.id), &rec)
    }

    /// Points a tag at an image (the image must exist).
    pub fn tag(&self, id: &Digest, reference: &Reference) -> Result<()> {
        self.add_image(&self.image(id)?, std::slice::from_ref(reference))
    }

    /// Removes a tag; returns whether it existed.
    pub fn untag(&self, reference: &str) -> Result<bool> {
        let mut all = self.tags()?;
        let existed = all.remove(reference).is_some();
        if existed {
            self.write_tags(&all)?;
        }
        Ok(existed)
    }

    /// Deletes an image record (not its layers or blobs: `gc` does that).
    pub(crate) fn remove_image_record(&self, id: &Digest) -> Result<()> {
        self.ensure_writable()?;
        std::fs::remove_file(self.image_path(id)).with_context(|| format!("cannot remove image {id}"))
    }

    /// The full tag names pointing at an image, sorted.
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<String>> {
        Ok(self.tags()?.into_iter().filter(|(_, v)| v == id).map(|(k, _)| k).collect())
    }

    /// Resolves what a user typed: `name[:tag]`, `name@digest`, a full or short (≥ 4 hex) image id,
    /// `sha256:<id>`, or a manifest digest.
    pub fn resolve_image(&self, input: &str) -> Result<ImageRecord> {
        let hexpart = input.strip_prefix("sha256:").unwrap_or(input);
        let looks_like_id = hexpart.len() >= 4
            && hexpart.len() <= 64
            && hexpart.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if let Ok(reference) = Reference::parse_with_default_tag(input) {
            if let Some(d) = &reference.digest {
                let name = reference.name();
                // `name@digest` names the manifest we store, or the index a multi-platform pull
                // resolved (recorded verbatim in repo_digests).
                let exact = format!("{name}@{d}");
                let found = self.images()?.into_iter().find(|i| {
                    i.repo_digests.contains(&exact)
                        || (&i.manifest == d
                            && (i.repo_digests.iter().any(|r| r.starts_with(&format!("{name}@")))
                                || self
                                    .tags_of(&i.id)
                                    .map(|t| t.iter().any(|t| t.starts_with(&format!("{name}:"))))
                                    .unwrap_or(false)))
                });
                if let Some(img) = found {
                    return Ok(img);
                }
            } else if let Some(id) = self.tags()?.get(&reference.to_string()) {
                return self.image(id).with_context(|| format!("tag {reference} is dangling"));
            }
        }
        if looks_like_id {
            let matches: Vec<ImageRecord> = self
                .images()?
                .into_iter()
                .filter(|i| {
                    i.id.hex().starts_with(hexpart)
                        || (input.starts_with("sha256:")
                            && hexpart.len() == 64
                            && i.manifest.hex() == hexpart)
                })
                .collect();
            match matches.len() {
                1 => return Ok(matches.into_iter().next().unwrap()),
                0 => {}
                _ => bail!("image id prefix {input:?} is ambiguous: it matches {} images", matches.len()),
            }
        }
        if input.starts_with("sha256:") && !looks_like_id {
            bail!("invalid image id {input:?}: expected sha256: and 4 to 64 lowercase hex digits");
        }
        Reference::parse(input).map_err(anyhow::Error::from)?;
        bail!("no such image: {input}")
    }
}

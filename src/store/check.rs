//! `system check`: is the store sound? Every blob against its digest, every image record against
//! its manifest and config, layer trees against their records, tags, containers, mount records;
//! plus what is left over (unreferenced, interrupted) with its size. `repair` removes what is
//! unreferenced and re-derives what can be (a layer tree from its verified blob).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::layers::{LayerExpectation, TreeSummary};
use super::usage::dir_size;
use super::{ImageRecord, Store, blobs::Expected, records, staging};
use crate::layer::whiteout::{WhiteoutForm, is_overlay_whiteout, whiteout_form};
use crate::oci::Digest;
use crate::oci::image::config_diff_ids;

/// Something that makes the store unsound.
#[derive(Debug, Clone)]
pub struct Problem {
    /// What it concerns: `image 1234abcd`, `blob sha256:…`, `tag a:b`, `container …`.
    pub subject: String,
    pub what: String,
    /// What `--repair` did about it, if anything.
    pub repaired: Option<String>,
}

/// Something taking space that nothing uses, or a trace of an interrupted command.
#[derive(Debug, Clone)]
pub struct Leftover {
    pub kind: &'static str,
    pub name: String,
    pub bytes: u64,
    /// The next writer removes it (staging in `tmp/`, or garbage under a `gc-pending` mark).
    pub next_writer_removes: bool,
    pub removed: bool,
}

#[derive(Debug, Default)]
pub struct Report {
    pub blobs: usize,
    pub layers: usize,
    pub images: usize,
    pub tags: usize,
    pub containers: usize,
    pub mounts: usize,
    pub problems: Vec<Problem>,
    pub leftovers: Vec<Leftover>,
}

impl Report {
    /// Sound: no problem left unrepaired (leftovers take space but break nothing).
    pub fn is_sound(&self) -> bool {
        self.problems.iter().all(|p| p.repaired.is_some())
    }

    fn problem(&mut self, subject: impl Into<String>, what: impl Into<String>) -> usize {
        self.problems.push(Problem { subject: subject.into(), what: what.into(), repaired: None });
        self.problems.len() - 1
    }
}

impl Store {
    /// Checks the whole store; with `repair` (writer lock needed) fixes what it can.
    pub fn check(&self, repair: bool) -> Result<Report> {
        if repair {
            self.ensure_writable()?;
        }
        let mut r = Report::default();
        let marked = self.gc_marker().exists() || self.removing_path().exists();
        // Before any repair, whose own staging marks the store too.
        let intents: Vec<(PathBuf, &str)> =
            [(self.removing_path(), "interrupted rmi"), (self.gc_marker(), "garbage mark")]
                .into_iter()
                .filter(|(p, _)| p.exists())
                .collect();

        // Blobs: each must hash to its name.
        let mut good_blobs = HashSet::new();
        for b in self.list_blobs()? {
            r.blobs += 1;
            match verify_blob(self, &b) {
                Ok(()) => {
                    good_blobs.insert(b);
                }
                Err(e) => {
                    let i = r.problem(format!("blob {b}"), e);
                    if repair {
                        self.remove_blob(&b)?;
                        r.problems[i].repaired = Some("removed".into());
                    }
                }
            }
        }

        // Layers: a directory needs its meta (naming it) and its tree.
        let mut good_layers = HashSet::new();
        let mut incomplete = Vec::new();
        for l in self.list_layers()? {
            r.layers += 1;
            let meta = self.layer_meta(&l);
            let fs = self.layer_fs(&l);
            let err = match &meta {
                Err(e) => Some(format!("{e:#}")),
                Ok(m) if m.diff_id != l => Some(format!("its meta names layer {}", m.diff_id)),
                Ok(_) if !fs.is_dir() => Some("its tree (fs/) is missing".to_string()),
                Ok(m) => match (m.tree, tree_and_stray_whiteouts(&fs)) {
                    (_, Err(e)) => Some(format!("its tree is unreadable: {e:#}")),
                    (_, Ok((_, Some(stray)))) => Some(format!(
                        "{stray} is a character device 0/0 (an overlayfs whiteout) but only a name of \
                         252-255 bytes is stored that way (others are .wh. files)"
                    )),
                    (Some(want), Ok((got, None))) if want != got => Some(format!(
                        "its tree has {} names and {} bytes of files, {} and {} when stored",
                        got.names, got.bytes, want.names, want.bytes
                    )),
                    _ => None,
                },
            };
            match err {
                None => {
                    self.check_layer_record(&mut r, &l, &fs, repair)?;
                    good_layers.insert(l);
                }
                Some(e) => incomplete.push((l, e)),
            }
        }
        // Directories under layers/ that are not layers at all (an interrupted older version).
        for name in stray_names(&self.root.join("layers"))? {
            r.leftovers.push(Leftover {
                kind: "layer dir",
                name: format!("layers/{name}"),
                bytes: dir_size(&self.root.join("layers").join(&name)),
                next_writer_removes: false,
                removed: false,
            });
        }

        // Images: record vs manifest vs config vs layers.
        let images = self.image_records(&mut r)?;
        let mut live_blobs: HashSet<Digest> = HashSet::new();
        let mut live_layers: HashMap<Digest, (Digest, u64, String)> = HashMap::new();
        for img in &images {
            r.images += 1;
            live_blobs.insert(img.id.clone());
            live_blobs.insert(img.manifest.clone());
            for l in &img.layers {
                live_blobs.insert(l.blob.clone());
                live_layers.insert(l.diff_id.clone(), (l.blob.clone(), l.blob_size, l.media_type.clone()));
            }
            for e in image_problems(self, img, &good_blobs) {
                r.problem(format!("image {}", img.id.short()), e);
            }
        }

        // Build cache records keep what they name as image records do. One that can't be read
        // (or an older strata's) or names what is gone is not damage, only a cache miss for ever:
        // a leftover, which --repair (or `builder prune`) removes.
        for (key, rec) in self.cache_records()? {
            let gone = rec.as_ref().and_then(|r| {
                let missing = r.layers.iter().find(|l| !self.layer_dir(&l.diff_id).exists());
                missing
                    .map(|l| format!("layer {}", l.diff_id))
                    .or_else(|| (!self.blob_path(&r.config).exists()).then(|| format!("config {}", r.config)))
            });
            let why = match (&rec, gone) {
                (None, _) => Some("unreadable or from an older strata".to_string()),
                (Some(_), Some(what)) => Some(format!("names {what}, which is missing")),
                (Some(_), None) => None,
            };
            if let Some(why) = why {
                let p = self.build_cache_dir().join(&key);
                r.leftovers.push(Leftover {
                    kind: "cache record",
                    name: format!("builder/cache/{key} ({why})"),
                    bytes: p.metadata().map(|m| m.len()).unwrap_or(0),
                    next_writer_removes: false,
                    removed: false,
                });
                if repair {
                    self.remove_cache_record(&key)?;
                    r.leftovers.last_mut().expect("just pushed").removed = true;
                    continue;
                }
            }
            // What a record names stays until the record goes (as garbage collection sees it).
            for rec in rec.into_iter() {
                live_blobs.insert(rec.config);
                for l in rec.layers {
                    live_blobs.insert(l.blob.clone());
                    live_layers.entry(l.diff_id).or_insert((l.blob, l.blob_size, l.media_type));
                }
            }
        }

        // Incomplete layers: re-derived from their blob when an image needs them and it is good.
        for (l, e) in incomplete {
            let Some((blob, size, media_type)) = live_layers.get(&l) else {
                r.leftovers.push(Leftover {
                    kind: "layer",
                    name: format!("{l} (incomplete: {e})"),
                    bytes: dir_size(&self.layer_dir(&l)),
                    next_writer_removes: marked,
                    removed: false,
                });
                if repair {
                    self.remove_layer(&l)?;
                    r.leftovers.last_mut().expect("just pushed").removed = true;
                }
                continue;
            };
            let i = r.problem(format!("layer {}", l.short()), format!("incomplete: {e}"));
            if repair && good_blobs.contains(blob) {
                let expect = LayerExpectation {
                    blob: Some(Expected { digest: blob.clone(), size: Some(*size) }),
                    diff_id: Some(l.clone()),
                    media_type: Some(media_type.clone()),
                };
                self.remove_layer(&l)?;
                let redone = self.open_blob(blob).and_then(|f| self.ingest_layer(f, &expect, "repair"));
                r.problems[i].repaired = match redone {
                    Ok(_) => Some(format!("unpacked again from blob {}", blob.short())),
                    Err(e) => {
                        r.problems[i].what += &format!(" (re-deriving it failed: {e:#})");
                        None
                    }
                };
            } else if !good_blobs.contains(blob) {
                r.problems[i].what += " (its blob is missing or corrupt: pull or load the image again)";
            }
        }
        // Images whose layers are missing entirely.
        for img in &images {
            for l in &img.layers {
                if !self.layer_dir(&l.diff_id).exists() {
                    let i = r.problem(
                        format!("image {}", img.id.short()),
                        format!("layer {} is missing", l.diff_id),
                    );
                    if repair && good_blobs.contains(&l.blob) {
                        let expect = LayerExpectation {
                            blob: Some(Expected { digest: l.blob.clone(), size: Some(l.blob_size) }),
                            diff_id: Some(l.diff_id.clone()),
                            media_type: Some(l.media_type.clone()),
                        };
                        if let Ok(f) = self.open_blob(&l.blob) {
                            if self.ingest_layer(f, &expect, "repair").is_ok() {
                                r.problems[i].repaired =
                                    Some(format!("unpacked from blob {}", l.blob.short()));
                            }
                        }
                    }
                }
            }
        }

        // Tags: each must name an image.
        let have: HashSet<&Digest> = images.iter().map(|i| &i.id).collect();
        let mut tags = self.tags()?;
        let dangling: Vec<String> =
            tags.iter().filter(|(_, id)| !have.contains(id)).map(|(t, _)| t.clone()).collect();
        r.tags = tags.len();
        for t in &dangling {
            let i =
                r.problem(format!("tag {t}"), format!("names image {}, which is missing", tags[t].short()));
            if repair {
                r.problems[i].repaired = Some("removed".into());
            }
        }
        if repair && !dangling.is_empty() {
            tags.retain(|t, _| !dangling.contains(t));
            self.write_tags(&tags)?;
        }

        // Containers: record, image, upper and work.
        let containers_dir = self.root.join("containers");
        for e in std::fs::read_dir(&containers_dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = e.path().join("meta.json");
            let rec = records::read_optional::<super::containers::ContainerRecord>(&meta);
            match rec {
                Ok(Some(c)) => {
                    r.containers += 1;
                    let subject = format!("container {}", &name[..name.len().min(12)]);
                    if c.id != name {
                        r.problem(&subject, format!("its record names container {:?}", c.id));
                    }
                    if !have.contains(&c.image) {
                        r.problem(&subject, format!("its image {} is missing", c.image.short()));
                    }
                    for d in ["upper", "work"] {
                        if !e.path().join(d).is_dir() {
                            r.problem(&subject, format!("its {d} directory is missing"));
                        }
                    }
                    if let Some(m) =
                        records::read_runtime::<super::containers::MountRecord>(&e.path().join("mount.json"))
                    {
                        r.mounts += 1;
                        if !alive(m.pid) {
                            self.stale_mount(&mut r, e.path().join("mount.json"), &m.mountpoint, repair)?;
                        }
                    }
                }
                Ok(None) => {
                    r.leftovers.push(Leftover {
                        kind: "container dir",
                        name: format!("containers/{name} (no meta.json)"),
                        bytes: dir_size(&e.path()),
                        next_writer_removes: false,
                        removed: false,
                    });
                }
                Err(err) => {
                    r.problem(format!("container {name}"), format!("{err:#}"));
                }
            }
        }
        let mounts_dir = self.root.join("mounts");
        if let Ok(rd) = std::fs::read_dir(&mounts_dir) {
            for e in rd.flatten() {
                let p = e.path();
                match records::read_runtime::<super::mounts::ImageMount>(&p) {
                    Some(m) => {
                        r.mounts += 1;
                        if !alive(m.pid) {
                            self.stale_mount(&mut r, p, &m.mountpoint, repair)?;
                        } else if !have.contains(&m.image) {
                            r.problem(format!("mount {}", m.mountpoint.display()), "its image is missing");
                        }
                    }
                    None => self.stale_mount(&mut r, p.clone(), &p, repair)?,
                }
            }
        }

        // Unreferenced blobs and layers.
        for b in self.list_blobs()? {
            if !live_blobs.contains(&b) {
                r.leftovers.push(Leftover {
                    kind: "blob",
                    name: b.to_string(),
                    bytes: self.blob_size(&b).unwrap_or(0),
                    next_writer_removes: marked,
                    removed: false,
                });
            }
        }
        for l in self.list_layers()? {
            if !live_layers.contains_key(&l) && good_layers.contains(&l) {
                r.leftovers.push(Leftover {
                    kind: "layer",
                    name: l.to_string(),
                    bytes: self.layer_meta(&l).map(|m| m.data_bytes).unwrap_or(0),
                    next_writer_removes: marked,
                    removed: false,
                });
            }
        }
        // Staging a killed command left, and the marks of interrupted work.
        for e in std::fs::read_dir(self.tmp_dir())?.flatten() {
            if [super::pending::GC_MARKER, super::pending::REMOVING].iter().any(|k| e.file_name() == *k) {
                continue; // reported below as what they are
            }
            let p = e.path();
            let bytes = if p.is_dir() { dir_size(&p) } else { p.metadata().map(|m| m.len()).unwrap_or(0) };
            let name = format!("tmp/{}", e.file_name().to_string_lossy());
            r.leftovers.push(Leftover {
                kind: "staging",
                name,
                bytes,
                next_writer_removes: true,
                removed: false,
            });
        }
        for (p, what) in intents {
            {
                let name = format!("{} ({what})", p.file_name().unwrap_or_default().to_string_lossy());
                r.leftovers.push(Leftover {
                    kind: "intent",
                    name,
                    bytes: 0,
                    next_writer_removes: true,
                    removed: false,
                });
            }
        }

        if repair {
            let collected = self.collect_garbage()?;
            super::staging::clear(&self.tmp_dir())?;
            for l in r.leftovers.iter_mut() {
                let gone = match l.kind {
                    "blob" => collected.blobs.iter().any(|b| b.to_string() == l.name),
                    "layer" => l.removed || collected.layers.iter().any(|d| d.to_string() == l.name),
                    "staging" | "intent" => true,
                    "layer dir" | "container dir" => {
                        let p = self.root.join(l.name.split(' ').next().unwrap_or_default());
                        std::fs::remove_dir_all(&p).is_ok()
                    }
                    _ => l.removed,
                };
                l.removed = gone;
            }
        }
        Ok(r)
    }

    /// The record of a sound layer tree's directories (`union::layer_names`) must be the one the
    /// tree gives (a mount trusts it instead of reading the tree); `--repair` writes it again.
    /// A layer stored by an older version has none, which is no problem.
    fn check_layer_record(&self, r: &mut Report, l: &Digest, fs: &Path, repair: bool) -> Result<()> {
        use crate::union::layer_names;
        let what = match layer_names::verify_beside(fs) {
            Ok(None | Some(true)) => return Ok(()),
            Ok(Some(false)) => "its record of names (names) is not what its tree holds".to_string(),
            Err(e) => format!("its record of names (names) can't be checked: {e}"),
        };
        let i = r.problem(format!("layer {l}"), what);
        if repair {
            let staged = staging::tmp_path(&self.tmp_dir(), "names");
            let dest = self.layer_dir(l).join(layer_names::FILE_NAME);
            let redone = layer_names::write(fs, &staged)
                .map_err(anyhow::Error::from)
                .and_then(|_| staging::rename_in(&staged, &dest));
            r.problems[i].repaired = match redone {
                Ok(()) => Some("written again from the tree".into()),
                Err(e) => {
                    let _ = std::fs::remove_file(&staged);
                    tracing::warn!("cannot write the record of layer {l} again: {e:#}");
                    None
                }
            };
        }
        Ok(())
    }

    /// Image records; unreadable ones are problems (and, repaired, removed).
    fn image_records(&self, r: &mut Report) -> Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        for id in super::digest_names(&self.root.join("images"), ".json")? {
            match self.image(&id) {
                Ok(img) => out.push(img),
                Err(e) => {
                    r.problem(format!("image {}", id.short()), format!("{e:#}"));
                }
            }
        }
        Ok(out)
    }

    fn stale_mount(
        &self,
        r: &mut Report,
        record: PathBuf,
        mountpoint: &std::path::Path,
        repair: bool,
    ) -> Result<()> {
        r.leftovers.push(Leftover {
            kind: "mount record",
            name: format!("{} (its daemon is gone)", mountpoint.display()),
            bytes: 0,
            next_writer_removes: false,
            removed: false,
        });
        if repair {
            std::fs::remove_file(&record).ok();
            r.leftovers.last_mut().expect("just pushed").removed = true;
        }
        Ok(())
    }
}

/// Streams a blob through sha256.
fn verify_blob(store: &Store, digest: &Digest) -> std::result::Result<(), String> {
    let f = store.open_blob(digest).map_err(|e| format!("{e:#}"))?;
    let mut w = crate::oci::digest::HashingWriter::new(std::io::sink());
    std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, f), &mut w)
        .map_err(|e| format!("unreadable: {e}"))?;
    let (_, got, _) = w.finish();
    if got != *digest {
        return Err(format!("corrupt: its content hashes to {got}"));
    }
    Ok(())
}

/// What is wrong with one image record against its manifest and config.
fn image_problems(store: &Store, img: &ImageRecord, good: &HashSet<Digest>) -> Vec<String> {
    let mut out = Vec::new();
    for (what, d) in [("config", &img.id), ("manifest", &img.manifest)] {
        if !good.contains(d) {
            out.push(format!("its {what} blob {d} is missing or corrupt"));
        }
    }
    for l in &img.layers {
        if !good.contains(&l.blob) {
            out.push(format!("its layer blob {} is missing or corrupt", l.blob));
        }
    }
    if !out.is_empty() {
        return out;
    }
    let manifest: serde_json::Value = match store.read_blob(&img.manifest).map(|b| serde_json::from_slice(&b))
    {
        Ok(Ok(v)) => v,
        _ => return vec![format!("its manifest {} is not JSON", img.manifest)],
    };
    let config_digest = manifest.pointer("/config/digest").and_then(|v| v.as_str());
    if config_digest != Some(img.id.to_string().as_str()) {
        out.push(format!(
            "its manifest names config {}, the record {}",
            config_digest.unwrap_or("none"),
            img.id
        ));
    }
    let blobs: Vec<&str> = manifest
        .get("layers")
        .and_then(|l| l.as_array())
        .map(|a| a.iter().filter_map(|d| d.get("digest").and_then(|v| v.as_str())).collect())
        .unwrap_or_default();
    let recorded: Vec<String> = img.layers.iter().map(|l| l.blob.to_string()).collect();
    if blobs != recorded {
        out.push(format!(
            "its manifest lists {} layer blobs that differ from its record's {}",
            blobs.len(),
            recorded.len()
        ));
    }
    match store.image_config(img).and_then(|c| config_diff_ids(&c)) {
        Ok(ids) => {
            let recorded: Vec<&Digest> = img.layers.iter().map(|l| &l.diff_id).collect();
            if ids.iter().collect::<Vec<_>>() != recorded {
                out.push("its config's diff_ids differ from its record's layers".to_string());
            }
        }
        Err(e) => out.push(format!("its config: {e:#}")),
    }
    out
}

/// A layer tree's summary, and the first 0/0 character device in it that is not a whiteout of
/// a long name (unpack writes `.wh.` files for all others: such a device hides a lower file by
/// accident). The rule is whiteout.rs's [`whiteout_form`].
fn tree_and_stray_whiteouts(fs: &std::path::Path) -> Result<(TreeSummary, Option<String>)> {
    let mut stray = None;
    let sum = TreeSummary::walk(fs, |path, m| {
        let device = is_overlay_whiteout(m);
        let name = path.file_name().unwrap_or_default();
        if device && stray.is_none() && whiteout_form(name) != WhiteoutForm::Device {
            let inside = path.strip_prefix(fs).unwrap_or(path);
            stray = Some(format!("/{}", inside.display()));
        }
    })?;
    Ok((sum, stray))
}

/// Names in `dir` that are not a digest (what `list_layers` skips).
fn stray_names(dir: &std::path::Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if Digest::from_hex(&name).is_err() {
            out.push(name);
        }
    }
    Ok(out)
}

fn alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// For output: leftovers grouped by kind, sizes summed.
pub fn totals(leftovers: &[Leftover]) -> BTreeMap<&'static str, (usize, u64)> {
    let mut out = BTreeMap::new();
    for l in leftovers {
        let e = out.entry(l.kind).or_insert((0, 0));
        e.0 += 1;
        e.1 += l.bytes;
    }
    out
}

//! `pull`: resolve the reference, learn every layer's diff_id from the config, reuse the layers the
//! store has, stream the rest (up to 3 at once) through `Store::ingest_layer` — verified and unpacked
//! in one pass — then record the image with its manifest bytes exactly as published.

use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};

use super::blob_reader::BlobReader;
use super::client::{Client, ClientOptions};
use super::endpoint::{blob_path, pull_scope};
use super::progress::{Item, Progress};
use super::resolve::resolve;
use crate::oci::image::{Descriptor, Platform, config_diff_ids};
use crate::oci::{Digest, Reference, media};
use crate::store::blobs::Expected;
use crate::store::layers::{LayerExpectation, now_unix};
use crate::store::{ImageRecord, LayerRef, LockMode, Store};

/// Layers downloaded at the same time.
pub const PARALLEL: usize = 3;

/// Configs larger than this are refused.
const MAX_CONFIG: u64 = 8 << 20;

#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// The platform to pick from an index (default: this machine's).
    pub platform: Option<Platform>,
    pub client: ClientOptions,
}

/// What a pull did.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// The reference pulled, with `:latest` added when no tag or digest was given.
    pub reference: Reference,
    /// The digest the reference resolved to (the index's for a multi-platform image).
    pub digest: Digest,
    /// The image id (config digest).
    pub image: Digest,
    /// Layers fetched (the others were already in the store).
    pub downloaded: usize,
    /// The store already had this image under this name.
    pub up_to_date: bool,
}

/// Pulls `reference` into the store that `open` opens. The store's writer lock is taken only once
/// the manifest and config are known.
pub fn pull(
    open: &dyn Fn(LockMode) -> Result<Store>,
    reference: &Reference,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<Pulled> {
    let reference = reference.clone().with_default_tag();
    let client = Client::new(&reference.registry, &opts.client)?;
    let repo = reference.repository.as_str();
    let scope = pull_scope(repo);
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let resolved = resolve(&client, &reference, &platform, &scope)?;
    let label = reference.tag.clone().unwrap_or_else(|| resolved.digest.to_string());
    progress.message(&format!("{label}: Pulling from {}", reference.repository));

    let manifest = &resolved.parsed;
    let config_type = manifest.config.media_type.as_str();
    if config_type != media::OCI_CONFIG && config_type != media::DOCKER_CONFIG {
        bail!("{} is not a container image (its config is a {config_type})", resolved.manifest.digest);
    }
    let config = config_bytes(open, &client, repo, &scope, &manifest.config)?;
    let config_json: serde_json::Value = serde_json::from_slice(&config)
        .with_context(|| format!("config {} is not JSON", manifest.config.digest))?;
    let diff_ids =
        config_diff_ids(&config_json).with_context(|| format!("config {}", manifest.config.digest))?;
    if diff_ids.len() != manifest.layers.len() {
        bail!(
            "manifest {} lists {} layers but its config lists {} diff_ids",
            resolved.manifest.digest,
            manifest.layers.len(),
            diff_ids.len()
        );
    }

    if let (Some(want), None) = (&opts.platform, &resolved.index) {
        check_platform(&config_json, want)?;
    }

    let store = open(LockMode::Exclusive)?;
    let mut layers: Vec<Option<LayerRef>> = vec![None; diff_ids.len()];
    let mut todo = Vec::new();
    let mut items = Vec::new();
    // An image the store already has from this manifest gets no layer lines at all, as with Docker.
    let known = store.image(&manifest.config.digest).is_ok_and(|r| r.manifest == resolved.manifest.digest);
    for (i, (desc, diff_id)) in manifest.layers.iter().zip(&diff_ids).enumerate() {
        if store.has_layer(diff_id) && store.has_blob(&desc.digest) {
            if !known {
                progress.done(desc.digest.short(), "Already exists");
            }
            layers[i] = Some(layer_ref(desc, diff_id));
        } else if todo.iter().any(|(_, d, _): &(usize, &Descriptor, &Digest)| d.digest == desc.digest) {
            // The same blob twice in one image: fetched once, recorded twice (below).
        } else {
            items.push(progress.item(desc.digest.short(), "Pulling fs layer"));
            todo.push((i, desc, diff_id));
        }
    }
    let fetched = fetch_layers(&store, &client, repo, &scope, &todo, &items)?;
    for (i, l) in fetched {
        layers[i] = Some(l);
    }
    // Layers repeated in the manifest take the first copy's result.
    for (i, (desc, diff_id)) in manifest.layers.iter().zip(&diff_ids).enumerate() {
        if layers[i].is_none() {
            layers[i] = Some(layer_ref(desc, diff_id));
        }
    }
    let layers: Vec<LayerRef> = layers.into_iter().flatten().collect();

    let config_digest = store.put_blob(
        &config[..],
        Some(&Expected { digest: manifest.config.digest.clone(), size: Some(manifest.config.size) }),
    )?;
    let manifest_digest = store.put_blob_bytes(&resolved.manifest.bytes)?;
    if let Some(index) = &resolved.index {
        store.put_blob_bytes(&index.bytes)?;
    }
    let repo_digest = format!("{}@{}", reference.name(), resolved.digest);
    let tags: Vec<Reference> = match reference.digest {
        None => vec![reference.clone()],
        Some(_) => Vec::new(),
    };
    let up_to_date = todo.is_empty()
        && store.image(&config_digest).is_ok_and(|old| {
            old.manifest == manifest_digest
                && match tags.first() {
                    Some(t) => store.tags().is_ok_and(|all| all.get(&t.to_string()) == Some(&config_digest)),
                    None => old.repo_digests.contains(&repo_digest),
                }
        });
    let record = ImageRecord {
        id: config_digest.clone(),
        manifest: manifest_digest,
        manifest_media_type: resolved.manifest.media_type.clone(),
        layers,
        repo_digests: vec![repo_digest],
        added: now_unix(),
        parent: None,
    };
    store.add_image(&record, &tags)?;
    Ok(Pulled {
        reference,
        digest: resolved.digest,
        image: config_digest,
        downloaded: todo.len(),
        up_to_date,
    })
}

/// A single-platform image pulled with `--platform` must be for that platform, as Docker checks.
fn check_platform(config: &serde_json::Value, want: &Platform) -> Result<()> {
    let field = |k: &str| config.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let actual = Platform {
        os: field("os").unwrap_or_default(),
        architecture: field("architecture").unwrap_or_default(),
        variant: field("variant"),
    };
    if !want.matches(&actual) {
        bail!(
            "the image was found but does not match the specified platform: wanted {want}, actual: {actual}"
        );
    }
    Ok(())
}

fn layer_ref(desc: &Descriptor, diff_id: &Digest) -> LayerRef {
    LayerRef {
        diff_id: diff_id.clone(),
        blob: desc.digest.clone(),
        blob_size: desc.size,
        media_type: desc.media_type.clone(),
    }
}

/// The config bytes: from the store when it has them (no request), else fetched and verified.
fn config_bytes(
    open: &dyn Fn(LockMode) -> Result<Store>,
    client: &Client,
    repo: &str,
    scope: &str,
    desc: &Descriptor,
) -> Result<Vec<u8>> {
    {
        let store = open(LockMode::Shared)?;
        if store.has_blob(&desc.digest) {
            return store.read_blob(&desc.digest);
        }
    }
    if desc.size > MAX_CONFIG {
        bail!("config {} is {} bytes, more than strata accepts", desc.digest, desc.size);
    }
    let mut bytes = Vec::new();
    BlobReader::open(client, &blob_path(repo, &desc.digest), scope)?
        .take(desc.size + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot download config {}", desc.digest))?;
    let digest = Digest::of_bytes(&bytes);
    if digest != desc.digest || bytes.len() as u64 != desc.size {
        bail!(
            "config {}: blob digest mismatch: the registry sent {} bytes hashing to {digest}",
            desc.digest,
            bytes.len()
        );
    }
    Ok(bytes)
}

/// Downloads and ingests `todo` with up to [`PARALLEL`] threads; the first failure (in layer
/// order) stops the others from starting new layers.
fn fetch_layers(
    store: &Store,
    client: &Client,
    repo: &str,
    scope: &str,
    todo: &[(usize, &Descriptor, &Digest)],
    items: &[Item],
) -> Result<Vec<(usize, LayerRef)>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<(usize, Result<LayerRef>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(todo.len()) {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= todo.len() || failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let (_, desc, diff_id) = todo[n];
                    let r = fetch_layer(store, client, repo, scope, desc, diff_id, &items[n])
                        .with_context(|| format!("layer {}", desc.digest));
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                        items[n].finish("Download failed");
                    }
                    results.lock().unwrap_or_else(|p| p.into_inner()).push((n, r));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(n, _)| *n);
    let mut out = Vec::new();
    for (n, r) in results {
        out.push((todo[n].0, r?));
    }
    Ok(out)
}

fn fetch_layer(
    store: &Store,
    client: &Client,
    repo: &str,
    scope: &str,
    desc: &Descriptor,
    diff_id: &Digest,
    item: &Item,
) -> Result<LayerRef> {
    let reader = BlobReader::open(client, &blob_path(repo, &desc.digest), scope)?;
    item.start_bytes("Downloading", Some(desc.size));
    let counted = Counted { inner: reader, item };
    let expect = LayerExpectation {
        blob: Some(Expected { digest: desc.digest.clone(), size: Some(desc.size) }),
        diff_id: Some(diff_id.clone()),
        media_type: Some(desc.media_type.clone()),
    };
    let layer = store.ingest_layer(counted, &expect, "pull")?;
    item.finish("Pull complete");
    Ok(layer)
}

/// Counts bytes for a progress bar as they pass.
struct Counted<'a, R> {
    inner: R,
    item: &'a Item,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.item.inc(n as u64);
        Ok(n)
    }
}

/// `Store` is shared by the download threads.
const _: fn() = || {
    fn is_sync<T: Sync + Send>() {}
    is_sync::<Store>();
};

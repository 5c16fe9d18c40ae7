//! `push`: every layer blob (skipped when the registry has it, cross-mounted when the image came
//! from another repository of the same registry, else uploaded; up to 3 at once), then the config,
//! then the manifest bytes exactly as stored — so an image keeps its digest wherever it goes.
//! Layers stored uncompressed are compressed first, once (see `compress`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};

use super::client::{Client, ClientOptions, Request};
use super::compress;
use super::endpoint::{manifest_path, push_scope};
use super::payload::Payload;
use super::progress::{Item, Progress};
use super::pull::PARALLEL;
use super::upload;
use crate::layer::Compression;
use crate::oci::{Digest, Reference};
use crate::store::{ImageRecord, LockMode, Store};

/// What a push did.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub reference: Reference,
    /// The manifest digest (the same as in the store).
    pub digest: Digest,
    /// The manifest size in bytes.
    pub size: u64,
}

/// How one blob got to the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobOutcome {
    AlreadyExists,
    Mounted { from: String },
    Pushed,
}

/// Pushes the local image named `reference` to its registry, then records the new RepoDigest.
/// Layers stored uncompressed are compressed with `compression` first (`None`: sent as stored).
pub fn push(
    open: &dyn Fn(LockMode) -> Result<Store>,
    reference: &Reference,
    opts: &ClientOptions,
    compression: Compression,
    progress: &Progress,
) -> Result<Pushed> {
    if reference.digest.is_some() {
        bail!("cannot push a digest reference; push NAME[:TAG]");
    }
    let reference = reference.clone().with_default_tag();
    let tag = reference.tag.clone().unwrap_or_default();
    let resolve = |store: &Store| {
        store.resolve_image(&reference.to_string()).with_context(|| {
            format!(
                "no such image: {} (tag it first: strata tag IMAGE {})",
                reference.familiar(),
                reference.familiar()
            )
        })
    };
    let mut store = open(LockMode::Shared)?;
    let mut record = resolve(&store)?;
    let client = Client::new(&reference.registry, opts)?;
    let repo = reference.repository.as_str();
    progress.message(&format!("The push refers to repository [{}]", reference.name()));
    if compression != Compression::None && compress::needs_compression(&record) {
        drop(store);
        let writer = open(LockMode::Exclusive)?;
        record = compress::compress_layers(&writer, &resolve(&writer)?, compression, progress)?;
        drop(writer);
        store = open(LockMode::Shared)?;
    }
    let manifest = store.read_blob(&record.manifest)?;
    let config = store.read_blob(&record.id)?;

    let from = mount_source(&record, &reference);
    let scope = match &from {
        Some(f) => format!("{} repository:{f}:pull", push_scope(repo)),
        None => push_scope(repo),
    };
    // Each distinct blob once, top layer first as Docker shows them.
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    for l in record.layers.iter().rev() {
        if !blobs.iter().any(|(d, _)| *d == l.blob) {
            blobs.push((l.blob.clone(), l.blob_size));
        }
    }
    let dest = Destination { client: &client, repo, scope: &scope, from: from.as_deref() };
    let items: Vec<Item> = blobs.iter().map(|(d, _)| progress.item(d.short(), "Preparing")).collect();
    let next = AtomicUsize::new(0);
    let errors: Mutex<Vec<(usize, anyhow::Error)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(blobs.len()) {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= blobs.len() || !errors.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                        return;
                    }
                    let (digest, size) = &blobs[n];
                    let r = push_blob(&store, &dest, digest, *size, &items[n]);
                    match r {
                        Ok(BlobOutcome::AlreadyExists) => items[n].finish("Layer already exists"),
                        Ok(BlobOutcome::Mounted { from }) => items[n].finish(&format!("Mounted from {from}")),
                        Ok(BlobOutcome::Pushed) => items[n].finish("Pushed"),
                        Err(e) => {
                            items[n].finish("Push failed");
                            errors
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((n, e.context(format!("layer {digest}"))));
                        }
                    }
                }
            });
        }
    });
    let mut errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errors.sort_by_key(|(n, _)| *n);
    if let Some((_, e)) = errors.into_iter().next() {
        return Err(e);
    }
    if !upload::exists(&client, repo, &scope, &record.id)? {
        upload::send_bytes(&client, repo, &scope, &config, &record.id)
            .with_context(|| format!("config {}", record.id))?;
    }
    let req = Request::new("PUT", manifest_path(repo, &tag), &scope)
        .header("Content-Type", record.manifest_media_type.clone())
        .body(Payload::Bytes(&manifest));
    let resp = client.send_expect(&req, &[201]).with_context(|| format!("manifest {}", record.manifest))?;
    if let Some(h) = Client::header(&resp, "docker-content-digest") {
        if h != record.manifest.to_string() {
            bail!("the registry stored the manifest as {h}, but its bytes hash to {}", record.manifest);
        }
    }
    drop(store);

    // Remember where the image now lives (RepoDigests), as Docker does.
    let store = open(LockMode::Exclusive)?;
    if let Ok(mut rec) = store.image(&record.id) {
        let rd = format!("{}@{}", reference.name(), record.manifest);
        if !rec.repo_digests.contains(&rd) {
            rec.repo_digests.push(rd);
            store.add_image(&rec, &[])?;
        }
    }
    Ok(Pushed { reference, digest: record.manifest, size: manifest.len() as u64 })
}

/// Another repository of the same registry this image was pulled from or pushed to.
fn mount_source(record: &ImageRecord, target: &Reference) -> Option<String> {
    record.repo_digests.iter().find_map(|rd| {
        let name = rd.split('@').next()?;
        let r = Reference::parse(name).ok()?;
        (r.registry == target.registry && r.repository != target.repository).then_some(r.repository)
    })
}

/// Where blobs go: a repository of a registry, the token scope for it, and a sibling repository
/// blobs may be mounted from.
struct Destination<'a> {
    client: &'a Client,
    repo: &'a str,
    scope: &'a str,
    from: Option<&'a str>,
}

fn push_blob(
    store: &Store,
    dest: &Destination,
    digest: &Digest,
    size: u64,
    item: &Item,
) -> Result<BlobOutcome> {
    let Destination { client, repo, scope, from } = *dest;
    if upload::exists(client, repo, scope, digest)? {
        return Ok(BlobOutcome::AlreadyExists);
    }
    let file = store.open_blob(digest)?;
    upload::check_size(&file, size, digest)?;
    let mut session = None;
    if let Some(from) = from {
        match upload::mount(client, repo, scope, digest, from)? {
            None => return Ok(BlobOutcome::Mounted { from: from.to_string() }),
            Some(s) => session = Some(s),
        }
    }
    item.start_bytes("Pushing", Some(size));
    let tick = |n: u64| item.inc(n);
    let mut tries = 0;
    loop {
        let s = match session.take() {
            Some(s) => s,
            None => upload::start(client, repo, scope)?,
        };
        match upload::send(client, s, scope, &file, size, digest, &tick) {
            Ok(()) => return Ok(BlobOutcome::Pushed),
            Err(e) if tries < 2 && upload::worth_restarting(&e) => {
                tracing::info!("upload of {digest} failed ({e:#}); starting over");
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

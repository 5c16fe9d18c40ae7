//! Compressing an image's uncompressed layers before a push, once.
//!
//! Layers loaded from a docker-archive (or imported from a plain tar) are stored as they came:
//! uncompressed. Registries and the tools that pull from them expect compressed layers, so a push
//! compresses them first (pinned encoder settings: the same bytes every time) and the image's
//! record then points at the compressed blobs and a new OCI manifest naming them. The image id
//! (its config) does not change; a second push sends the same digests without compressing again,
//! and the uncompressed blobs go at the next garbage collection. A layer another image already
//! holds compressed that way is reused, not compressed again.

use std::io::{BufWriter, Read, Write};

use anyhow::{Context, Result};

use super::progress::Progress;
use crate::layer::Compression;
use crate::oci::digest::HashingWriter;
use crate::oci::image::{Descriptor, build_manifest};
use crate::oci::{Digest, media};
use crate::store::{ImageRecord, LayerRef, Store};

/// True when some layer of `record` is stored uncompressed.
pub fn needs_compression(record: &ImageRecord) -> bool {
    record.layers.iter().any(is_uncompressed)
}

fn is_uncompressed(l: &LayerRef) -> bool {
    Compression::from_media_type(&l.media_type) == Some(Compression::None)
}

/// Compresses every uncompressed layer of `record` with `compression` and records the result
/// (store opened for writing). Returns the updated record.
pub fn compress_layers(
    store: &Store,
    record: &ImageRecord,
    compression: Compression,
    progress: &Progress,
) -> Result<ImageRecord> {
    let others = store.images()?;
    let mut rec = record.clone();
    for layer in rec.layers.iter_mut().filter(|l| is_uncompressed(l)) {
        let reuse = others
            .iter()
            .flat_map(|i| &i.layers)
            .find(|o| {
                o.diff_id == layer.diff_id
                    && Compression::from_media_type(&o.media_type) == Some(compression)
                    && store.has_blob(&o.blob)
            })
            .cloned();
        *layer = match reuse {
            Some(o) => LayerRef { media_type: oci_layer_type(&o.media_type), ..o },
            None => {
                let input = store.open_blob(&layer.blob)?;
                let input = progress.item(layer.diff_id.short(), "Waiting").reader(
                    &format!("Compressing ({compression})"),
                    Some(layer.blob_size),
                    input,
                    &format!("Compressed ({compression})"),
                );
                let (blob, blob_size) = compress_blob(store, input, compression)
                    .with_context(|| format!("compressing layer {}", layer.diff_id))?;
                LayerRef {
                    diff_id: layer.diff_id.clone(),
                    blob,
                    blob_size,
                    media_type: compression.media_type().to_string(),
                }
            }
        };
    }
    for layer in &mut rec.layers {
        layer.media_type = oci_layer_type(&layer.media_type);
    }
    let config_size = store.blob_size(&rec.id)?;
    let config = Descriptor::new(media::OCI_CONFIG, &rec.id, config_size);
    let layers: Vec<Descriptor> =
        rec.layers.iter().map(|l| Descriptor::new(&l.media_type, &l.blob, l.blob_size)).collect();
    rec.manifest = store.put_blob_bytes(&build_manifest(&config, &layers))?;
    rec.manifest_media_type = media::OCI_MANIFEST.to_string();
    store.add_image(&rec, &[])?;
    Ok(rec)
}

/// The OCI media type for a layer type (Docker's types have OCI twins; OCI ones stay).
fn oci_layer_type(media_type: &str) -> String {
    if media_type.starts_with("application/vnd.oci.") {
        return media_type.to_string();
    }
    Compression::from_media_type(media_type).map_or(media_type.to_string(), |c| c.media_type().to_string())
}

/// Compresses `input` into a new stored blob; returns its digest and size.
fn compress_blob(store: &Store, mut input: impl Read, compression: Compression) -> Result<(Digest, u64)> {
    let mut staged = store.stage_blob()?;
    let mut enc =
        compression.encoder(HashingWriter::new(BufWriter::with_capacity(1 << 20, &mut staged.file)))?;
    std::io::copy(&mut input, &mut enc).context("copying the blob through the compressor")?;
    let (mut out, digest, size) = enc.finish().context("writing the compressed blob")?.finish();
    out.flush().context("writing the compressed blob")?;
    drop(out);
    store.commit_blob(staged, &digest)?;
    Ok((digest, size))
}

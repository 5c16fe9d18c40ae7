//! `load`: open the source, recognise its layout by content, store every image, then name them.

use anyhow::{Context, Result, bail};

use super::ingest::{Pending, Snapshot};
use super::members::Members;
use super::shown::ShownMembers;
use super::{LoadSource, Loaded, docker_in, legacy_in, oci_in, source};
use crate::progress::Progress;
use crate::store::Store;

/// Loads every image in `source` into `store` (opened for writing). On error the store is left
/// exactly as before: no new layer, blob, image or tag.
pub fn load(store: &Store, source: LoadSource) -> Result<Vec<Loaded>> {
    load_with(store, source, &Progress::hidden())
}

/// [`load`], showing the input's reading and each layer on `progress`.
pub fn load_with(store: &Store, source: LoadSource, progress: &Progress) -> Result<Vec<Loaded>> {
    store.ensure_writable()?;
    let input = source::open(store, &source, progress)?;
    let snapshot = Snapshot::take(store)?;
    let members = &ShownMembers { inner: input.members.as_ref(), progress };
    let stored =
        read_images(store, members, input.tag.as_deref(), input.oci_only, input.repository.as_deref())
            .with_context(|| members.describe().to_string());
    let pending = match stored {
        Ok(p) => p,
        Err(e) => {
            snapshot.restore(store);
            return Err(e);
        }
    };
    // Everything is stored: records, then tags (so no tag ever points at a missing image). A write
    // failing here (disk full) can leave earlier images of the same archive loaded, never a dangling tag.
    let images: Vec<_> = pending.into_iter().map(|p| (p.record, p.tags)).collect();
    store.add_images(&images)?;
    Ok(images.into_iter().map(|(record, tags)| Loaded { id: record.id, tags }).collect())
}

fn read_images(
    store: &Store,
    members: &dyn Members,
    tag: Option<&str>,
    oci_only: bool,
    repository: Option<&str>,
) -> Result<Vec<Pending>> {
    let is_oci = members.contains("oci-layout") && members.contains("index.json");
    if oci_only || is_oci {
        // Docker ≥ 25 saves are OCI layouts too; their index keeps the manifests byte-exact.
        oci_in::load(store, members, tag, repository)
    } else if members.contains("manifest.json") {
        docker_in::load(store, members)
    } else if members.contains("repositories") {
        legacy_in::load(store, members)
    } else if members.contains("oci-layout") {
        bail!("OCI layout without index.json")
    } else if looks_like_rootfs(members) {
        bail!(
            "not an image archive but a root filesystem tarball: use `strata import FILE [REPO[:TAG]]` to make an image of it"
        )
    } else {
        bail!(
            "not an image archive: it has no manifest.json, index.json or repositories (for a root filesystem tarball, use `strata import`)"
        )
    }
}

/// A tarball of a root filesystem, which `import` takes and `load` does not.
fn looks_like_rootfs(members: &dyn Members) -> bool {
    ["etc/passwd", "etc/os-release", "usr/lib/os-release", "bin/sh", "usr/bin/env", "bin/busybox"]
        .iter()
        .any(|n| members.contains(n))
}

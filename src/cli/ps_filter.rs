//! What `ps` shows of a container beyond its record: Docker's `--filter` (status, name, ancestor)
//! and the IMAGE column (the name the container was created from while it still names that image,
//! else the image's short id, as Docker shows it).

use std::collections::HashSet;

use anyhow::Result;

use super::output::usage_bail;
use crate::oci::Digest;
use crate::store::Store;
use crate::store::containers::ContainerRecord;

/// Status values `--filter status=` takes: Docker's, and strata's `mounted`.
const STATUSES: &[&str] =
    &["created", "mounted", "running", "paused", "restarting", "removing", "exited", "dead"];

/// Parsed `ps --filter` values: a container must match one value of every key given.
#[derive(Default)]
pub struct PsFilters {
    statuses: Vec<String>,
    names: Vec<String>,
    /// Image ids given as `ancestor=`: a container of one of them, or of an image built on one.
    ancestors: Vec<HashSet<Digest>>,
}

impl PsFilters {
    pub fn parse(store: &Store, specs: &[String]) -> Result<PsFilters> {
        let mut f = PsFilters::default();
        for spec in specs {
            let Some((k, v)) = spec.split_once('=') else {
                usage_bail!("invalid filter {spec:?}: expected KEY=VALUE")
            };
            match k {
                "status" if STATUSES.contains(&v) => f.statuses.push(v.to_string()),
                "status" => usage_bail!("invalid filter {spec:?}: status is one of {}", STATUSES.join(", ")),
                "name" => f.names.push(v.to_string()),
                "ancestor" => f.ancestors.push(std::iter::once(store.resolve_image(v)?.id).collect()),
                _ => usage_bail!("invalid filter {k:?}: supported are status, name, ancestor"),
            }
        }
        Ok(f)
    }

    /// Whether `c`, whose status reads `status` (`Created`, `Mounted`, …), passes.
    pub fn keep(&self, store: &Store, c: &ContainerRecord, status: &str) -> bool {
        let word = status.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
        (self.statuses.is_empty() || self.statuses.contains(&word))
            && (self.names.is_empty() || self.names.iter().any(|n| c.name.contains(n.as_str())))
            && (self.ancestors.is_empty() || self.ancestors.iter().any(|ids| descends(store, &c.image, ids)))
    }

    /// `status=` asked for something `ps` hides without `-a`.
    pub fn wants_stopped(&self) -> bool {
        self.statuses.iter().any(|s| s != "mounted" && s != "running")
    }
}

/// `image` is one of `ids` or built on one (its parent chain, as commits record it).
fn descends(store: &Store, image: &Digest, ids: &HashSet<Digest>) -> bool {
    let mut next = Some(image.clone());
    let mut seen = HashSet::new();
    while let Some(id) = next {
        if ids.contains(&id) {
            return true;
        }
        if !seen.insert(id.clone()) {
            return false;
        }
        next = store.image(&id).ok().and_then(|i| i.parent);
    }
    false
}

/// The IMAGE column: the name given at create while it still names the container's image, else
/// the image's short id (the name was moved to another image, or removed).
pub fn image_column(store: &Store, c: &ContainerRecord) -> String {
    match store.resolve_image(&c.image_name) {
        Ok(img) if img.id == c.image => c.image_name.clone(),
        _ => c.image.short().to_string(),
    }
}

//! `rmi` semantics, as Docker has them: untag, then delete an image no tag and no container holds.

use anyhow::{Result, bail};

use super::Store;
use super::pending::Removing;
use crate::oci::Reference;

/// One line of `rmi` output.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    Untagged(String),
    Deleted(String),
}

impl std::fmt::Display for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Removal::Untagged(s) => write!(f, "Untagged: {s}"),
            Removal::Deleted(s) => write!(f, "Deleted: {s}"),
        }
    }
}

impl Store {
    /// Removes what `input` names. By tag: untag, and delete the image if that was its last tag.
    /// By id: delete (with `force`, even when several tags point at it). An image a container uses
    /// is never deleted; with `force` its tag is removed and the image kept, as Docker does.
    pub fn remove_image(&self, input: &str, force: bool) -> Result<Vec<Removal>> {
        self.ensure_writable()?;
        if let Some(done) = self.finished_removal.as_ref().filter(|r| r.matches(input)) {
            // A killed rmi of this image, finished when this command opened the store.
            return Ok(removal_lines(done));
        }
        // A tag whose image record is gone (a damaged store) can still be removed by name.
        if let Ok(r) = Reference::parse_with_default_tag(input) {
            let full = r.to_string();
            if self.tags()?.get(&full).is_some_and(|id| !self.has_image(id)) {
                self.untag(&full)?;
                return Ok(vec![Removal::Untagged(r.familiar())]);
            }
        }
        let image = self.resolve_image(input)?;
        let tags = self.tags_of(&image.id)?;
        let by_tag =
            Reference::parse_with_default_tag(input).ok().map(|r| r.to_string()).filter(|t| tags.contains(t));
        let mut users: Vec<String> = self
            .containers()?
            .into_iter()
            .filter(|c| c.image == image.id)
            .map(|c| format!("container {}", c.short_id()))
            .collect();
        let mounts = self.image_mounts()?.into_iter().filter(|m| m.image == image.id);
        users.extend(mounts.map(|m| format!("the mount at {}", m.mountpoint.display())));
        let mut out = Vec::new();
        let familiar = |t: &str| Reference::parse(t).map(|r| r.familiar()).unwrap_or_else(|_| t.to_string());
        if let Some(tag) = &by_tag {
            if tags.len() > 1 || (!users.is_empty() && force) {
                self.untag(tag)?;
                return Ok(vec![Removal::Untagged(familiar(tag))]);
            }
        }
        if !users.is_empty() {
            bail!(
                "conflict: unable to remove image {} ({input}): in use by {} (remove the container or unmount first)",
                image.id.short(),
                users.join(", ")
            );
        }
        if by_tag.is_none() && tags.len() > 1 && !force {
            bail!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                image.id.short()
            );
        }
        // Intent first, then the record, then every tag in one write: a kill at any point leaves
        // the intent, which the next writer finishes (and a retried rmi reports).
        let removing =
            Removing { id: image.id.clone(), tags: tags.clone(), repo_digests: image.repo_digests.clone() };
        self.begin_removal(&removing)?;
        self.remove_image_and_tags(&removing)?;
        self.end_removal()?;
        out.extend(removal_lines(&removing));
        let collected = self.collect_garbage()?;
        out.extend(collected.layers.iter().map(|l| Removal::Deleted(l.to_string())));
        Ok(out)
    }
}

/// What removing an image prints: its tags and digests untagged, then the image deleted.
fn removal_lines(r: &Removing) -> Vec<Removal> {
    let familiar = |t: &str| Reference::parse(t).map(|r| r.familiar()).unwrap_or_else(|_| t.to_string());
    let mut out: Vec<Removal> = r.tags.iter().map(|t| Removal::Untagged(familiar(t))).collect();
    out.extend(r.repo_digests.iter().map(|d| Removal::Untagged(d.clone())));
    out.push(Removal::Deleted(r.id.to_string()));
    out
}

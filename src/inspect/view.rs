//! What the inspect commands look at: an image's layers, or a container's upper over them, as
//! one `union::Stack`, plus how to name the layer each entry comes from.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::container::mounting::image_lowers;
use crate::oci::Digest;
use crate::store::{ImageRecord, Store};
use crate::union::Stack;

/// Where a stack layer comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The image layer at this index, bottom first (the order of the config's `rootfs.diff_ids`).
    Layer { index: usize, diff_id: Digest },
    /// A container's writable layer.
    Upper,
}

impl Origin {
    /// `3:1a2b3c4d5e6f` or `upper`.
    pub fn label(&self) -> String {
        match self {
            Origin::Layer { index, diff_id } => format!("{index}:{}", diff_id.short()),
            Origin::Upper => "upper".into(),
        }
    }

    /// The JSON value of the `layer` field: the index, or `"upper"`.
    pub fn json_index(&self) -> serde_json::Value {
        match self {
            Origin::Layer { index, .. } => (*index).into(),
            Origin::Upper => "upper".into(),
        }
    }

    pub fn diff_id(&self) -> Option<&Digest> {
        match self {
            Origin::Layer { diff_id, .. } => Some(diff_id),
            Origin::Upper => None,
        }
    }
}

/// A merged tree ready to read.
pub struct View {
    pub stack: Stack,
    /// `origins[i]` describes `stack.layers()[i]` (top first, like the stack).
    pub origins: Vec<Origin>,
    /// What the user named, for messages.
    pub name: String,
}

impl View {
    /// An image's merged layers.
    pub fn image(store: &Store, image: &ImageRecord, name: &str) -> Result<View> {
        let lowers = image_lowers(store, image);
        let stack =
            Stack::new(&lowers, None).with_context(|| format!("opening the layers of image {name}"))?;
        Ok(View { stack, origins: image_origins(image), name: name.to_string() })
    }

    /// A container (its upper over its image's layers) or, failing that, an image.
    pub fn open(store: &Store, name: &str) -> Result<View> {
        let Ok(c) = store.resolve_container(name) else {
            let image = store
                .resolve_image(name)
                .with_context(|| format!("{name:?} is neither a container nor an image"))?;
            return View::image(store, &image, name);
        };
        let image = store.image(&c.image).with_context(|| format!("the image of container {}", c.name))?;
        let upper: PathBuf = store.container_upper(&c.id);
        let stack = Stack::new(&image_lowers(store, &image), Some(&upper))
            .with_context(|| format!("opening the layers of container {}", c.name))?;
        let mut origins = vec![Origin::Upper];
        origins.extend(image_origins(&image));
        Ok(View { stack, origins, name: name.to_string() })
    }

    pub fn origin(&self, stack_layer: usize) -> &Origin {
        // Every stack layer has an origin by construction; the last one stands in otherwise.
        self.origins.get(stack_layer).or(self.origins.last()).unwrap_or(&Origin::Upper)
    }
}

/// Origins of an image's layers, top first like the stack.
fn image_origins(image: &ImageRecord) -> Vec<Origin> {
    image
        .layers
        .iter()
        .enumerate()
        .rev()
        .map(|(index, l)| Origin::Layer { index, diff_id: l.diff_id.clone() })
        .collect()
}

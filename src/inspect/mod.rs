//! Merged views without mounting: ls, cat, export, diff, analyze — built on `union/`, so a listing
//! here and a `stat` through a mount can never disagree.

pub mod analyze;
pub mod change;
pub mod container_diff;
pub mod export;
pub mod image_diff;
mod layer_changes;
pub mod limits;
pub mod ls;
pub mod node;
pub mod view;
pub mod walk;

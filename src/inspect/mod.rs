//! Merged views without mounting: ls, cat, export, diff, analyze — built on `union/`, so a listing
//! here and a `stat` through a mount can never disagree.

pub mod change;
pub mod container_diff;

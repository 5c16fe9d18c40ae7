//! `strata build`: Dockerfile parsing, the build context, and the builder that turns instructions
//! into image layers and configs, with a cache kept in the store.

pub mod builder;
pub mod cache;
pub mod context;
pub mod copy;
pub mod ignore;
pub mod parse;
pub mod progress;
pub mod tree;
pub mod vars;

//! Shared test harness. Each test binary uses only part of it.
#![allow(dead_code)]

pub mod build;
pub mod fake_http;
pub mod image_mount;
pub mod images;
pub mod mount;
pub mod registry;
pub mod run;
pub mod strata;
pub mod token_issuer;
pub mod tree;
pub mod user;

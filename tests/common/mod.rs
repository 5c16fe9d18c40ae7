//! Shared test harness. Each test binary uses only part of it.
#![allow(dead_code)]

pub mod images;
pub mod mount;
pub mod strata;
pub mod tree;

//! Shared test harness.
#![allow(dead_code)]

pub mod mount;

//! The only `unsafe` in strata: thin syscall wrappers that nix lacks.

pub mod daemon;
pub mod fsio;

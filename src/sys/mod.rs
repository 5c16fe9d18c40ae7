//! sys (to be filled).
pub mod daemon;
pub mod fsio;

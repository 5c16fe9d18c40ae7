//! inspect (to be filled).

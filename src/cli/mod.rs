//! cli (to be filled).

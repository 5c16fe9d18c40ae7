//! layer (to be filled).

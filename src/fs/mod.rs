//! fs (to be filled).

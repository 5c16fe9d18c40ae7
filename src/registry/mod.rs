//! registry (to be filled).

//! sys (to be filled).

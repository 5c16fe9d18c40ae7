//! union (to be filled).

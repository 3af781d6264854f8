//! Where gold keeps its marts.

/// Layer folder of the gold marts.
pub const LAYER: &str = "gold";

//! The tables the layers exchange: their folders, names and schemas.
//!
//! Layers never call each other; they talk through Delta tables. This is
//! the typed interface of those tables, below every layer and above the
//! Delta table layer: bronze writes [`bronze`] and silver reads it; silver
//! writes [`silver`] and gold reads it; the orchestration writes [`runs`]
//! and gold, `query` and `status` read it.

pub mod bronze;
pub mod gold;
pub mod runs;
pub mod silver;

//! Druid-compatible ingestion: supervisor specs (and, as they come, input formats, rows,
//! time chunks, segments, compaction and partitioning).

pub mod expr;
pub mod filter;
pub mod input;
pub mod spec;
pub mod time;
pub mod transform;

//! Druid-compatible ingestion: supervisor specs, input formats, rows (timestamps, transforms,
//! filters, dimensions) and rollup; time chunks, segments, compaction and partitioning are
//! built on these.

pub mod columns;
pub mod compaction;
pub mod expr;
pub mod filter;
pub mod fuzz;
pub mod index;
pub mod input;
pub mod memory_rows;
pub mod merge;
pub mod partition;
pub mod rollup;
pub mod shard;
pub mod spec;
pub mod time;
pub mod timeline;
pub mod transform;
pub mod view;

//! Druid's native queries (`POST /druid/v2`): timeseries, topN, groupBy, scan, timeBoundary,
//! segmentMetadata and dataSourceMetadata, answered in Druid's JSON shapes. Each is planned
//! as Druid SQL on the same engine as `/druid/v2/sql` (so intervals and partition ranges
//! skip segments as they do there), then shaped: buckets zero-filled, post-aggregators
//! computed, topN metrics and groupBy limit specs ordered, having specs applied.

mod aggregate;
mod common;
mod filter;
mod queries;

pub use queries::run;

/// Why a native query has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NativeError {
    /// The query is malformed, or asks for what is not supported (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// Running it failed (HTTP 500).
    #[error("{0}")]
    Execution(String),
}

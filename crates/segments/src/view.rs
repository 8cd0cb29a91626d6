//! What a query sees of a datasource at one moment: its visible published segment files and
//! the realtime indexes of running tasks.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::columns::SegmentSchema;
use crate::shard::ShardKeys;

/// A published segment as a Parquet file.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentFile {
    pub id: String,
    /// The time chunk, epoch milliseconds, end exclusive.
    pub start: i64,
    pub end: i64,
    pub path: PathBuf,
    pub size: u64,
    pub num_rows: u64,
    pub schema: SegmentSchema,
    /// Which rows of the chunk it holds, for pruning by filters on partition dimensions.
    pub keys: ShardKeys,
}

/// Rows a running task persisted to disk (at maxRowsInMemory or intermediatePersistPeriod), in
/// the layout of a segment file. The file is removed once nothing holds it any more: the task
/// let it go (it published or stopped) and no query that planned to read it still runs.
#[derive(Debug)]
pub struct PersistedFile(pub SegmentFile);

impl Drop for PersistedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0.path);
    }
}

/// Rows a running task holds for one time chunk, in no particular order.
#[derive(Debug, Clone)]
pub struct RealtimeChunk {
    pub start: i64,
    pub end: i64,
    pub schema: SegmentSchema,
    pub batch: RecordBatch,
}

/// A datasource's rows: published segments and realtime chunks (never the same rows twice).
#[derive(Debug, Clone, Default)]
pub struct DatasourceView {
    pub segments: Vec<Arc<SegmentFile>>,
    /// Rows running tasks persisted.
    pub persisted: Vec<Arc<PersistedFile>>,
    /// Rows running tasks hold in memory.
    pub realtime: Vec<RealtimeChunk>,
}

impl DatasourceView {
    /// The columns of all its rows together.
    pub fn schema(&self) -> SegmentSchema {
        SegmentSchema::merge(
            self.segments
                .iter()
                .map(|s| &s.schema)
                .chain(self.persisted.iter().map(|p| &p.0.schema))
                .chain(self.realtime.iter().map(|r| &r.schema)),
        )
    }

    /// Whether it holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.persisted.is_empty() && self.realtime.is_empty()
    }
}

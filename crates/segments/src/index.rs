//! The index of one time chunk while a task ingests it: rows kept in memory as they come
//! (rolled up, or in columns), the dimension list growing as schema discovery meets new
//! columns, the rows as an Arrow batch for queries (built when asked, kept until the next row
//! arrives), and the rows persisted to disk so far.
//!
//! A persist takes the rows in memory as a batch at once, then sorts it and writes the file
//! on a thread of its own while the task reads on (the batch stays queryable until the file
//! is done), so sorting and writing overlap with reading. At most one file of an index is
//! being written at a time. A write that fails leaves its batch in memory, where queries and
//! the publish still find it.
//!
//! Rollup combines rows within what is in memory between persists; rows persisted apart stay
//! apart, which is Druid's best-effort rollup of streaming ingestion.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use parquet::errors::ParquetError;

use crate::columns::{SegmentSchema, conform, sort_batch, write_sorted};
use crate::memory_rows::MemoryRows;
use crate::merge::{SortedRun, write_merged};
use crate::rollup::MetricKind;
use crate::spec::{DataSchema, DimensionType};
use crate::transform::{DimValue, IngestRow};
use crate::view::{PersistedFile, SegmentFile};

/// The thread writing a persisted file.
type Writer = std::thread::JoinHandle<Result<SegmentFile, ParquetError>>;

/// The rows of one time chunk `[start, end)`.
#[derive(Debug)]
pub struct ChunkIndex {
    start: i64,
    end: i64,
    schema: SegmentSchema,
    /// Where each dimension sits in `schema.dimensions` (used when discovering).
    positions: HashMap<String, usize>,
    rows: MemoryRows,
    /// The batch of the rows in memory; None once a row has arrived since.
    snapshot: Option<RecordBatch>,
    /// Rows persisted to disk.
    persisted: Vec<Arc<PersistedFile>>,
    /// Batches of persists whose file is not written (unsorted, with the columns the schema
    /// had then): the one being written (the last) and any whose write failed or whose
    /// writer could not start.
    unwritten: Vec<RecordBatch>,
    /// The thread writing the last of `unwritten`, if one is.
    writer: Option<Writer>,
    /// Rows persisted or being persisted.
    persisted_rows: usize,
}

impl ChunkIndex {
    /// An empty index for a chunk of a datasource.
    pub fn new(start: i64, end: i64, data_schema: &DataSchema) -> ChunkIndex {
        let dimensions: Vec<(String, DimensionType)> = data_schema
            .dimensions_spec
            .dimensions
            .iter()
            .map(|d| (d.name.clone(), d.kind))
            .collect();
        let metrics = data_schema
            .metrics_spec
            .iter()
            .map(|m| (m.name().to_string(), MetricKind::of(m)))
            .collect();
        let schema = SegmentSchema {
            dimensions,
            metrics,
        };
        ChunkIndex {
            start,
            end,
            positions: HashMap::new(),
            rows: MemoryRows::new(data_schema, &schema, start),
            schema,
            snapshot: None,
            persisted: Vec::new(),
            unwritten: Vec::new(),
            writer: None,
            persisted_rows: 0,
        }
    }

    /// Adds a row (its time must fall in the chunk).
    pub fn add(&mut self, mut row: IngestRow<'_>) {
        if let Some(names) = row.discovered.take() {
            row.dimensions = self.place_discovered(names, row.dimensions);
        }
        self.rows.add(row, &self.schema);
        self.snapshot = None;
    }

    /// Puts discovered values at their dimension's position, adding new dimensions (typed by
    /// their first value) at the end.
    fn place_discovered<'a>(
        &mut self,
        names: Vec<String>,
        values: Vec<DimValue<'a>>,
    ) -> Vec<DimValue<'a>> {
        let mut placed = vec![DimValue::Null; self.schema.dimensions.len()];
        for (name, value) in names.into_iter().zip(values) {
            let position = match self.positions.get(&name) {
                Some(&p) => p,
                None => {
                    let kind = match value {
                        DimValue::Long(_) => DimensionType::Long,
                        DimValue::Double(_) => DimensionType::Double,
                        _ => DimensionType::String,
                    };
                    let p = self.schema.dimensions.len();
                    self.schema.dimensions.push((name.clone(), kind));
                    self.positions.insert(name, p);
                    placed.push(DimValue::Null);
                    p
                }
            };
            placed[position] = value;
        }
        placed
    }

    /// The chunk: start and end (exclusive), epoch milliseconds.
    pub fn interval(&self) -> (i64, i64) {
        (self.start, self.end)
    }

    /// Stored (rolled-up) rows so far, persisted (or being persisted) or in memory.
    pub fn len(&self) -> usize {
        self.persisted_rows + self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows held in memory and not being persisted.
    pub fn in_memory_rows(&self) -> usize {
        self.rows.len()
    }

    /// The files persisted so far.
    pub fn persisted(&self) -> &[Arc<PersistedFile>] {
        &self.persisted
    }

    /// Persisted rows whose file is not written yet (or failed to be), unsorted: queries read
    /// them from here until [`ChunkIndex::finish_persist`] finds their file done.
    pub fn unwritten(&self) -> &[RecordBatch] {
        &self.unwritten
    }

    /// Takes the rows in memory as a batch and starts sorting and writing them to a Parquet
    /// file at `path` (after the file being written before, if any, is done).
    pub fn persist(&mut self, path: PathBuf) -> Result<(), ParquetError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        self.finish_persist(true)?;
        let batch = self.rows.batch(&self.schema, true)?;
        self.snapshot = None;
        let file = SegmentFile {
            id: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            start: self.start,
            end: self.end,
            path,
            size: 0,
            num_rows: batch.num_rows() as u64,
            schema: self.schema.clone(),
            keys: crate::shard::ShardKeys::Any,
        };
        let rows = batch.clone();
        // The rows count as persisted from here: kept as a failed write if no writer starts.
        self.persisted_rows += batch.num_rows();
        self.unwritten.push(batch);
        let writer = std::thread::Builder::new()
            .name("persist".into())
            .spawn(move || {
                let size = write_sorted(&file.path, &file.schema, &rows)?;
                Ok(SegmentFile { size, ..file })
            })?;
        self.writer = Some(writer);
        Ok(())
    }

    /// Takes the file being written into the persisted files once it is done (waiting for it
    /// with `wait`). A failed write is the error; its rows stay in memory.
    pub fn finish_persist(&mut self, wait: bool) -> Result<(), ParquetError> {
        if !wait && self.writer.as_ref().is_none_or(|w| !w.is_finished()) {
            return Ok(());
        }
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let file = writer
            .join()
            .map_err(|_| ParquetError::General("the persist thread panicked".into()))??;
        self.unwritten.pop();
        self.persisted.push(Arc::new(PersistedFile(file)));
        Ok(())
    }

    /// Writes every row, persisted and in memory, as one segment file at `path`, sorted as
    /// segments store their rows (persisted files are merged a batch at a time, never read
    /// whole); returns the file's size.
    pub fn write_segment(&mut self, path: &Path) -> Result<u64, ParquetError> {
        self.finish_persist(true)?;
        let mut runs: Vec<SortedRun> = self
            .persisted
            .iter()
            .map(|file| SortedRun::File(file.0.path.clone()))
            .collect();
        let columns = self.schema.arrow();
        for batch in &self.unwritten {
            // Discovery may have added dimensions since: conformed before sorting by them.
            let batch = conform(batch, &columns)?;
            runs.push(SortedRun::Batch(sort_batch(&self.schema, &batch)?));
        }
        if !self.rows.is_empty() {
            let batch = self.batch()?;
            runs.push(SortedRun::Batch(sort_batch(&self.schema, &batch)?));
        }
        write_merged(path, &self.schema, runs)
    }

    /// The columns of the rows so far.
    pub fn schema(&self) -> &SegmentSchema {
        &self.schema
    }

    /// The rows in memory as one batch, in no particular order (queries need none).
    pub fn batch(&mut self) -> Result<RecordBatch, ArrowError> {
        if let Some(batch) = &self.snapshot {
            return Ok(batch.clone());
        }
        let batch = self.rows.batch(&self.schema, false)?;
        self.snapshot = Some(batch.clone());
        Ok(batch)
    }
}

impl Drop for ChunkIndex {
    /// A file still being written is waited for, then removed with the other persisted files
    /// (as their last holder lets them go).
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take()
            && let Ok(Ok(file)) = writer.join()
        {
            drop(PersistedFile(file));
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;
    use serde_json::json;

    use super::*;
    use crate::expr::ExprValue;
    use crate::spec::SupervisorSpec;

    fn data_schema(dimensions: serde_json::Value) -> DataSchema {
        let spec = json!({"type": "kafka", "spec": {
            "dataSchema": {"dataSource": "d", "timestampSpec": {"column": "ts", "format": "millis"},
                "dimensionsSpec": {"dimensions": dimensions},
                "metricsSpec": [{"type": "count", "name": "count"}],
                "granularitySpec": {"segmentGranularity": "hour", "queryGranularity": "minute", "rollup": true}},
            "ioConfig": {"topic": "t", "inputFormat": {"type": "json"}}}});
        SupervisorSpec::from_json(spec.to_string().as_bytes())
            .unwrap()
            .spec
            .data_schema
    }

    fn discovered(time: i64, columns: &[(&str, DimValue<'static>)]) -> IngestRow<'static> {
        IngestRow {
            time,
            dimensions: columns.iter().map(|(_, v)| v.clone()).collect(),
            discovered: Some(columns.iter().map(|(n, _)| n.to_string()).collect()),
            metric_inputs: vec![Some(ExprValue::Null)],
        }
    }

    /// The index written as a segment, read back.
    fn published(index: &mut ChunkIndex, dir: &Path) -> RecordBatch {
        let path = dir.join("segment.parquet");
        index.write_segment(&path).unwrap();
        let batches = crate::columns::read_parquet(&path).unwrap();
        arrow::compute::concat_batches(&index.schema().arrow(), &batches).unwrap()
    }

    #[test]
    fn discovery_grows_the_dimensions_and_rolls_up_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = ChunkIndex::new(0, 3_600_000, &data_schema(json!([])));
        let mia = DimValue::Text("mia".into());
        index.add(discovered(1_000, &[("user", mia.clone())]));
        index.add(discovered(
            2_000,
            &[("likes", DimValue::Long(3)), ("user", mia.clone())],
        ));
        index.add(discovered(
            3_000,
            &[("user", mia.clone()), ("likes", DimValue::Null)],
        ));
        assert_eq!(
            index.schema().dimensions,
            vec![
                ("user".to_string(), DimensionType::String),
                ("likes".to_string(), DimensionType::Long)
            ]
        );
        assert_eq!(index.len(), 2, "rows without likes roll up together");
        let batch = published(&mut index, dir.path());
        assert_eq!(batch.num_rows(), 2);
        let likes = batch.column(2).as_primitive::<Int64Type>();
        assert!(likes.is_null(0), "nulls sort first");
        assert_eq!(likes.value(1), 3);
        let counts = batch.column(3).as_primitive::<Int64Type>();
        assert_eq!((counts.value(0), counts.value(1)), (2, 1));
    }

    #[test]
    fn persisted_rows_join_the_segment_in_order_and_their_files_go_with_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = ChunkIndex::new(0, 3_600_000, &data_schema(json!([])));
        let mia = DimValue::Text("mia".into());
        index.add(discovered(120_000, &[("user", mia.clone())]));
        index.add(discovered(
            60_000,
            &[("user", DimValue::Text("gus".into()))],
        ));
        index.persist(dir.path().join("0.parquet")).unwrap();
        assert_eq!((index.len(), index.in_memory_rows()), (2, 0));
        // A dimension discovered after the persist; the persisted rows have it as null.
        for _ in 0..2 {
            index.add(discovered(
                90_000,
                &[("user", mia.clone()), ("likes", DimValue::Long(4))],
            ));
        }
        index.add(discovered(120_000, &[("user", mia.clone())]));
        assert_eq!(
            index.len(),
            4,
            "rolled up in memory, not with persisted rows"
        );
        let batch = published(&mut index, dir.path());
        assert_eq!(
            batch.num_rows(),
            4,
            "best-effort rollup keeps persisted rows apart"
        );
        let times: Vec<i64> = batch
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
            .values()
            .to_vec();
        assert_eq!(times, vec![60_000, 60_000, 120_000, 120_000]);
        let users = batch.column(1).as_string::<i32>();
        assert_eq!((users.value(0), users.value(1)), ("gus", "mia"));
        let likes = batch.column(2).as_primitive::<Int64Type>();
        assert_eq!(likes.null_count(), 3);
        assert_eq!(likes.value(1), 4);
        let file = index.persisted()[0].0.path.clone();
        assert!(file.exists());
        drop(index);
        assert!(
            !file.exists(),
            "the persisted file goes with the last holder"
        );
    }

    #[test]
    fn rows_being_persisted_stay_readable_and_a_dropped_index_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = ChunkIndex::new(0, 3_600_000, &data_schema(json!([])));
        let user = |name: &str| DimValue::Text(name.to_string().into());
        for round in 0..3 {
            for i in 0..100 {
                index.add(discovered(
                    i * 1000,
                    &[("user", user(&format!("u{round}-{i}")))],
                ));
            }
            index
                .persist(dir.path().join(format!("{round}.parquet")))
                .unwrap();
            let being_written: usize = index.unwritten().iter().map(|b| b.num_rows()).sum();
            let on_disk: usize = index
                .persisted()
                .iter()
                .map(|p| p.0.num_rows as usize)
                .sum();
            assert_eq!(
                being_written, 100,
                "the last persist's rows are in its batch"
            );
            assert_eq!(on_disk, round * 100, "earlier persists were waited for");
            assert_eq!(
                (index.len(), index.in_memory_rows()),
                ((round + 1) * 100, 0)
            );
        }
        assert_eq!(published(&mut index, dir.path()).num_rows(), 300);
        assert!(
            index.unwritten().is_empty(),
            "the publish waited for the write"
        );
        assert!(
            index
                .persisted()
                .iter()
                .all(|p| p.0.size > 0 && p.0.path.exists())
        );

        let mut dropped = ChunkIndex::new(0, 3_600_000, &data_schema(json!([])));
        dropped.add(discovered(0, &[("user", user("x"))]));
        let path = dir.path().join("dropped.parquet");
        dropped.persist(path.clone()).unwrap();
        drop(dropped);
        assert!(
            !path.exists(),
            "a write in flight is waited for, then removed"
        );
    }

    #[test]
    fn rows_of_a_failed_write_are_published_with_dimensions_found_later() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = ChunkIndex::new(0, 3_600_000, &data_schema(json!([])));
        index.add(discovered(1_000, &[("a", DimValue::Text("x".into()))]));
        index
            .persist(dir.path().join("missing").join("0.parquet"))
            .unwrap();
        let failure = index.finish_persist(true).unwrap_err().to_string();
        assert!(
            failure.contains(&format!("missing{}0.parquet", std::path::MAIN_SEPARATOR)),
            "its directory does not exist, and the error names the file: {failure}"
        );
        // More new dimensions than the failed batch has columns after its time.
        index.add(discovered(
            2_000,
            &[
                ("b", DimValue::Long(1)),
                ("c", DimValue::Long(2)),
                ("d", DimValue::Text("y".into())),
            ],
        ));
        let batch = published(&mut index, dir.path());
        assert_eq!(batch.num_rows(), 2);
        let a = batch.column(1).as_string::<i32>();
        let d = batch.column(4).as_string::<i32>();
        // Both in the same minute: the row without `a` sorts first.
        assert_eq!((a.is_null(0), a.value(1)), (true, "x"));
        assert_eq!((d.value(0), d.is_null(1)), ("y", true));
    }

    #[test]
    fn the_snapshot_follows_new_rows() {
        let mut index = ChunkIndex::new(0, 3_600_000, &data_schema(json!(["user"])));
        let row = |time, user: &'static str| IngestRow {
            time,
            dimensions: vec![DimValue::Text(user.into())],
            discovered: None,
            metric_inputs: vec![Some(ExprValue::Null)],
        };
        index.add(row(120_000, "b"));
        assert_eq!(index.batch().unwrap().num_rows(), 1);
        index.add(row(60_000, "a"));
        let batch = index.batch().unwrap();
        let mut users: Vec<&str> = batch
            .column(1)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        users.sort();
        assert_eq!(users, ["a", "b"]);
    }

    #[test]
    fn without_rollup_every_row_is_published_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let mut schema = data_schema(json!(["user"]));
        schema.granularity_spec.rollup = false;
        let mut index = ChunkIndex::new(0, 3_600_000, &schema);
        let row = |time, user: &str| IngestRow {
            time,
            dimensions: vec![DimValue::Text(user.to_string().into())],
            discovered: None,
            metric_inputs: vec![Some(ExprValue::Null)],
        };
        let mut expected = Vec::new();
        for round in 0..3 {
            for i in (0..50).rev() {
                // Each row twice: without rollup equal rows stay apart.
                for _ in 0..2 {
                    let user = format!("u{}", (i + round) % 7);
                    index.add(row(i * 60_000 + 1, &user));
                    expected.push((i * 60_000, user));
                }
            }
            if round < 2 {
                index
                    .persist(dir.path().join(format!("{round}.parquet")))
                    .unwrap();
            }
        }
        assert_eq!((index.len(), index.in_memory_rows()), (300, 100));
        expected.sort();
        let batch = published(&mut index, dir.path());
        let times = batch
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        let users = batch.column(1).as_string::<i32>();
        let published: Vec<(i64, String)> = (0..batch.num_rows())
            .map(|i| (times.value(i), users.value(i).to_string()))
            .collect();
        assert_eq!(published, expected, "truncated to the minute, sorted");
        let counts = batch.column(2).as_primitive::<Int64Type>();
        assert!(counts.iter().all(|c| c == Some(1)));
    }
}

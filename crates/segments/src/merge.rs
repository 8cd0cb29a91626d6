//! Sorted runs of rows merged into one sorted segment file, a slice at a time: a publish holds
//! one batch of each persisted file and the slice being written, never the files whole (runs
//! given in memory are held whole by their owner anyway).
//!
//! Rows compare by their sort key (time, then each dimension, nulls first) in Arrow's row
//! format, so a comparison is one byte comparison whatever the columns. Runs are kept in the
//! order of their current rows; the first run gives rows for as long as they come before the
//! second's, which makes runs that follow one another in time (a stream's persists, mostly)
//! nearly a concatenation. Rows with equal keys come in no particular order of their runs.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::compute::{SortOptions, interleave_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::row::{RowConverter, Rows, SortField};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;

use crate::columns::{FileRole, ROW_GROUP_ROWS, SegmentSchema, SegmentWriter, conform};

/// Rows written per slice of the merged file: a row group.
const SLICE_ROWS: usize = ROW_GROUP_ROWS;
/// Rows read per batch of a persisted file.
const READ_ROWS: usize = 8 * 1024;

/// One sorted run of rows.
pub enum SortedRun {
    /// Rows in memory, sorted.
    Batch(RecordBatch),
    /// A Parquet file of sorted rows (a persist).
    File(PathBuf),
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// Where a run is: its current batch (conformed to the segment's columns), that batch's sort
/// keys and the next row.
struct Cursor {
    rest: Batches,
    batch: RecordBatch,
    keys: Rows,
    next: usize,
    /// Where `batch` sits among the batches of the slice being built.
    slot: usize,
}

/// Writes the runs, merged in sort order, as one segment file of `schema` at `path`; returns
/// the file's size.
pub fn write_merged(
    path: &Path,
    schema: &SegmentSchema,
    runs: Vec<SortedRun>,
) -> Result<u64, ParquetError> {
    let arrow_schema = schema.arrow();
    let converter = RowConverter::new(
        arrow_schema.fields()[..=schema.dimensions.len()]
            .iter()
            .map(|f| {
                SortField::new_with_options(
                    f.data_type().clone(),
                    SortOptions {
                        descending: false,
                        nulls_first: true,
                    },
                )
            })
            .collect(),
    )?;
    let mut merge = Merge {
        schema: arrow_schema.clone(),
        key_columns: schema.dimensions.len() + 1,
        converter,
        slice: Vec::new(),
        picks: Vec::with_capacity(SLICE_ROWS),
    };
    // Cursors in the order of their current rows.
    let mut cursors: Vec<Cursor> = Vec::new();
    for run in runs {
        let rest: Batches = match run {
            SortedRun::Batch(batch) => Box::new(std::iter::once(Ok(batch))),
            SortedRun::File(path) => Box::new(read_in_batches(&path)?),
        };
        if let Some(cursor) = merge.start(rest)? {
            let at = cursors.partition_point(|c| !precedes(&cursor, c));
            cursors.insert(at, cursor);
        }
    }
    let mut writer = SegmentWriter::create(path, arrow_schema, FileRole::Segment)?;
    while !cursors.is_empty() {
        let first = &cursors[0];
        // The first run's rows up to where the second's current row goes (at least one:
        // the first's current row is not after the second's), as many as the slice holds.
        let room = SLICE_ROWS.saturating_sub(merge.picks.len()).max(1);
        let end = match cursors.get(1) {
            Some(second) => {
                let bound = second.keys.row(second.next);
                first.next
                    + partition_point(first.next..first.keys.num_rows(), |i| {
                        first.keys.row(i) <= bound
                    })
            }
            None => first.keys.num_rows(),
        }
        .clamp(first.next + 1, first.next + room);
        let (slot, next) = (first.slot, first.next);
        merge.picks.extend((next..end).map(|row| (slot, row)));
        cursors[0].next = end;
        if merge.picks.len() >= SLICE_ROWS {
            merge.flush(&mut writer, &mut cursors)?;
        }
        let first = cursors.remove(0);
        let Some(cursor) = merge.advance(first)? else {
            continue;
        };
        let at = cursors.partition_point(|c| !precedes(&cursor, c));
        cursors.insert(at, cursor);
    }
    merge.flush(&mut writer, &mut cursors)?;
    writer.finish()
}

/// A persisted file's rows a batch at a time; errors name the file.
fn read_in_batches(
    path: &Path,
) -> Result<impl Iterator<Item = Result<RecordBatch, ArrowError>> + Send + use<>, ParquetError> {
    let reading = format!("reading {}", path.display());
    let open = || -> Result<_, ParquetError> {
        ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?
            .with_batch_size(READ_ROWS)
            .build()
    };
    let reader = open().map_err(|e| ParquetError::General(format!("{reading}: {e}")))?;
    Ok(reader
        .map(move |batch| batch.map_err(|e| ArrowError::ParquetError(format!("{reading}: {e}")))))
}

/// The first index of `range` where `before` stops holding (it holds for a prefix): a
/// binary search over row numbers, as Arrow's `Rows` is not a slice for std's own.
fn partition_point(range: std::ops::Range<usize>, before: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (range.start, range.end);
    while low < high {
        let middle = low + (high - low) / 2;
        if before(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low - range.start
}

/// Whether `a`'s current row goes strictly before `b`'s.
fn precedes(a: &Cursor, b: &Cursor) -> bool {
    a.keys.row(a.next) < b.keys.row(b.next)
}

/// The state shared by the cursors: the slice being built from their batches.
struct Merge {
    schema: SchemaRef,
    key_columns: usize,
    converter: RowConverter,
    /// The batches rows of the slice come from.
    slice: Vec<RecordBatch>,
    /// (batch in `slice`, row) of each row of the slice, in order.
    picks: Vec<(usize, usize)>,
}

impl Merge {
    /// A cursor at the first row of a run; None for a run without rows.
    fn start(&mut self, mut rest: Batches) -> Result<Option<Cursor>, ArrowError> {
        while let Some(batch) = rest.next().transpose()? {
            if batch.num_rows() == 0 {
                continue;
            }
            let batch = conform(&batch, &self.schema)?;
            let keys = self
                .converter
                .convert_columns(&batch.columns()[..self.key_columns])?;
            self.slice.push(batch.clone());
            return Ok(Some(Cursor {
                rest,
                batch,
                keys,
                next: 0,
                slot: self.slice.len() - 1,
            }));
        }
        Ok(None)
    }

    /// The cursor moved on to its run's next batch when its batch is used up; None at the
    /// run's end.
    fn advance(&mut self, cursor: Cursor) -> Result<Option<Cursor>, ArrowError> {
        if cursor.next < cursor.keys.num_rows() {
            return Ok(Some(cursor));
        }
        self.start(cursor.rest)
    }

    /// Writes the slice's rows and starts the next slice from the cursors' current batches.
    fn flush(
        &mut self,
        writer: &mut SegmentWriter,
        cursors: &mut [Cursor],
    ) -> Result<(), ParquetError> {
        if !self.picks.is_empty() {
            let batches: Vec<&RecordBatch> = self.slice.iter().collect();
            writer.write(&interleave_record_batch(&batches, &self.picks)?)?;
            self.picks.clear();
        }
        self.slice.clear();
        for cursor in cursors.iter_mut() {
            self.slice.push(cursor.batch.clone());
            cursor.slot = self.slice.len() - 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::compute::concat_batches;

    use super::*;
    use crate::columns::{read_parquet, sort_batch, to_batch, write_parquet};
    use crate::rollup::{MetricKind, MetricValue, RolledRow};
    use crate::spec::DimensionType;
    use crate::transform::DimValue;

    fn schema(dimensions: &[&str]) -> SegmentSchema {
        SegmentSchema {
            dimensions: dimensions
                .iter()
                .map(|name| {
                    let kind = match *name {
                        "id" => DimensionType::Long,
                        _ => DimensionType::String,
                    };
                    (name.to_string(), kind)
                })
                .collect(),
            metrics: vec![("count".into(), MetricKind::Count)],
        }
    }

    #[test]
    fn runs_merge_into_the_order_one_sort_of_every_row_gives() {
        let dir = tempfile::tempdir().unwrap();
        let full = schema(&["user", "id"]);
        let mut random = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random
        };
        let (mut runs, mut every) = (Vec::new(), Vec::new());
        let mut id = 0;
        // Runs of no rows, one row, and more rows than a slice; times overlap between runs
        // and repeat within them; some users are null; the last run lacks the `id` column.
        for (run, size) in [0usize, 1, 30_000, 70_000, 50_000, 9_000]
            .into_iter()
            .enumerate()
        {
            let run_schema = if run == 5 {
                schema(&["user"])
            } else {
                full.clone()
            };
            let rows: Vec<RolledRow> = (0..size)
                .map(|_| {
                    id += 1;
                    let user = match next() % 6 {
                        0 => DimValue::Null,
                        u => DimValue::Text(format!("u{u}").into()),
                    };
                    let mut dimensions = vec![user];
                    if run != 5 {
                        dimensions.push(DimValue::Long(id));
                    }
                    RolledRow {
                        time: (next() % 5_000) as i64,
                        dimensions,
                        metrics: vec![MetricValue::Long(1)],
                    }
                })
                .collect();
            let batch = to_batch(&run_schema, &rows).unwrap();
            every.push(conform(&batch, &full.arrow()).unwrap());
            let sorted = sort_batch(&run_schema, &batch).unwrap();
            if run % 2 == 0 {
                let path = dir.path().join(format!("{run}.parquet"));
                write_parquet(&path, &sorted).unwrap();
                runs.push(SortedRun::File(path));
            } else {
                runs.push(SortedRun::Batch(sorted));
            }
        }
        let path = dir.path().join("merged.parquet");
        let size = write_merged(&path, &full, runs).unwrap();
        assert_eq!(size, std::fs::metadata(&path).unwrap().len());
        let merged = concat_batches(&full.arrow(), &read_parquet(&path).unwrap()).unwrap();
        let expected = sort_batch(&full, &concat_batches(&full.arrow(), &every).unwrap()).unwrap();
        assert_eq!(merged.num_rows(), 159_001);
        assert_eq!(merged, expected);
    }

    #[test]
    fn a_persisted_file_that_cannot_be_read_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("000003.parquet");
        let out = dir.path().join("merged.parquet");
        let error = write_merged(
            &out,
            &schema(&["user"]),
            vec![SortedRun::File(gone.clone())],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains(&gone.display().to_string()), "{error}");
        assert!(!out.exists() && !out.with_extension("parquet.partial").exists());
    }
}

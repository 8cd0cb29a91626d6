//! Rows of a time chunk as Arrow columns, sorted by time then dimensions (the order segments
//! are stored and pruned in), and segments as Parquet files with column statistics.

use std::cmp::Ordering;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, DynComparator, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMillisecondBuilder, UInt32Array, make_comparator, new_null_array,
};
use arrow::compute::{SortOptions, cast, take};
use arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::rollup::{MetricKind, MetricValue, RolledRow};
use crate::spec::DimensionType;
use crate::transform::{DimValue, TIME_COLUMN};

/// The columns of a datasource's segments: `__time`, dimensions, metrics.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegmentSchema {
    pub dimensions: Vec<(String, DimensionType)>,
    pub metrics: Vec<(String, MetricKind)>,
}

impl SegmentSchema {
    /// The columns of several segments together: every dimension and metric, in the order
    /// first met (the first type met wins where segments disagree).
    pub fn merge<'a>(schemas: impl IntoIterator<Item = &'a SegmentSchema>) -> SegmentSchema {
        let mut merged = SegmentSchema::default();
        for schema in schemas {
            for dimension in &schema.dimensions {
                if !merged.dimensions.iter().any(|(n, _)| *n == dimension.0) {
                    merged.dimensions.push(dimension.clone());
                }
            }
            for metric in &schema.metrics {
                if !merged.metrics.iter().any(|(n, _)| *n == metric.0) {
                    merged.metrics.push(metric.clone());
                }
            }
        }
        merged
    }

    /// The Arrow schema: `__time` as UTC milliseconds, strings, 64-bit integers and doubles.
    pub fn arrow(&self) -> SchemaRef {
        let mut fields = vec![Field::new(
            TIME_COLUMN,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        )];
        for (name, kind) in &self.dimensions {
            let data_type = match kind {
                DimensionType::Long => DataType::Int64,
                DimensionType::Float | DimensionType::Double => DataType::Float64,
                _ => DataType::Utf8,
            };
            fields.push(Field::new(name, data_type, true));
        }
        for (name, kind) in &self.metrics {
            let data_type = match kind {
                MetricKind::Count
                | MetricKind::LongSum
                | MetricKind::LongMin
                | MetricKind::LongMax
                | MetricKind::LongFirst
                | MetricKind::LongLast => DataType::Int64,
                MetricKind::StringFirst | MetricKind::StringLast => DataType::Utf8,
                _ => DataType::Float64,
            };
            fields.push(Field::new(name, data_type, true));
        }
        Arc::new(Schema::new(fields))
    }
}

/// A column being filled.
#[derive(Debug)]
pub(crate) enum Builder {
    Text(StringBuilder),
    Long(Int64Builder),
    Double(Float64Builder),
}

impl Builder {
    pub(crate) fn for_type(data_type: &DataType, capacity: usize) -> Builder {
        match data_type {
            DataType::Int64 => Builder::Long(Int64Builder::with_capacity(capacity)),
            DataType::Float64 => Builder::Double(Float64Builder::with_capacity(capacity)),
            _ => Builder::Text(StringBuilder::with_capacity(capacity, capacity * 8)),
        }
    }

    pub(crate) fn push_dim(&mut self, value: &DimValue<'_>) {
        match (self, value) {
            (Builder::Text(b), DimValue::Text(s)) => b.append_value(s.as_ref()),
            (Builder::Text(b), DimValue::Long(v)) => b.append_value(v.to_string()),
            (Builder::Text(b), DimValue::Double(v)) => b.append_value(v.to_string()),
            (Builder::Long(b), DimValue::Long(v)) => b.append_value(*v),
            (Builder::Long(b), DimValue::Double(v)) => b.append_value(*v as i64),
            (Builder::Double(b), DimValue::Double(v)) => b.append_value(*v),
            (Builder::Double(b), DimValue::Long(v)) => b.append_value(*v as f64),
            (builder, _) => builder.push_null(),
        }
    }

    pub(crate) fn push_metric(&mut self, value: &MetricValue) {
        match (self, value) {
            (Builder::Long(b), MetricValue::Long(v)) => b.append_value(*v),
            (Builder::Double(b), MetricValue::Double(v)) => b.append_value(*v),
            (Builder::Double(b), MetricValue::Long(v)) => b.append_value(*v as f64),
            (Builder::Text(b), MetricValue::String(s)) => b.append_value(s),
            (builder, _) => builder.push_null(),
        }
    }

    pub(crate) fn push_null(&mut self) {
        match self {
            Builder::Text(b) => b.append_null(),
            Builder::Long(b) => b.append_null(),
            Builder::Double(b) => b.append_null(),
        }
    }

    /// The values so far as an array, the builder emptied.
    pub(crate) fn take(&mut self) -> ArrayRef {
        match self {
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Long(b) => Arc::new(b.finish()),
            Builder::Double(b) => Arc::new(b.finish()),
        }
    }

    /// Bytes of text held (none for numbers).
    pub(crate) fn text_bytes(&self) -> usize {
        match self {
            Builder::Text(b) => b.values_slice().len(),
            Builder::Long(_) | Builder::Double(_) => 0,
        }
    }

    /// An empty builder of the same type with room for `rows` values and `bytes` bytes of
    /// text from the start: one growing step by step copies its values at each step and
    /// touches twice the memory.
    pub(crate) fn with_room(&self, rows: usize, bytes: usize) -> Builder {
        match self {
            Builder::Text(_) => Builder::Text(StringBuilder::with_capacity(rows, bytes)),
            Builder::Long(_) => Builder::Long(Int64Builder::with_capacity(rows)),
            Builder::Double(_) => Builder::Double(Float64Builder::with_capacity(rows)),
        }
    }

    /// The values so far as an array, the builder kept as it is.
    pub(crate) fn copy(&self) -> ArrayRef {
        match self {
            Builder::Text(b) => Arc::new(b.finish_cloned()),
            Builder::Long(b) => Arc::new(b.finish_cloned()),
            Builder::Double(b) => Arc::new(b.finish_cloned()),
        }
    }
}

/// Rows, in their order, as one Arrow batch of the schema.
pub fn to_batch(schema: &SegmentSchema, rows: &[RolledRow]) -> Result<RecordBatch, ArrowError> {
    let arrow_schema = schema.arrow();
    let mut time = TimestampMillisecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
    let mut columns: Vec<Builder> = arrow_schema.fields()[1..]
        .iter()
        .map(|f| Builder::for_type(f.data_type(), rows.len()))
        .collect();
    let dims = schema.dimensions.len();
    for row in rows {
        time.append_value(row.time);
        // A row stored before discovery added a dimension has no value there.
        for (i, builder) in columns[..dims].iter_mut().enumerate() {
            builder.push_dim(row.dimensions.get(i).unwrap_or(&DimValue::Null));
        }
        for (builder, value) in columns[dims..].iter_mut().zip(&row.metrics) {
            builder.push_metric(value);
        }
    }
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(time.finish())];
    arrays.extend(columns.iter_mut().map(Builder::take));
    RecordBatch::try_new(arrow_schema, arrays)
}

/// A batch with the columns of `schema`: ones it lacks are null, ones of another type are cast
/// (segments written before schema discovery met a column lack it).
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
            Some(column) => cast(column, field.data_type()),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// Rows per Parquet row group, and per slice that segments are written in: a Parquet writer
/// holds a row group's encoded pages in memory until the group is complete, so this bounds
/// what a write holds.
pub(crate) const ROW_GROUP_ROWS: usize = 64 * 1024;

/// A batch of the schema's columns sorted by time, then by each dimension (nulls first), rows
/// with equal keys kept in the order they came.
pub fn sort_batch(schema: &SegmentSchema, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    match sort_order(schema, batch)? {
        None => Ok(batch.clone()),
        Some(order) => take_rows(batch, &order),
    }
}

/// Writes a batch as an intermediate persist's Parquet file (see [`FileRole::Persist`])
/// sorted as [`sort_batch`] sorts it, a row group at a time, so no sorted copy of the whole
/// batch is made.
pub fn write_sorted(
    path: &Path,
    schema: &SegmentSchema,
    batch: &RecordBatch,
) -> Result<u64, ParquetError> {
    let order = sort_order(schema, batch)?;
    let mut writer = SegmentWriter::create(path, batch.schema(), FileRole::Persist)?;
    match order {
        None => writer.write(batch)?,
        Some(order) => {
            for rows in order.chunks(ROW_GROUP_ROWS) {
                writer.write(&take_rows(batch, rows)?)?;
            }
        }
    }
    writer.finish()
}

/// These rows of a batch, in this order.
pub(crate) fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch, ArrowError> {
    let rows = UInt32Array::from(rows.to_vec());
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &rows, None))
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(batch.schema(), columns)
}

/// The row numbers of a batch in [`sort_batch`]'s order; None when they are in order already.
fn sort_order(schema: &SegmentSchema, batch: &RecordBatch) -> Result<Option<Vec<u32>>, ArrowError> {
    let keys = &batch.columns()[..=schema.dimensions.len()];
    let Some(times) = keys[0]
        .as_primitive_opt::<TimestampMillisecondType>()
        .map(|t| t.values())
    else {
        return Err(ArrowError::SchemaError(
            "the first column of a segment batch is its time".into(),
        ));
    };
    let options = SortOptions {
        descending: false,
        nulls_first: true,
    };
    let dimensions: Vec<DynComparator> = keys[1..]
        .iter()
        .map(|c| make_comparator(c.as_ref(), c.as_ref(), options))
        .collect::<Result<_, _>>()?;
    // Time and the first dimension's key order most rows: sorted first as (time, key, row),
    // which sit together in memory, rather than as row numbers that each comparison looks
    // up. The row number last keeps rows of equal keys in the order they came.
    let first_keys = keys
        .get(1)
        .and_then(|column| OrderKeys::of(column.as_ref()));
    let mut order: Vec<(i64, u64, u32)> = (0..batch.num_rows())
        .map(|row| {
            let key = first_keys.as_ref().map_or(0, |keys| keys.keys[row]);
            (times[row], key, row as u32)
        })
        .collect();
    order.sort_unstable();
    if !dimensions.is_empty() {
        // Rows whose time and key are equal may still differ: in the dimensions' order, from
        // dimension `from` on (those before are equal), then as they came.
        let compare_from = |from: usize, a: u32, b: u32| {
            let (a, b) = (a as usize, b as usize);
            dimensions[from..]
                .iter()
                .map(|compare| compare(a, b))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
                .then(a.cmp(&b))
        };
        let second_keys = keys
            .get(2)
            .and_then(|column| OrderKeys::of(column.as_ref()));
        for equal_keys in order.chunk_by_mut(|a, b| (a.0, a.1) == (b.0, b.1)) {
            if equal_keys.len() < 2 {
                continue;
            }
            let first_equal = first_keys
                .as_ref()
                .is_some_and(|keys| keys.exact(equal_keys[0].1));
            match &second_keys {
                // The first dimension's values are equal (its key is the value): the second
                // dimension's keys order the rows, its column only where they tie.
                Some(second) if first_equal => {
                    for entry in equal_keys.iter_mut() {
                        entry.1 = second.keys[entry.2 as usize];
                    }
                    equal_keys.sort_unstable_by(|a, b| {
                        a.1.cmp(&b.1).then_with(|| {
                            compare_from(if second.exact(a.1) { 2 } else { 1 }, a.2, b.2)
                        })
                    });
                }
                _ => equal_keys
                    .sort_unstable_by(|a, b| compare_from(usize::from(first_equal), a.2, b.2)),
            }
        }
    }
    let sorted = order
        .iter()
        .enumerate()
        .all(|(i, &(_, _, row))| i == row as usize);
    Ok((!sorted).then(|| order.into_iter().map(|(_, _, row)| row).collect()))
}

/// Keys in the order [`sort_batch`] puts a dimension's values (nulls first): a key below
/// another is a value before the other's; rows of equal keys hold equal values where the key
/// is exact, and otherwise may differ (text with the same first seven bytes, a null and the
/// least long), which the column then compares.
struct OrderKeys {
    keys: Vec<u64>,
    /// Whether text keys were made (their exactness is told by their last byte).
    text: bool,
}

impl OrderKeys {
    /// The keys of a text, long or double column; None for columns of other types.
    fn of(column: &dyn Array) -> Option<OrderKeys> {
        let (mut keys, text): (Vec<u64>, bool) = if let Some(text) = column.as_string_opt::<i32>() {
            // The first seven bytes (zeros after a shorter text), then the length plus one,
            // at most 9: a shorter text that the longer one starts with comes first, and text
            // of up to seven bytes is told whole by its key.
            let keys = (0..text.len())
                .map(|row| {
                    let bytes = text.value(row).as_bytes();
                    let mut key = [0; 8];
                    let length = bytes.len().min(7);
                    key[..length].copy_from_slice(&bytes[..length]);
                    key[7] = bytes.len().min(8) as u8 + 1;
                    u64::from_be_bytes(key)
                })
                .collect();
            (keys, true)
        } else if let Some(longs) = column.as_primitive_opt::<Int64Type>() {
            let keys = longs.values().iter().map(|&v| v as u64 ^ (1 << 63));
            (keys.collect(), false)
        } else if let Some(doubles) = column.as_primitive_opt::<Float64Type>() {
            // f64::total_cmp's order, which the column's comparator keeps.
            let key = |bits: u64| {
                if bits >> 63 == 1 {
                    !bits
                } else {
                    bits | (1 << 63)
                }
            };
            let keys = doubles.values().iter().map(|v| key(v.to_bits()));
            (keys.collect(), false)
        } else {
            return None;
        };
        // Nulls are key 0, which no value is below.
        if let Some(nulls) = column.nulls() {
            for (key, valid) in keys.iter_mut().zip(nulls.iter()) {
                if !valid {
                    *key = 0;
                }
            }
        }
        Some(OrderKeys { keys, text })
    }

    /// Whether every row with this key holds the same value (or null): text of up to seven
    /// bytes, nulls of text, and any number but the one that shares key 0 with null.
    fn exact(&self, key: u64) -> bool {
        if self.text { key & 0xff != 9 } else { key != 0 }
    }
}

/// Reads a Parquet file written by [`write_parquet`] back as batches.
pub fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>, ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?.build()?;
    Ok(reader.collect::<Result<_, _>>()?)
}

/// Writes a batch as a Parquet file; see [`SegmentWriter`].
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<u64, ParquetError> {
    let mut writer = SegmentWriter::create(path, batch.schema(), FileRole::Segment)?;
    writer.write(batch)?;
    writer.finish()
}

/// What a Parquet file is written for, which decides how it is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    /// A segment: kept, so compact (dictionaries, Snappy), with page statistics, and synced
    /// before it is named.
    Segment,
    /// An intermediate persist: read once more by the publish's merge (and by queries until
    /// then), and dropped after a crash (the task reads its records again), so written
    /// cheaply: plain values, uncompressed, statistics per row group, not synced.
    Persist,
}

impl FileRole {
    fn properties(self) -> WriterProperties {
        let builder = WriterProperties::builder().set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        match self {
            FileRole::Segment => builder
                .set_compression(Compression::SNAPPY)
                .set_statistics_enabled(EnabledStatistics::Page),
            FileRole::Persist => builder
                .set_compression(Compression::UNCOMPRESSED)
                .set_dictionary_enabled(false)
                .set_statistics_enabled(EnabledStatistics::Chunk),
        }
        .build()
    }
}

/// A Parquet file being written a batch at a time, encoded for its [`FileRole`], first under
/// a temporary name and renamed when finished, so a crash never leaves a half-written
/// segment. A writer dropped unfinished (a failed write) removes its file. Errors name the
/// file.
pub struct SegmentWriter {
    path: PathBuf,
    partial: PathBuf,
    role: FileRole,
    /// Taken by `finish` (the writer is there until then).
    writer: Option<ArrowWriter<File>>,
}

impl SegmentWriter {
    pub fn create(
        path: &Path,
        schema: SchemaRef,
        role: FileRole,
    ) -> Result<SegmentWriter, ParquetError> {
        let partial = path.with_extension("parquet.partial");
        let file = File::create(&partial).map_err(|e| writing(path, e))?;
        // Made before the Arrow writer, so a failing one still removes the file.
        let mut writer = SegmentWriter {
            path: path.to_path_buf(),
            partial,
            role,
            writer: None,
        };
        let arrow_writer = ArrowWriter::try_new(file, schema, Some(role.properties()))
            .map_err(|e| writing(path, e))?;
        writer.writer = Some(arrow_writer);
        Ok(writer)
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        let writer = self.writer.as_mut().expect("unfinished");
        writer.write(batch).map_err(|e| writing(&self.path, e))
    }

    /// Completes the file, syncs a segment and gives it its name; returns its size.
    pub fn finish(mut self) -> Result<u64, ParquetError> {
        let writer = self.writer.take().expect("unfinished");
        let finished = || -> Result<u64, ParquetError> {
            let file = writer.into_inner()?;
            if self.role == FileRole::Segment {
                file.sync_all()?;
            }
            let size = file.metadata()?.len();
            std::fs::rename(&self.partial, &self.path)?;
            Ok(size)
        };
        finished().map_err(|e| writing(&self.path, e))
    }
}

/// A failure writing the segment file at `path`, naming it.
fn writing(path: &Path, error: impl std::fmt::Display) -> ParquetError {
    ParquetError::General(format!("writing {}: {error}", path.display()))
}

impl Drop for SegmentWriter {
    /// Removes the temporary file of a writer not finished or whose finish failed (a
    /// finished one was renamed away).
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn schema() -> SegmentSchema {
        SegmentSchema {
            dimensions: vec![
                ("user".into(), DimensionType::String),
                ("views".into(), DimensionType::Long),
            ],
            metrics: vec![
                ("count".into(), MetricKind::Count),
                ("score".into(), MetricKind::DoubleSum),
            ],
        }
    }

    fn row(time: i64, user: Option<&str>, views: i64, score: f64) -> RolledRow {
        RolledRow {
            time,
            dimensions: vec![
                user.map_or(DimValue::Null, |u| DimValue::Text(u.to_string().into())),
                DimValue::Long(views),
            ],
            metrics: vec![MetricValue::Long(1), MetricValue::Double(score)],
        }
    }

    #[test]
    fn rows_become_sorted_columns_and_a_parquet_file() {
        let rows = vec![
            row(20, Some("mia"), 3, 1.5),
            row(10, Some("gus"), 1, 0.5),
            row(20, Some("ann"), 2, 6.0),
            row(20, None, 9, 2.0),
            row(20, Some("ann"), 2, 4.0),
            row(20, Some("ann"), 2, 5.0),
        ];
        let batch = sort_batch(&schema(), &to_batch(&schema(), &rows).unwrap()).unwrap();
        let order: Vec<(i64, i64, f64)> = (0..batch.num_rows())
            .map(|i| {
                (
                    batch
                        .column(0)
                        .as_primitive::<TimestampMillisecondType>()
                        .value(i),
                    batch.column(2).as_primitive::<Int64Type>().value(i),
                    batch.column(4).as_primitive::<Float64Type>().value(i),
                )
            })
            .collect();
        assert_eq!(
            order,
            vec![
                (10, 1, 0.5),
                (20, 9, 2.0),
                (20, 2, 6.0),
                (20, 2, 4.0),
                (20, 2, 5.0),
                (20, 3, 1.5)
            ],
            "time, then user with nulls first; equal rows in the order they came"
        );
        assert_eq!(batch.num_rows(), 6);
        assert_eq!(batch.schema().field(0).name(), "__time");
        let times = batch.column(0).as_primitive::<TimestampMillisecondType>();
        assert_eq!(times.value(0), 10);
        let users = batch.column(1).as_string::<i32>();
        assert!(users.is_null(1));
        assert_eq!(users.value(2), "ann");
        assert_eq!(batch.column(3).as_primitive::<Int64Type>().value(0), 1);
        assert_eq!(batch.column(4).as_primitive::<Float64Type>().value(5), 1.5);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment.parquet");
        let size = write_parquet(&path, &batch).unwrap();
        assert!(size > 0);
        assert!(!dir.path().join("segment.parquet.partial").exists());
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let statistics = reader
            .metadata()
            .row_group(0)
            .column(0)
            .statistics()
            .cloned();
        assert!(statistics.is_some(), "time statistics allow pruning");
        let users = reader.metadata().row_group(0).column(1);
        assert_eq!(
            users.compression(),
            Compression::SNAPPY,
            "segments are kept compact"
        );
        assert!(
            users.dictionary_page_offset().is_some(),
            "strings dictionary-encoded"
        );
        let read: Vec<RecordBatch> = reader.build().unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(read[0], batch);
    }

    /// Many rows of few times, users and views sort as a plain stable sort of their keys does.
    #[test]
    fn sorting_agrees_with_a_stable_sort_of_the_keys() {
        // Users alike in their first seven or eight bytes (keys tell only up to seven), short
        // ones (their keys tell them whole, so views order their rows), and the empty one.
        let users = [
            "mia",
            "leonardo_b",
            "",
            "leonardo_a",
            "leonardo",
            "gus",
            "leonard",
        ];
        let mut keys: Vec<(i64, Option<&str>, i64, f64)> = (0..5_000_i64)
            .map(|i| {
                let user = users[(i * 13 % 7) as usize];
                (
                    i * 7_919 % 37,
                    (i % 7 != 0).then_some(user),
                    i % 3 - 1,
                    i as f64,
                )
            })
            .collect();
        let rows: Vec<RolledRow> = keys.iter().map(|k| row(k.0, k.1, k.2, k.3)).collect();
        let batch = sort_batch(&schema(), &to_batch(&schema(), &rows).unwrap()).unwrap();
        keys.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        let scores = batch.column(4).as_primitive::<Float64Type>();
        let sorted: Vec<f64> = (0..batch.num_rows()).map(|i| scores.value(i)).collect();
        let expected: Vec<f64> = keys.iter().map(|key| key.3).collect();
        assert_eq!(sorted, expected);
    }

    /// Keys of values in their sorted order never go down, nulls' keys are the least.
    #[test]
    fn order_keys_keep_the_columns_order() {
        let text: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![
            None,
            Some(""),
            Some("\0"),
            Some("a"),
            Some("abcdefgh"),
            Some("abcdefghi"),
            Some("abcdefgz"),
            Some("b"),
            Some("\u{e9}"),
        ]));
        let longs: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![
            None,
            Some(i64::MIN),
            Some(-1),
            Some(0),
            Some(1),
            Some(i64::MAX),
        ]));
        let doubles: ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![
            None,
            Some(-f64::NAN),
            Some(f64::NEG_INFINITY),
            Some(-1.5),
            Some(-0.0),
            Some(0.0),
            Some(1e-300),
            Some(2.5),
            Some(f64::INFINITY),
            Some(f64::NAN),
        ]));
        for column in [text, longs, doubles] {
            let compare = make_comparator(
                column.as_ref(),
                column.as_ref(),
                SortOptions {
                    descending: false,
                    nulls_first: true,
                },
            )
            .unwrap();
            let keys = OrderKeys::of(column.as_ref()).unwrap();
            for row in 1..column.len() {
                assert!(compare(row - 1, row).is_le(), "{column:?} sorted at {row}");
                assert!(
                    keys.keys[row - 1] <= keys.keys[row],
                    "{column:?} keys at {row}"
                );
            }
            // Equal exact keys are equal values.
            for a in 0..column.len() {
                for b in 0..column.len() {
                    if keys.keys[a] == keys.keys[b] && keys.exact(keys.keys[a]) {
                        assert!(compare(a, b).is_eq(), "{column:?} rows {a} and {b}");
                    }
                }
            }
        }
    }

    /// A batch written sorted a row group at a time reads back as the one sorted copy, in
    /// several row groups; a batch in order already is written as it is.
    #[test]
    fn a_batch_written_sorted_in_row_groups() {
        let rows: Vec<RolledRow> = (0..ROW_GROUP_ROWS as i64 * 2 + 100)
            .map(|i| {
                let user = ["mia", "gus", "ann"][(i * 7 % 3) as usize];
                row(
                    (i * 7_919) % 1_000,
                    (i % 5 != 0).then_some(user),
                    i % 11,
                    i as f64,
                )
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let batch = to_batch(&schema(), &rows).unwrap();
        let sorted = sort_batch(&schema(), &batch).unwrap();
        for (name, input) in [("shuffled", &batch), ("in order", &sorted)] {
            let path = dir.path().join(format!("{name}.parquet"));
            write_sorted(&path, &schema(), input).unwrap();
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
            assert_eq!(reader.metadata().num_row_groups(), 3, "{name}");
            // A persist is written cheaply: read once by the publish, dropped after a crash.
            let users = reader.metadata().row_group(0).column(1);
            assert_eq!(users.compression(), Compression::UNCOMPRESSED, "{name}");
            assert!(users.dictionary_page_offset().is_none(), "{name}");
            let read: Vec<RecordBatch> = reader.build().unwrap().collect::<Result<_, _>>().unwrap();
            let read = arrow::compute::concat_batches(&sorted.schema(), &read).unwrap();
            assert_eq!(read, sorted, "{name}");
        }
    }
}

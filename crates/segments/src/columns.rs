//! Rows of a time chunk as Arrow columns, sorted by time then dimensions (the order segments
//! are stored and pruned in), and segments as Parquet files with column statistics.

use std::cmp::Ordering;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder, new_null_array,
};
use arrow::compute::{SortColumn, SortOptions, cast, concat_batches, lexsort_to_indices, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

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

fn compare_dim(a: &DimValue, b: &DimValue) -> Ordering {
    match (a, b) {
        (DimValue::Null, DimValue::Null) => Ordering::Equal,
        (DimValue::Null, _) => Ordering::Less,
        (_, DimValue::Null) => Ordering::Greater,
        (DimValue::String(x), DimValue::String(y)) => x.cmp(y),
        (DimValue::Long(x), DimValue::Long(y)) => x.cmp(y),
        (DimValue::Double(x), DimValue::Double(y)) => x.total_cmp(y),
        (x, y) => format!("{x:?}").cmp(&format!("{y:?}")),
    }
}

/// Sorts rows by time, then by each dimension in order.
pub fn sort_rows(rows: &mut [RolledRow]) {
    rows.sort_by(|a, b| {
        a.time.cmp(&b.time).then_with(|| {
            a.dimensions
                .iter()
                .zip(&b.dimensions)
                .map(|(x, y)| compare_dim(x, y))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
    });
}

/// A column being filled.
enum Builder {
    Text(StringBuilder),
    Long(Int64Builder),
    Double(Float64Builder),
}

impl Builder {
    fn for_type(data_type: &DataType, capacity: usize) -> Builder {
        match data_type {
            DataType::Int64 => Builder::Long(Int64Builder::with_capacity(capacity)),
            DataType::Float64 => Builder::Double(Float64Builder::with_capacity(capacity)),
            _ => Builder::Text(StringBuilder::with_capacity(capacity, capacity * 8)),
        }
    }

    fn push_dim(&mut self, value: &DimValue) {
        match (self, value) {
            (Builder::Text(b), DimValue::String(s)) => b.append_value(s),
            (Builder::Text(b), DimValue::Long(v)) => b.append_value(v.to_string()),
            (Builder::Text(b), DimValue::Double(v)) => b.append_value(v.to_string()),
            (Builder::Long(b), DimValue::Long(v)) => b.append_value(*v),
            (Builder::Long(b), DimValue::Double(v)) => b.append_value(*v as i64),
            (Builder::Double(b), DimValue::Double(v)) => b.append_value(*v),
            (Builder::Double(b), DimValue::Long(v)) => b.append_value(*v as f64),
            (builder, _) => builder.push_null(),
        }
    }

    fn push_metric(&mut self, value: &MetricValue) {
        match (self, value) {
            (Builder::Long(b), MetricValue::Long(v)) => b.append_value(*v),
            (Builder::Double(b), MetricValue::Double(v)) => b.append_value(*v),
            (Builder::Double(b), MetricValue::Long(v)) => b.append_value(*v as f64),
            (Builder::Text(b), MetricValue::String(s)) => b.append_value(s),
            (builder, _) => builder.push_null(),
        }
    }

    fn push_null(&mut self) {
        match self {
            Builder::Text(b) => b.append_null(),
            Builder::Long(b) => b.append_null(),
            Builder::Double(b) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Text(mut b) => Arc::new(b.finish()),
            Builder::Long(mut b) => Arc::new(b.finish()),
            Builder::Double(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Rows (already in the order wanted) as one Arrow batch of the schema.
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
    arrays.extend(columns.into_iter().map(Builder::finish));
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

/// Batches of one schema as one batch sorted by time, then by each dimension (nulls first),
/// as a segment stores its rows.
pub fn merge_sorted(
    schema: &SegmentSchema,
    batches: &[RecordBatch],
) -> Result<RecordBatch, ArrowError> {
    let arrow_schema = schema.arrow();
    let conformed: Vec<RecordBatch> = batches
        .iter()
        .map(|b| conform(b, &arrow_schema))
        .collect::<Result<_, _>>()?;
    let all = concat_batches(&arrow_schema, &conformed)?;
    let keys: Vec<SortColumn> = all.columns()[..=schema.dimensions.len()]
        .iter()
        .map(|column| SortColumn {
            values: column.clone(),
            options: Some(SortOptions {
                descending: false,
                nulls_first: true,
            }),
        })
        .collect();
    let order = lexsort_to_indices(&keys, None)?;
    let columns = all
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &order, None))
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(arrow_schema, columns)
}

/// Reads a Parquet file written by [`write_parquet`] back as batches.
pub fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>, parquet::errors::ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?.build()?;
    Ok(reader.collect::<Result<_, _>>()?)
}

/// Writes a batch as a Parquet file (Snappy-compressed, with page statistics), first to a
/// temporary name and then renamed, so a crash never leaves a half-written segment.
pub fn write_parquet(
    path: &Path,
    batch: &RecordBatch,
) -> Result<u64, parquet::errors::ParquetError> {
    let partial = path.with_extension("parquet.partial");
    let file = File::create(&partial)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Page)
        .build();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties))?;
    writer.write(batch)?;
    let file = writer.into_inner()?;
    file.sync_all()?;
    let size = file.metadata()?.len();
    std::fs::rename(&partial, path)?;
    Ok(size)
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
                user.map_or(DimValue::Null, |u| DimValue::String(u.into())),
                DimValue::Long(views),
            ],
            metrics: vec![MetricValue::Long(1), MetricValue::Double(score)],
        }
    }

    #[test]
    fn rows_become_sorted_columns_and_a_parquet_file() {
        let mut rows = vec![
            row(20, Some("mia"), 3, 1.5),
            row(10, Some("gus"), 1, 0.5),
            row(20, None, 9, 2.0),
            row(20, Some("ann"), 2, 4.0),
        ];
        sort_rows(&mut rows);
        let order: Vec<(i64, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r.time,
                    if let DimValue::Long(v) = r.dimensions[1] {
                        v
                    } else {
                        0
                    },
                )
            })
            .collect();
        assert_eq!(
            order,
            vec![(10, 1), (20, 9), (20, 2), (20, 3)],
            "time, then user with nulls first"
        );
        let batch = to_batch(&schema(), &rows).unwrap();
        assert_eq!(batch.num_rows(), 4);
        assert_eq!(batch.schema().field(0).name(), "__time");
        let times = batch.column(0).as_primitive::<TimestampMillisecondType>();
        assert_eq!(times.value(0), 10);
        let users = batch.column(1).as_string::<i32>();
        assert!(users.is_null(1));
        assert_eq!(users.value(2), "ann");
        assert_eq!(batch.column(3).as_primitive::<Int64Type>().value(0), 1);
        assert_eq!(batch.column(4).as_primitive::<Float64Type>().value(3), 1.5);

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
        let read: Vec<RecordBatch> = reader.build().unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(read[0], batch);
    }
}

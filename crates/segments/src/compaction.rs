//! What compaction makes of a time chunk's stored rows: the rows of its input segments in the
//! output's columns, filtered, their times truncated to the query granularity, rolled up when
//! asked (perfect rollup: every equal row of the chunk combines), and each output segment's
//! rows sorted by time then dimensions.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::{
    LexicographicalComparator, SortColumn, SortOptions, cast, concat_batches, filter_record_batch,
    take,
};
use arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef, TimestampMillisecondType};
use arrow::error::ArrowError;

use crate::columns::{SegmentSchema, conform, take_rows};
use crate::expr::{Columns, ExprValue};
use crate::filter::RowFilter;
use crate::rollup::MetricKind;
use crate::spec::{DimensionType, Granularity};
use crate::time::stored_time;

/// How one output metric is computed from the input rows.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPlan {
    pub name: String,
    pub kind: MetricKind,
    /// The input column it aggregates; None for a count of input rows.
    pub input: Option<String>,
}

impl MetricPlan {
    /// The plan that keeps a stored metric as it is, combining it over rolled-up rows: a
    /// count becomes the sum of the counts.
    pub fn combining(name: &str, kind: MetricKind) -> MetricPlan {
        MetricPlan {
            name: name.to_string(),
            kind: match kind {
                MetricKind::Count => MetricKind::LongSum,
                other => other,
            },
            input: Some(name.to_string()),
        }
    }
}

/// What compaction makes of the rows: their columns, filter, time truncation and rollup.
#[derive(Debug, Clone)]
pub struct RowShape {
    pub dimensions: Vec<(String, DimensionType)>,
    pub metrics: Vec<MetricPlan>,
    pub query_granularity: Granularity,
    pub rollup: bool,
    /// Rows that do not match are dropped.
    pub filter: Option<RowFilter>,
}

/// One row of a batch, as a filter reads it.
struct BatchRow<'a> {
    batch: &'a RecordBatch,
    row: usize,
}

impl Columns for BatchRow<'_> {
    fn column(&self, name: &str) -> ExprValue {
        let Some(column) = self.batch.column_by_name(name) else {
            return ExprValue::Null;
        };
        if column.is_null(self.row) {
            return ExprValue::Null;
        }
        match column.data_type() {
            DataType::Utf8 => ExprValue::String(column.as_string::<i32>().value(self.row).into()),
            DataType::Int64 => ExprValue::Long(column.as_primitive::<Int64Type>().value(self.row)),
            DataType::Float64 => {
                ExprValue::Double(column.as_primitive::<Float64Type>().value(self.row))
            }
            DataType::Timestamp(..) => ExprValue::Long(
                column
                    .as_primitive::<TimestampMillisecondType>()
                    .value(self.row),
            ),
            _ => ExprValue::Null,
        }
    }
}

/// The Arrow type a metric kind is stored as.
fn metric_type(kind: MetricKind) -> DataType {
    SegmentSchema {
        dimensions: vec![],
        metrics: vec![("m".into(), kind)],
    }
    .arrow()
    .field(1)
    .data_type()
    .clone()
}

/// Compares rows by the columns in order, each ascending with nulls first (a segment's
/// order), through typed comparisons: no copy of the values.
fn comparator(columns: &[ArrayRef]) -> Result<LexicographicalComparator, ArrowError> {
    let sort_columns: Vec<SortColumn> = columns
        .iter()
        .map(|values| SortColumn {
            values: values.clone(),
            options: Some(SortOptions {
                descending: false,
                nulls_first: true,
            }),
        })
        .collect();
    LexicographicalComparator::try_new(&sort_columns)
}

impl RowShape {
    /// The columns of the output segments.
    pub fn schema(&self) -> SegmentSchema {
        SegmentSchema {
            dimensions: self.dimensions.clone(),
            metrics: self
                .metrics
                .iter()
                .map(|m| (m.name.clone(), m.kind))
                .collect(),
        }
    }

    /// The rows of the time chunk starting at `chunk_start`, from its input segments'
    /// batches (of any columns), in time order; returns them with how many input rows were
    /// read.
    pub fn rows(
        &self,
        inputs: &[RecordBatch],
        chunk_start: i64,
    ) -> Result<(RecordBatch, usize), ArrowError> {
        // Every input column, the first type met winning (as the datasource's schema does).
        let mut fields: Vec<arrow::datatypes::FieldRef> =
            SegmentSchema::default().arrow().fields().to_vec();
        for batch in inputs {
            for field in batch.schema().fields() {
                if !fields.iter().any(|f| f.name() == field.name()) {
                    fields.push(field.clone());
                }
            }
        }
        let merged: SchemaRef = Arc::new(arrow::datatypes::Schema::new(fields));
        let conformed: Vec<RecordBatch> = inputs
            .iter()
            .map(|b| conform(b, &merged))
            .collect::<Result<_, _>>()?;
        let mut all = concat_batches(&merged, &conformed)?;
        let read = all.num_rows();
        if let Some(filter) = &self.filter {
            let keep: BooleanArray = (0..all.num_rows())
                .map(|row| Some(filter.matches(&BatchRow { batch: &all, row })))
                .collect();
            all = filter_record_batch(&all, &keep)?;
        }
        Ok((self.shape(&all, chunk_start)?, read))
    }

    /// Rows (filtered) in the output's columns, truncated and rolled up, in time order.
    fn shape(&self, all: &RecordBatch, chunk_start: i64) -> Result<RecordBatch, ArrowError> {
        let output = self.schema().arrow();
        let times = all.column(0).as_primitive::<TimestampMillisecondType>();
        let truncated: TimestampMillisecondArray = times
            .iter()
            .map(|t| t.map(|t| stored_time(t, &self.query_granularity, chunk_start)))
            .collect::<TimestampMillisecondArray>()
            .with_timezone("UTC");
        let dimensions: Vec<ArrayRef> = self
            .dimensions
            .iter()
            .zip(&output.fields()[1..])
            .map(|((name, _), field)| match all.column_by_name(name) {
                Some(column) => cast(column, field.data_type()),
                None => Ok(arrow::array::new_null_array(
                    field.data_type(),
                    all.num_rows(),
                )),
            })
            .collect::<Result<_, _>>()?;
        // Sorted by (truncated time, dimensions), as segments store rows; with rollup, then
        // by original time, so that equal rows are neighbours with the earliest first (for
        // first/last metrics). The stable sort merges the inputs' sorted runs cheaply.
        let mut keys: Vec<ArrayRef> = vec![Arc::new(truncated.clone())];
        keys.extend(dimensions.iter().cloned());
        let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
        let groups: Vec<(usize, usize)> = if self.rollup {
            let equal = comparator(&keys)?;
            let mut with_time = keys.clone();
            with_time.push(all.column(0).clone());
            let ordering = comparator(&with_time)?;
            order.sort_by(|&a, &b| ordering.compare(a as usize, b as usize));
            // Groups of equal rows: [start, end) within `order`.
            let mut groups: Vec<(usize, usize)> = Vec::new();
            for (i, &row) in order.iter().enumerate() {
                let same = i > 0 && equal.compare(row as usize, order[i - 1] as usize).is_eq();
                match groups.last_mut() {
                    Some(group) if same => group.1 = i + 1,
                    _ => groups.push((i, i + 1)),
                }
            }
            groups
        } else {
            let ordering = comparator(&keys)?;
            order.sort_by(|&a, &b| ordering.compare(a as usize, b as usize));
            (0..order.len()).map(|i| (i, i + 1)).collect()
        };
        let firsts = UInt32Array::from(groups.iter().map(|g| order[g.0]).collect::<Vec<u32>>());
        let mut columns: Vec<ArrayRef> = vec![take(&truncated, &firsts, None)?];
        for dimension in &dimensions {
            columns.push(take(dimension.as_ref(), &firsts, None)?);
        }
        for plan in &self.metrics {
            columns.push(aggregate(plan, all, &order, &groups)?);
        }
        RecordBatch::try_new(output, columns)
    }
}

/// A metric over each group of rows (`groups` index `order`).
fn aggregate(
    plan: &MetricPlan,
    all: &RecordBatch,
    order: &[u32],
    groups: &[(usize, usize)],
) -> Result<ArrayRef, ArrowError> {
    use MetricKind::*;
    let target = metric_type(plan.kind);
    let input = match &plan.input {
        Some(name) => match all.column_by_name(name) {
            Some(column) => Some(cast(column, &target)?),
            None => Some(arrow::array::new_null_array(&target, all.num_rows())),
        },
        None => None,
    };
    let rows = |g: &(usize, usize)| order[g.0..g.1].iter().map(|&r| r as usize);
    Ok(match (plan.kind, input) {
        (Count, _) | (_, None) => Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|g| (g.1 - g.0) as i64),
        )),
        (LongSum | LongMin | LongMax | LongFirst | LongLast, Some(input)) => {
            let values = input.as_primitive::<Int64Type>();
            let present = |g| {
                rows(g)
                    .filter(|&r| values.is_valid(r))
                    .map(|r| values.value(r))
            };
            Arc::new(
                groups
                    .iter()
                    .map(|g| match plan.kind {
                        LongSum => Some(present(g).fold(0i64, i64::wrapping_add)),
                        LongMin => present(g).min(),
                        LongMax => present(g).max(),
                        LongFirst => present(g).next(),
                        _ => present(g).next_back(),
                    })
                    .collect::<Int64Array>(),
            )
        }
        (DoubleSum | DoubleMin | DoubleMax | DoubleFirst | DoubleLast, Some(input)) => {
            let values = input.as_primitive::<Float64Type>();
            let present = |g| {
                rows(g)
                    .filter(|&r| values.is_valid(r))
                    .map(|r| values.value(r))
            };
            Arc::new(
                groups
                    .iter()
                    .map(|g| match plan.kind {
                        DoubleSum => Some(present(g).sum()),
                        DoubleMin => present(g).reduce(f64::min),
                        DoubleMax => present(g).reduce(f64::max),
                        DoubleFirst => present(g).next(),
                        _ => present(g).next_back(),
                    })
                    .collect::<Float64Array>(),
            )
        }
        (StringFirst | StringLast, Some(input)) => {
            let values = input.as_string::<i32>();
            let present = |g| {
                rows(g)
                    .filter(|&r| values.is_valid(r))
                    .map(|r| values.value(r))
            };
            Arc::new(
                groups
                    .iter()
                    .map(|g| {
                        if plan.kind == StringFirst {
                            present(g).next()
                        } else {
                            present(g).next_back()
                        }
                    })
                    .collect::<StringArray>(),
            )
        }
    })
}

/// The given rows (ascending positions) of a batch that [`RowShape::rows`] made: sorted by
/// time then each dimension, as a segment stores them, since the batch is. A run of
/// neighbouring rows is a slice, not a copy.
pub fn segment_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch, ArrowError> {
    match (rows.first(), rows.last()) {
        (Some(&first), Some(&last)) if (last - first) as usize + 1 == rows.len() => {
            Ok(batch.slice(first as usize, rows.len()))
        }
        _ => take_rows(batch, rows),
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;
    use crate::filter::RowFilter;
    use crate::spec::Filter;

    fn segment(rows: &[(i64, &str, i64)]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new(
                "__time",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("user", DataType::Utf8, true),
            Field::new("count", DataType::Int64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(
                    TimestampMillisecondArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn shape(rollup: bool, minutes: bool) -> RowShape {
        RowShape {
            dimensions: vec![("user".into(), DimensionType::String)],
            metrics: vec![MetricPlan::combining("count", MetricKind::Count)],
            query_granularity: if minutes {
                Granularity::named("minute").unwrap()
            } else {
                Granularity::None
            },
            rollup,
            filter: None,
        }
    }

    #[test]
    fn rollup_combines_equal_rows_across_segments_summing_counts() {
        let a = segment(&[(1_000, "mia", 2), (61_000, "gus", 1)]);
        let b = segment(&[(2_000, "mia", 3), (3_000, "gus", 1)]);
        let (rows, read) = shape(true, true).rows(&[a.clone(), b.clone()], 0).unwrap();
        assert_eq!(read, 4);
        let users: Vec<&str> = rows.column(1).as_string::<i32>().iter().flatten().collect();
        let counts: Vec<i64> = rows.column(2).as_primitive::<Int64Type>().values().to_vec();
        let times: Vec<i64> = rows
            .column(0)
            .as_primitive::<TimestampMillisecondType>()
            .values()
            .to_vec();
        assert_eq!(users, vec!["gus", "mia", "gus"]);
        assert_eq!(counts, vec![1, 5, 1]);
        assert_eq!(times, vec![0, 0, 60_000]);

        let (kept, _) = shape(false, false).rows(&[a, b], 0).unwrap();
        assert_eq!(kept.num_rows(), 4, "without rollup every row stays");
        let counts: Vec<i64> = kept.column(2).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(counts.iter().sum::<i64>(), 7);
    }

    /// A chunk's rows keep within it when the query granularity reaches before its start (a
    /// week that began in the month before, in month segments), rolled up or not.
    #[test]
    fn truncated_times_stay_within_their_chunk() {
        let march = crate::time::parse_iso("2025-03-01T00:00:00Z").unwrap();
        for rollup in [false, true] {
            let mut shape = shape(rollup, false);
            shape.query_granularity = Granularity::named("week").unwrap();
            // Saturday 2025-03-01 and Monday 2025-03-03: weeks from 2025-02-24 and 03-03.
            let rows = [
                (march + 36_000_000, "mia", 1),
                (march + 2 * 86_400_000, "gus", 1),
            ];
            let (rows, _) = shape.rows(&[segment(&rows)], march).unwrap();
            let times = rows.column(0).as_primitive::<TimestampMillisecondType>();
            assert_eq!(
                times.values().to_vec(),
                vec![march, march + 2 * 86_400_000],
                "rollup {rollup}"
            );
        }
    }

    #[test]
    fn a_filter_drops_rows_and_new_dimensions_are_null() {
        let mut shape = shape(false, false);
        shape.filter = Some(
            RowFilter::compile(
                &Filter::Selector {
                    dimension: "user".into(),
                    value: Some("mia".into()),
                    extraction_fn: None,
                },
                "transformSpec.filter",
            )
            .unwrap(),
        );
        shape
            .dimensions
            .push(("region".into(), DimensionType::String));
        let (rows, read) = shape
            .rows(&[segment(&[(1, "mia", 1), (2, "gus", 1)])], 0)
            .unwrap();
        assert_eq!((rows.num_rows(), read), (1, 2));
        assert!(rows.column(2).is_null(0));
    }

    #[test]
    fn rows_come_sorted_by_time_then_dimensions_and_pieces_keep_that_order() {
        let inputs = [
            segment(&[(5, "b", 1), (5, "a", 2), (1, "z", 3)]),
            segment(&[(3, "q", 4)]),
        ];
        let (rows, _) = shape(false, false).rows(&inputs, 0).unwrap();
        let counts = |batch: &RecordBatch| -> Vec<i64> {
            batch
                .column(2)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        };
        assert_eq!(counts(&rows), vec![3, 4, 2, 1]);
        assert_eq!(counts(&segment_rows(&rows, &[1, 2]).unwrap()), vec![4, 2]);
        assert_eq!(counts(&segment_rows(&rows, &[0, 3]).unwrap()), vec![3, 1]);
    }
}

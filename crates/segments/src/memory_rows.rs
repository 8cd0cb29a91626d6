//! The rows of a time chunk held in memory between persists. With rollup, equal rows combine,
//! so rows stay row objects in a hash index ([`Accumulator`]). Without rollup every row stays
//! a row, so its values go straight into Arrow column builders: no object per row, and a
//! persist or query takes the columns as they are.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray};
use arrow::error::ArrowError;

use crate::columns::{Builder, SegmentSchema, to_batch};
use crate::rollup::{Accumulator, MetricKind, RolledRow};
use crate::spec::{DataSchema, Granularity};
use crate::time::stored_time;
use crate::transform::{DimValue, IngestRow};

/// Rows in memory, kept as the spec's rollup setting needs.
#[derive(Debug)]
pub enum MemoryRows {
    /// Rollup combines equal rows.
    Rolled(Accumulator),
    /// Every row stays a row.
    Columns(ColumnRows),
}

impl MemoryRows {
    /// No rows yet, for a datasource's schema and the columns of its segments, in a time
    /// chunk starting at `chunk_start`.
    pub fn new(data_schema: &DataSchema, schema: &SegmentSchema, chunk_start: i64) -> MemoryRows {
        let granularity = &data_schema.granularity_spec;
        let query_granularity = granularity.query_granularity.clone();
        if granularity.rollup {
            MemoryRows::Rolled(Accumulator::new(
                &data_schema.metrics_spec,
                query_granularity,
                chunk_start,
            ))
        } else {
            MemoryRows::Columns(ColumnRows::new(schema, query_granularity, chunk_start))
        }
    }

    /// Adds a row whose dimensions are in `schema`'s order (a row may lack dimensions added
    /// after it was made: they are null).
    pub fn add(&mut self, row: IngestRow<'_>, schema: &SegmentSchema) {
        match self {
            MemoryRows::Rolled(rows) => rows.add(row),
            MemoryRows::Columns(rows) => rows.add(row, schema),
        }
    }

    /// Stored rows.
    pub fn len(&self) -> usize {
        match self {
            MemoryRows::Rolled(rows) => rows.len(),
            MemoryRows::Columns(rows) => rows.times.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows as one batch of `schema`, in no particular order (queries need none;
    /// persists and publishes sort); `take` empties the rows (a persist), otherwise they stay
    /// (a query).
    pub fn batch(&mut self, schema: &SegmentSchema, take: bool) -> Result<RecordBatch, ArrowError> {
        match self {
            MemoryRows::Rolled(rows) => {
                let batch = to_batch(schema, &rows.rows().collect::<Vec<RolledRow>>())?;
                if take {
                    rows.clear();
                }
                Ok(batch)
            }
            MemoryRows::Columns(rows) => rows.batch(schema, take),
        }
    }
}

/// Rows appended to one builder per column, in arrival order.
#[derive(Debug)]
pub struct ColumnRows {
    kinds: Vec<MetricKind>,
    query_granularity: Granularity,
    chunk_start: i64,
    /// Each row's stored time (see [`stored_time`]).
    times: Vec<i64>,
    /// One per dimension of the schema when the last row came.
    dimensions: Vec<Builder>,
    metrics: Vec<Builder>,
    /// The size of the round a persist took: rows, and text bytes per builder (dimensions,
    /// then metrics). The next round's builders take that room, and an eighth more, when its
    /// first row comes, as it is likely about as long; not before, so a chunk that gets no
    /// more rows (time moved past it, or it is full) holds nothing.
    room: Option<(usize, Vec<usize>)>,
}

impl ColumnRows {
    fn new(schema: &SegmentSchema, query_granularity: Granularity, chunk_start: i64) -> ColumnRows {
        let fields = schema.arrow();
        ColumnRows {
            kinds: schema.metrics.iter().map(|(_, kind)| *kind).collect(),
            query_granularity,
            chunk_start,
            times: Vec::new(),
            dimensions: Vec::new(),
            metrics: fields.fields()[1 + schema.dimensions.len()..]
                .iter()
                .map(|f| Builder::for_type(f.data_type(), 0))
                .collect(),
            room: None,
        }
    }

    fn add(&mut self, row: IngestRow<'_>, schema: &SegmentSchema) {
        if let Some((rows, bytes)) = self.room.take() {
            // Rounds of equal rows differ a little in text: a round with one byte more than
            // room for it would double its buffer at the end, copying all of it.
            let more = |n: usize| n + n / 8;
            self.times.reserve(more(rows));
            let builders = self.dimensions.iter_mut().chain(&mut self.metrics);
            for (builder, bytes) in builders.zip(bytes) {
                *builder = builder.with_room(more(rows), more(bytes));
            }
        }
        if self.dimensions.len() < schema.dimensions.len() {
            self.add_dimensions(schema);
        }
        for (i, builder) in self.dimensions.iter_mut().enumerate() {
            builder.push_dim(row.dimensions.get(i).unwrap_or(&DimValue::Null));
        }
        // Without rollup a row's metrics aggregate its own inputs alone.
        for (i, (builder, kind)) in self.metrics.iter_mut().zip(&self.kinds).enumerate() {
            let mut value = kind.start();
            let input = row.metric_inputs.get(i).and_then(Option::as_ref);
            value.add(*kind, row.time, input);
            builder.push_metric(&value.finish());
        }
        let time = stored_time(row.time, &self.query_granularity, self.chunk_start);
        self.times.push(time);
    }

    /// Builders for the dimensions the schema gained, holding nulls for the rows that came
    /// before.
    fn add_dimensions(&mut self, schema: &SegmentSchema) {
        let fields = schema.arrow();
        let dimension_fields = &fields.fields()[1..=schema.dimensions.len()];
        let rows = self.times.len();
        for field in &dimension_fields[self.dimensions.len()..] {
            let mut builder = Builder::for_type(field.data_type(), rows);
            (0..rows).for_each(|_| builder.push_null());
            self.dimensions.push(builder);
        }
    }

    /// The rows in arrival order, emptied with `take`.
    fn batch(&mut self, schema: &SegmentSchema, take: bool) -> Result<RecordBatch, ArrowError> {
        if self.times.is_empty() {
            return Ok(RecordBatch::new_empty(schema.arrow()));
        }
        let times = if take {
            let builders = self.dimensions.iter().chain(&self.metrics);
            self.room = Some((
                self.times.len(),
                builders.map(Builder::text_bytes).collect(),
            ));
            std::mem::take(&mut self.times)
        } else {
            self.times.clone()
        };
        let mut columns: Vec<ArrayRef> = vec![Arc::new(
            TimestampMillisecondArray::from(times).with_timezone("UTC"),
        )];
        columns.extend(
            self.dimensions
                .iter_mut()
                .chain(&mut self.metrics)
                .map(|b| if take { b.take() } else { b.copy() }),
        );
        RecordBatch::try_new(schema.arrow(), columns)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use serde_json::json;

    use arrow::datatypes::TimestampMillisecondType;

    use super::*;
    use crate::expr::ExprValue;
    use crate::spec::DimensionType;
    use crate::spec::SupervisorSpec;

    fn data_schema() -> DataSchema {
        let spec = json!({"type": "kafka", "spec": {
            "dataSchema": {"dataSource": "d", "timestampSpec": {"column": "ts", "format": "millis"},
                "dimensionsSpec": {"dimensions": ["user", {"type": "long", "name": "n"}]},
                "metricsSpec": [{"type": "count", "name": "count"},
                    {"type": "longSum", "name": "views", "fieldName": "views"},
                    {"type": "doubleMax", "name": "top", "fieldName": "score"},
                    {"type": "stringLast", "name": "title", "fieldName": "title"}],
                "granularitySpec": {"segmentGranularity": "hour", "queryGranularity": "second", "rollup": false}},
            "ioConfig": {"topic": "t", "inputFormat": {"type": "json"}}}});
        SupervisorSpec::from_json(spec.to_string().as_bytes())
            .unwrap()
            .spec
            .data_schema
    }

    fn segment_schema(
        data_schema: &DataSchema,
        dimensions: &[(&str, DimensionType)],
    ) -> SegmentSchema {
        SegmentSchema {
            dimensions: dimensions
                .iter()
                .map(|(name, kind)| (name.to_string(), *kind))
                .collect(),
            metrics: data_schema
                .metrics_spec
                .iter()
                .map(|m| (m.name().to_string(), MetricKind::of(m)))
                .collect(),
        }
    }

    /// Rows with equal and differing keys, nulls, unparsed numbers and times that truncate
    /// to the same second.
    fn rows() -> Vec<IngestRow<'static>> {
        let user = |u: Option<&'static str>| u.map_or(DimValue::Null, |u| DimValue::Text(u.into()));
        let row = |time, u, n: Option<i64>, views: ExprValue, score: f64, title: &str| IngestRow {
            time,
            dimensions: vec![user(u), n.map_or(DimValue::Null, DimValue::Long)],
            discovered: None,
            metric_inputs: vec![
                Some(ExprValue::Null),
                Some(views),
                Some(ExprValue::Double(score)),
                Some(ExprValue::String(title.into())),
            ],
        };
        vec![
            row(2_500, Some("mia"), Some(3), ExprValue::Long(5), 1.5, "b"),
            row(
                1_200,
                Some("gus"),
                None,
                ExprValue::String("7".into()),
                0.5,
                "a",
            ),
            row(2_100, Some("mia"), Some(3), ExprValue::Long(1), 9.0, "c"),
            row(2_900, None, Some(1), ExprValue::Null, -1.0, "d"),
            row(1_000, Some("gus"), None, ExprValue::Double(2.9), 0.0, "e"),
            row(2_000, Some("ann"), Some(8), ExprValue::Long(4), 2.0, "f"),
            row(2_000, Some("ann"), Some(8), ExprValue::Long(4), 2.0, "f"),
        ]
    }

    /// The rows as stored rows, each its metrics aggregated over itself.
    fn row_by_row(schema: &SegmentSchema, rows: Vec<IngestRow<'static>>) -> RecordBatch {
        let stored: Vec<RolledRow> = rows
            .into_iter()
            .map(|row| RolledRow {
                time: row.time / 1000 * 1000,
                metrics: schema
                    .metrics
                    .iter()
                    .zip(&row.metric_inputs)
                    .map(|((_, kind), input)| {
                        let mut value = kind.start();
                        value.add(*kind, row.time, input.as_ref());
                        value.finish()
                    })
                    .collect(),
                dimensions: row.dimensions,
            })
            .collect();
        to_batch(schema, &stored).unwrap()
    }

    #[test]
    fn without_rollup_columns_hold_every_row_as_it_came() {
        let data_schema = data_schema();
        let schema = segment_schema(
            &data_schema,
            &[("user", DimensionType::String), ("n", DimensionType::Long)],
        );
        let mut columns = MemoryRows::new(&data_schema, &schema, 0);
        assert!(matches!(columns, MemoryRows::Columns(_)));
        for row in rows() {
            columns.add(row, &schema);
        }
        assert_eq!(columns.len(), 7, "equal rows stay apart");
        let expected = row_by_row(&schema, rows());
        assert_eq!(columns.batch(&schema, false).unwrap(), expected);
        assert_eq!(columns.len(), 7, "a query keeps the rows");
        assert_eq!(columns.batch(&schema, true).unwrap(), expected);
        assert!(columns.is_empty(), "a persist takes them");
        columns.add(rows().remove(0), &schema);
        assert_eq!(
            columns.batch(&schema, true).unwrap(),
            row_by_row(&schema, vec![rows().remove(0)]),
            "the builders start again after a persist"
        );
    }

    /// A week that began in the month before keeps the month's rows at its start, with
    /// rollup and without (as Druid keeps a row's time within its segment's interval).
    #[test]
    fn stored_times_stay_within_their_chunk() {
        let march = crate::time::parse_iso("2025-03-01T00:00:00Z").unwrap();
        for rollup in [false, true] {
            let mut data_schema = data_schema();
            data_schema.granularity_spec.query_granularity = Granularity::named("week").unwrap();
            data_schema.granularity_spec.rollup = rollup;
            let schema = segment_schema(
                &data_schema,
                &[("user", DimensionType::String), ("n", DimensionType::Long)],
            );
            let mut chunk = MemoryRows::new(&data_schema, &schema, march);
            let mut row = rows().remove(0);
            // Saturday 2025-03-01, 10:00; its week began on Monday 2025-02-24.
            row.time = march + 10 * 3_600_000;
            chunk.add(row, &schema);
            let batch = chunk.batch(&schema, true).unwrap();
            let times = batch.column(0).as_primitive::<TimestampMillisecondType>();
            assert_eq!(times.value(0), march, "rollup {rollup}");
        }
    }

    #[test]
    fn a_dimension_added_later_is_null_for_earlier_rows() {
        let data_schema = data_schema();
        let mut schema = segment_schema(&data_schema, &[("user", DimensionType::String)]);
        let mut rows = MemoryRows::new(&data_schema, &schema, 0);
        let user_only = |time: i64, dimensions: Vec<DimValue<'static>>| IngestRow {
            time,
            dimensions,
            discovered: None,
            metric_inputs: vec![None; 4],
        };
        rows.add(
            user_only(5_000, vec![DimValue::Text("mia".into())]),
            &schema,
        );
        schema
            .dimensions
            .push(("likes".into(), DimensionType::Long));
        rows.add(
            user_only(1_000, vec![DimValue::Text("gus".into()), DimValue::Long(4)]),
            &schema,
        );
        let batch = rows.batch(&schema, true).unwrap();
        let likes = batch
            .column(2)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!((likes.is_null(0), likes.value(1)), (true, 4));
    }
}

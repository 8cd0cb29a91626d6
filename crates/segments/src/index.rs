//! The in-memory index of one time chunk while a task ingests it: rows rolled up as they
//! come, the dimension list growing as schema discovery meets new columns, and the rows as a
//! sorted Arrow batch for queries (built when asked, kept until the next row arrives).

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;

use crate::columns::{SegmentSchema, sort_rows, to_batch};
use crate::rollup::{Accumulator, MetricKind, RolledRow};
use crate::spec::{DataSchema, DimensionType};
use crate::transform::{DimValue, IngestRow};

/// The rows of one time chunk `[start, end)`.
#[derive(Debug, Clone)]
pub struct ChunkIndex {
    start: i64,
    end: i64,
    schema: SegmentSchema,
    /// Where each dimension sits in `schema.dimensions` (used when discovering).
    positions: HashMap<String, usize>,
    rows: Accumulator,
    /// The sorted batch of the rows so far; None once a row has arrived since.
    snapshot: Option<RecordBatch>,
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
        let granularity = &data_schema.granularity_spec;
        ChunkIndex {
            start,
            end,
            positions: HashMap::new(),
            schema: SegmentSchema {
                dimensions,
                metrics,
            },
            rows: Accumulator::new(
                &data_schema.metrics_spec,
                granularity.query_granularity.clone(),
                granularity.rollup,
            ),
            snapshot: None,
        }
    }

    /// Adds a row (its time must fall in the chunk).
    pub fn add(&mut self, mut row: IngestRow) {
        if let Some(names) = row.discovered.take() {
            row.dimensions = self.place_discovered(names, row.dimensions);
        }
        self.rows.add(row);
        self.snapshot = None;
    }

    /// Puts discovered values at their dimension's position, adding new dimensions (typed by
    /// their first value) at the end.
    fn place_discovered(&mut self, names: Vec<String>, values: Vec<DimValue>) -> Vec<DimValue> {
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

    /// Stored (rolled-up) rows so far.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The columns of the rows so far.
    pub fn schema(&self) -> &SegmentSchema {
        &self.schema
    }

    /// The rows so far as one batch sorted by time then dimensions.
    pub fn batch(&mut self) -> Result<RecordBatch, ArrowError> {
        if let Some(batch) = &self.snapshot {
            return Ok(batch.clone());
        }
        let mut rows: Vec<RolledRow> = self.rows.rows().collect();
        sort_rows(&mut rows);
        let batch = to_batch(&self.schema, &rows)?;
        self.snapshot = Some(batch.clone());
        Ok(batch)
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

    fn discovered(time: i64, columns: &[(&str, DimValue)]) -> IngestRow {
        IngestRow {
            time,
            dimensions: columns.iter().map(|(_, v)| v.clone()).collect(),
            discovered: Some(columns.iter().map(|(n, _)| n.to_string()).collect()),
            metric_inputs: vec![Some(ExprValue::Null)],
        }
    }

    #[test]
    fn discovery_grows_the_dimensions_and_rolls_up_across_them() {
        let mut index = ChunkIndex::new(0, 3_600_000, &data_schema(json!([])));
        let mia = DimValue::String("mia".into());
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
        let batch = index.batch().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let likes = batch.column(2).as_primitive::<Int64Type>();
        assert!(likes.is_null(0), "nulls sort first");
        assert_eq!(likes.value(1), 3);
        let counts = batch.column(3).as_primitive::<Int64Type>();
        assert_eq!((counts.value(0), counts.value(1)), (2, 1));
    }

    #[test]
    fn the_snapshot_follows_new_rows() {
        let mut index = ChunkIndex::new(0, 3_600_000, &data_schema(json!(["user"])));
        let row = |time, user: &str| IngestRow {
            time,
            dimensions: vec![DimValue::String(user.into())],
            discovered: None,
            metric_inputs: vec![Some(ExprValue::Null)],
        };
        index.add(row(120_000, "b"));
        assert_eq!(index.batch().unwrap().num_rows(), 1);
        index.add(row(60_000, "a"));
        let batch = index.batch().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "a");
    }
}

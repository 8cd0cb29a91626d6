//! A datasource as a DataFusion table: its published segments read from their Parquet files
//! through the column cache and its realtime rows from memory, `__time` first, with segments and chunks outside the query's
//! `__time` bounds left unread, and so are segments whose partition range (or hash bucket)
//! cannot hold a row the filters match.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use millrace_segments::columns::conform;
use millrace_segments::time::{parse_interval, parse_iso};
use millrace_segments::transform::TIME_COLUMN;
use millrace_segments::view::{DatasourceView, RealtimeChunk};

use crate::column_cache::ColumnCache;
use crate::prune::constraints_of;
use crate::segment_scan::{ScanFile, SegmentScan};

/// A datasource's rows at the moment the query started.
#[derive(Debug)]
pub struct DatasourceTable {
    schema: SchemaRef,
    view: DatasourceView,
    cache: Arc<ColumnCache>,
}

impl DatasourceTable {
    /// The view's rows; segment columns are read through `cache`.
    pub fn new(view: DatasourceView, cache: Arc<ColumnCache>) -> DatasourceTable {
        DatasourceTable {
            schema: view.schema().arrow(),
            view,
            cache,
        }
    }

    /// Its published segments and the files running tasks persisted.
    pub(crate) fn files(&self) -> impl Iterator<Item = ScanFile> + '_ {
        let segments = self.view.segments.iter().cloned().map(ScanFile::Published);
        segments.chain(self.view.persisted.iter().cloned().map(ScanFile::Persisted))
    }

    /// The rows running tasks hold in memory.
    pub(crate) fn realtime(&self) -> &[RealtimeChunk] {
        &self.view.realtime
    }

    /// The cache its segment columns are read through.
    pub(crate) fn cache(&self) -> &Arc<ColumnCache> {
        &self.cache
    }
}

/// The `[start, end)` of `__time` a query can match (epoch milliseconds), from its filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    pub start: i64,
    pub end: i64,
}

impl TimeBounds {
    const ALL: TimeBounds = TimeBounds {
        start: i64::MIN,
        end: i64::MAX,
    };

    /// Whether `[start, end)` can hold rows within the bounds.
    pub(crate) fn overlaps(&self, start: i64, end: i64) -> bool {
        start < self.end && end > self.start
    }

    /// Narrows the bounds by every filter that bounds `__time` by a constant; other filters
    /// change nothing (DataFusion applies all filters to the rows anyway).
    pub fn from_filters(filters: &[Expr]) -> TimeBounds {
        TimeBounds::narrowed(filters).0
    }

    /// The bounds of filters that each hold for exactly the rows within the bounds they set
    /// (comparisons of `__time` itself with whole milliseconds); None when any filter holds
    /// for other rows too, or for fewer.
    pub(crate) fn exactly(filters: &[Expr]) -> Option<TimeBounds> {
        let (bounds, exact) = TimeBounds::narrowed(filters);
        exact.then_some(bounds)
    }

    /// The bounds of all the filters, and whether each holds for exactly the rows within.
    fn narrowed(filters: &[Expr]) -> (TimeBounds, bool) {
        let mut bounds = TimeBounds::ALL;
        let mut exact = true;
        // Every filter narrows the bounds, whether or not one before was exact.
        for filter in filters {
            exact &= bounds.narrow(filter);
        }
        (bounds, exact)
    }

    /// Whether a time lies within the bounds.
    pub(crate) fn contains(&self, millis: i64) -> bool {
        (self.start..self.end).contains(&millis)
    }

    /// Narrows the bounds by a filter; true when the filter holds for exactly the rows
    /// within the bounds it set.
    fn narrow(&mut self, filter: &Expr) -> bool {
        match filter {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if *op == Operator::And {
                    let left = self.narrow(left);
                    return self.narrow(right) && left;
                }
                let (time, op, value) = match (is_time(left), is_time(right)) {
                    (true, false) => (left, *op, right),
                    (false, true) => match op.swap() {
                        Some(op) => (right, op, left),
                        None => return false,
                    },
                    _ => return false,
                };
                let Some(v) = millis_of(value) else {
                    return false;
                };
                match op {
                    Operator::Gt => self.start = self.start.max(v.saturating_add(1)),
                    Operator::GtEq => self.start = self.start.max(v),
                    Operator::Lt => self.end = self.end.min(v),
                    Operator::LtEq => self.end = self.end.min(v.saturating_add(1)),
                    Operator::Eq => {
                        self.start = self.start.max(v);
                        self.end = self.end.min(v.saturating_add(1));
                    }
                    _ => return false,
                }
                is_exact(time, value)
            }
            Expr::Between(between) if !between.negated && is_time(&between.expr) => {
                let (Some(low), Some(high)) = (millis_of(&between.low), millis_of(&between.high))
                else {
                    return false;
                };
                self.start = self.start.max(low);
                self.end = self.end.min(high.saturating_add(1));
                is_exact(&between.expr, &between.low) && is_exact(&between.expr, &between.high)
            }
            Expr::ScalarFunction(call)
                if call.name() == "time_in_interval"
                    && call.args.len() == 2
                    && is_time(&call.args[0]) =>
            {
                if let Expr::Literal(ScalarValue::Utf8(Some(text)), _) = &call.args[1]
                    && let Some((start, end)) = parse_interval(text)
                {
                    self.start = self.start.max(start);
                    self.end = self.end.min(end);
                }
                false
            }
            _ => false,
        }
    }
}

/// Whether comparing `time` with `value` is comparing `__time` itself with a time in whole
/// milliseconds (no conversion of either side that could round).
fn is_exact(time: &Expr, value: &Expr) -> bool {
    let whole = match value {
        Expr::Literal(ScalarValue::TimestampSecond(Some(_), _), _)
        | Expr::Literal(ScalarValue::TimestampMillisecond(Some(_), _), _) => true,
        Expr::Literal(ScalarValue::TimestampMicrosecond(Some(v), _), _) => v % 1000 == 0,
        Expr::Literal(ScalarValue::TimestampNanosecond(Some(v), _), _) => v % 1_000_000 == 0,
        _ => false,
    };
    whole && matches!(time, Expr::Column(c) if c.name == TIME_COLUMN)
}

fn is_time(expr: &Expr) -> bool {
    match expr {
        Expr::Column(c) => c.name == TIME_COLUMN,
        Expr::Cast(c) => is_time(&c.expr),
        Expr::TryCast(c) => is_time(&c.expr),
        _ => false,
    }
}

/// A constant time as epoch milliseconds.
fn millis_of(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return match expr {
            Expr::Cast(c) => millis_of(&c.expr),
            _ => None,
        };
    };
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1000),
        ScalarValue::TimestampMillisecond(Some(v), _) => Some(*v),
        // Rounded outwards, so the bounds never leave out a row that matches.
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(v.div_euclid(1000)),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000_000)),
        ScalarValue::Utf8(Some(text)) | ScalarValue::LargeUtf8(Some(text)) => parse_iso(text),
        _ => None,
    }
}

#[async_trait]
impl TableProvider for DatasourceTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Every filter comes to `scan` to bound `__time`; DataFusion still applies them all.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        // DataFusion applies LIMIT above the scan, which reads file by file as asked for rows.
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let bounds = TimeBounds::from_filters(filters);
        let constraints = constraints_of(filters);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();

        // Published segments, and files running tasks persisted, within the bounds.
        let files: Vec<ScanFile> = self
            .files()
            .filter(|file| {
                let segment = file.segment();
                bounds.overlaps(segment.start, segment.end) && segment.keys.may_hold(&constraints)
            })
            .collect();
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        if !files.is_empty() {
            let scan = SegmentScan::new(
                files,
                projected.clone(),
                state.config().target_partitions(),
                self.cache.clone(),
            );
            inputs.push(DataSourceExec::from_data_source(scan));
        }

        let batches: Vec<RecordBatch> = self
            .view
            .realtime
            .iter()
            .filter(|chunk| bounds.overlaps(chunk.start, chunk.end))
            .map(|chunk| conform(&chunk.batch, &self.schema))
            .collect::<Result<_, _>>()?;
        if !batches.is_empty() {
            let partitions: Vec<Vec<RecordBatch>> = batches.into_iter().map(|b| vec![b]).collect();
            inputs.push(MemorySourceConfig::try_new_exec(
                &partitions,
                self.schema.clone(),
                projection.cloned(),
            )?);
        }

        if inputs.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;

    fn ts(text: &str) -> Expr {
        lit(ScalarValue::TimestampMillisecond(parse_iso(text), None))
    }

    #[test]
    fn time_filters_bound_the_scan() {
        let filters = vec![
            col("__time").gt_eq(ts("2025-01-01T01:00:00Z")),
            col("__time").lt(ts("2025-01-01T03:00:00Z")),
            col("username").eq(lit("mia")),
        ];
        let bounds = TimeBounds::from_filters(&filters);
        assert_eq!(bounds.start, parse_iso("2025-01-01T01:00:00Z").unwrap());
        assert_eq!(bounds.end, parse_iso("2025-01-01T03:00:00Z").unwrap());
        assert!(!bounds.overlaps(0, bounds.start));
        assert!(bounds.overlaps(bounds.start, bounds.start + 1));

        let flipped = TimeBounds::from_filters(&[ts("2025-01-01T02:00:00Z").lt(col("__time"))]);
        assert_eq!(
            flipped.start,
            parse_iso("2025-01-01T02:00:00Z").unwrap() + 1
        );
        assert_eq!(
            TimeBounds::from_filters(&[col("__time")
                .gt(ts("2025-01-01T02:00:00Z"))
                .or(col("x").eq(lit(1)))]),
            TimeBounds::ALL,
            "an OR leaves the bounds open"
        );
    }
}

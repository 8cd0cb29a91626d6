//! Row counts per time bucket without reading rows where the segments tell them: a query
//! grouping a datasource by `TIME_FLOOR(__time, period)` and asking only `COUNT(*)` (Druid's
//! most common question, a time series of rows) is answered from each file's row count when
//! its time chunk lies within one bucket (an hourly series over hourly segments reads nothing),
//! and otherwise by counting the file's times bucket by bucket, which needs no hashing of rows.
//!
//! [`BucketRowsRule`] rewrites such an aggregate into a sum of per-file counts read from a
//! [`BucketRowsTable`]. A filter bounding `__time` by constants is counted too (files within
//! the bounds whole, files across them by their times); any other shape of query (another
//! filter, another aggregate, another grouping) is left as it was.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMillisecondType};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::datasource::{TableType, provider_as_source, source_as_provider};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::functions_aggregate::count::Count;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, col};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use millrace_segments::spec::Granularity;
use millrace_segments::time::{Buckets, bucket, format_interval};
use millrace_segments::transform::TIME_COLUMN;
use millrace_segments::view::RealtimeChunk;

use crate::column_cache::ColumnCache;
use crate::functions::{floor_granularity, timestamp_type};
use crate::segment_scan::ScanFile;
use crate::table::{DatasourceTable, TimeBounds};

/// The name the rewritten plan reads the counts under (shown by EXPLAIN).
const TABLE: &str = "__bucket_rows";
const BUCKET: &str = "bucket";
const ROWS: &str = "rows";

/// Rewrites `COUNT(*) ... GROUP BY TIME_FLOOR(__time, ...)` over a datasource into a sum of
/// per-file bucket counts.
#[derive(Debug, Default)]
pub struct BucketRowsRule;

impl OptimizerRule for BucketRowsRule {
    fn name(&self) -> &str {
        "bucket_rows"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match counted_buckets(aggregate)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// The aggregate over bucket counts, when `aggregate` counts rows by `TIME_FLOOR(__time)` of a
/// datasource read whole.
fn counted_buckets(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    // The aggregate's shape first: it rules out most aggregates before anything is copied.
    let [group] = aggregate.group_expr.as_slice() else {
        return Ok(None);
    };
    let Some(granularity) = time_floor_granularity(group) else {
        return Ok(None);
    };
    if !aggregate.aggr_expr.iter().all(counts_rows) {
        return Ok(None);
    }
    // The scan under filters and aliases (`FROM posts p`), the filters gathered.
    let mut filters = Vec::new();
    let mut input = aggregate.input.as_ref();
    let scan = loop {
        match input {
            LogicalPlan::Filter(filter) => {
                filters.push(filter.predicate.clone());
                input = filter.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(alias) => input = alias.input.as_ref(),
            LogicalPlan::TableScan(scan) => break scan,
            _ => return Ok(None),
        }
    };
    if scan.fetch.is_some() {
        return Ok(None);
    }
    // Only filters that keep exactly the rows within time bounds can be counted by them.
    filters.extend(scan.filters.iter().cloned());
    let bounds = match filters.is_empty() {
        true => None,
        false => match TimeBounds::exactly(&filters) {
            Some(bounds) => Some(bounds),
            None => return Ok(None),
        },
    };
    let provider = source_as_provider(&scan.source)?;
    let Some(table) = provider.downcast_ref::<DatasourceTable>() else {
        return Ok(None);
    };
    let files = table.files().map(CountSource::File);
    let chunks = table.realtime().iter().cloned().map(CountSource::Chunk);
    let counts = BucketRowsTable {
        sources: files.chain(chunks).collect(),
        granularity,
        bounds,
        cache: table.cache().clone(),
    };
    let input =
        LogicalPlanBuilder::scan(TABLE, provider_as_source(Arc::new(counts)), None)?.build()?;
    // The same output names (and qualifiers) as before, so the plan above reads them.
    let named = |i: usize, expr: Expr| {
        let (qualifier, field) = aggregate.schema.qualified_field(i);
        expr.alias_qualified(qualifier.cloned(), field.name())
    };
    let group_expr = vec![named(0, col(BUCKET))];
    let aggr_expr = (0..aggregate.aggr_expr.len())
        .map(|i| named(1 + i, sum(col(ROWS))))
        .collect();
    let rewritten = Aggregate::try_new(Arc::new(input), group_expr, aggr_expr)?;
    Ok(Some(LogicalPlan::Aggregate(rewritten)))
}

/// The granularity of `TIME_FLOOR(__time, period[, origin[, zone]])` with constant arguments.
fn time_floor_granularity(expr: &Expr) -> Option<Granularity> {
    let Expr::ScalarFunction(call) = unaliased(expr) else {
        return None;
    };
    let (time, constants) = call.args.split_first()?;
    if !matches!(time, Expr::Column(c) if c.name == TIME_COLUMN) {
        return None;
    }
    let constants: Vec<ScalarValue> = constants
        .iter()
        .map(|arg| match arg {
            Expr::Literal(value, _) => Some(value.clone()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    floor_granularity(call.func.as_ref(), &constants)
}

/// An expression without its alias (looked at where it is, not copied).
fn unaliased(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => unaliased(&alias.expr),
        expr => expr,
    }
}

/// Whether an aggregate is `COUNT(*)` (or `COUNT` of any constant that is not null).
fn counts_rows(expr: &Expr) -> bool {
    let Expr::AggregateFunction(AggregateFunction { func, params }) = unaliased(expr) else {
        return false;
    };
    func.inner().is::<Count>()
        && !params.distinct
        && params.filter.is_none()
        && params.order_by.is_empty()
        && matches!(params.args.as_slice(), [Expr::Literal(value, _)] if !value.is_null())
}

/// A datasource's rows counted per `TIME_FLOOR` bucket: `bucket` (null for rows without a
/// time) and `rows`, one row per file and bucket it holds (the aggregate above sums them).
#[derive(Debug)]
pub struct BucketRowsTable {
    sources: Vec<CountSource>,
    granularity: Granularity,
    /// The rows counted, when a filter bounds them by time (None: all).
    bounds: Option<TimeBounds>,
    cache: Arc<ColumnCache>,
}

fn counts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(BUCKET, timestamp_type(), true),
        Field::new(ROWS, DataType::Int64, false),
    ]))
}

#[async_trait]
impl TableProvider for BucketRowsTable {
    fn schema(&self) -> SchemaRef {
        counts_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Each partition counts every n-th file and chunk.
        let sources = &self.sources;
        let partitions = state
            .config()
            .target_partitions()
            .clamp(1, sources.len().max(1));
        let streams: Vec<Arc<dyn PartitionStream>> = (0..partitions)
            .map(|p| {
                Arc::new(CountPartition {
                    sources: sources
                        .iter()
                        .skip(p)
                        .step_by(partitions)
                        .cloned()
                        .collect(),
                    granularity: self.granularity.clone(),
                    bounds: self.bounds,
                    cache: self.cache.clone(),
                    schema: counts_schema(),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        Ok(Arc::new(StreamingTableExec::try_new(
            counts_schema(),
            streams,
            projection,
            [],
            false,
            None,
        )?))
    }
}

/// Rows to count: a segment file (published or persisted) or a realtime chunk.
#[derive(Debug, Clone)]
enum CountSource {
    File(ScanFile),
    Chunk(RealtimeChunk),
}

impl CountSource {
    /// The time chunk its rows lie in (stored times are kept within their chunk: see
    /// `millrace_segments::time::stored_time`), and how many rows it holds.
    fn interval_and_rows(&self) -> (i64, i64, i64) {
        match self {
            CountSource::File(file) => {
                let segment = file.segment();
                let rows = i64::try_from(segment.num_rows).unwrap_or(i64::MAX);
                (segment.start, segment.end, rows)
            }
            CountSource::Chunk(chunk) => {
                let rows = i64::try_from(chunk.batch.num_rows()).unwrap_or(i64::MAX);
                (chunk.start, chunk.end, rows)
            }
        }
    }

    /// Its `__time` column.
    fn times(&self, cache: &ColumnCache) -> Result<ArrayRef> {
        let missing = |holder: String| {
            DataFusionError::Execution(format!("{holder} has no {TIME_COLUMN} column"))
        };
        match self {
            CountSource::File(file) => {
                let segment = file.segment();
                cache
                    .columns(segment, &[TIME_COLUMN])?
                    .pop()
                    .flatten()
                    .ok_or_else(|| missing(segment.path.display().to_string()))
            }
            CountSource::Chunk(chunk) => chunk
                .batch
                .column_by_name(TIME_COLUMN)
                .cloned()
                .ok_or_else(|| {
                    let interval = format_interval((chunk.start, chunk.end));
                    missing(format!("the rows in memory for {interval}"))
                }),
        }
    }
}

/// One partition's share of the sources, counted when executed.
struct CountPartition {
    sources: Vec<CountSource>,
    granularity: Granularity,
    bounds: Option<TimeBounds>,
    cache: Arc<ColumnCache>,
    schema: SchemaRef,
}

impl fmt::Debug for CountPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountPartition({} sources)", self.sources.len())
    }
}

impl PartitionStream for CountPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (sources, granularity) = (self.sources.clone(), self.granularity.clone());
        let (bounds, cache, schema) = (self.bounds, self.cache.clone(), self.schema.clone());
        let counted = futures::stream::once(async move {
            let mut counts = BTreeMap::new();
            for source in &sources {
                count_source(source, &granularity, bounds, &cache, &mut counts)?;
            }
            counts_batch(&schema, counts)
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), counted))
    }
}

/// Adds a source's rows (those within `bounds`, if given) to their buckets: all to one when
/// its time chunk lies within the bounds and within a bucket, otherwise counted from its times.
fn count_source(
    source: &CountSource,
    granularity: &Granularity,
    bounds: Option<TimeBounds>,
    cache: &ColumnCache,
    counts: &mut BTreeMap<Option<i64>, i64>,
) -> Result<()> {
    let (start, end, rows) = source.interval_and_rows();
    if rows == 0 || bounds.is_some_and(|b| !b.overlaps(start, end)) {
        return Ok(());
    }
    let (first, first_end) = bucket(start, granularity);
    let whole = bounds.is_none_or(|b| b.start <= start && end <= b.end);
    if whole && end.saturating_sub(1) < first_end {
        *counts.entry(Some(first)).or_default() += rows;
        return Ok(());
    }
    let times = cast(&source.times(cache)?, &timestamp_type())?;
    let times = times.as_primitive::<TimestampMillisecondType>();
    count_times(times, granularity, bounds, counts);
    Ok(())
}

/// Adds each time (within `bounds`, if given; else nulls too, to the null bucket) to its
/// bucket's count. A time mostly falls in the bucket of the time before it (a file's rows
/// come in time order), so times are counted in runs of one bucket, each added at its end.
fn count_times(
    times: &TimestampMillisecondArray,
    granularity: &Granularity,
    bounds: Option<TimeBounds>,
    counts: &mut BTreeMap<Option<i64>, i64>,
) {
    if bounds.is_none() && times.null_count() > 0 {
        *counts.entry(None).or_default() += times.null_count() as i64;
    }
    let within = |time: &i64| bounds.is_none_or(|b| b.contains(*time));
    let mut buckets = Buckets::new(granularity);
    // The current run: its bucket's start and how many times it holds.
    let mut run: Option<(i64, i64)> = None;
    for time in times.iter().flatten().filter(within) {
        let (start, _) = buckets.of(time);
        match &mut run {
            Some((bucket, rows)) if *bucket == start => *rows += 1,
            _ => {
                if let Some((bucket, rows)) = run.replace((start, 1)) {
                    *counts.entry(Some(bucket)).or_default() += rows;
                }
            }
        }
    }
    if let Some((bucket, rows)) = run {
        *counts.entry(Some(bucket)).or_default() += rows;
    }
}

fn counts_batch(schema: &SchemaRef, counts: BTreeMap<Option<i64>, i64>) -> Result<RecordBatch> {
    let (buckets, rows): (Vec<Option<i64>>, Vec<i64>) = counts.into_iter().unzip();
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(TimestampMillisecondArray::from(buckets).with_timezone("UTC")),
            Arc::new(Int64Array::from(rows)),
        ],
    )?)
}

//! The native query types, each planned as SQL and shaped as Druid answers it.

use std::collections::BTreeMap;

use millrace_segments::spec::Granularity;
use millrace_segments::time::{bucket, format_interval, parse_interval, parse_iso};
use serde_json::{Map, Value, json};

use super::NativeError;
use super::aggregate::{Aggregator, aggregators, apply_post, compare, having, post_aggregators};
use super::common::{
    Row, bucket_sql, context_flag, count_field, datasource, granularity, ident, intervals, invalid,
    literal, string, timestamp, where_clause,
};
use crate::values::object_rows;
use crate::{SqlEngine, SqlError};

/// The hidden columns every aggregating query adds: its bucket and how many rows it holds.
const BUCKET: &str = "__bucket";
const ROWS: &str = "__rows";

/// Answers a native query.
pub async fn run(engine: &SqlEngine, query: &Value) -> Result<Value, NativeError> {
    if query
        .get("virtualColumns")
        .and_then(Value::as_array)
        .is_some_and(|v| !v.is_empty())
    {
        return Err(invalid("virtualColumns are not supported"));
    }
    match string(query, "queryType")? {
        "timeseries" => timeseries(engine, query).await,
        "topN" => top_n(engine, query).await,
        "groupBy" => group_by(engine, query).await,
        "scan" => scan(engine, query).await,
        "timeBoundary" => time_boundary(engine, query).await,
        "segmentMetadata" => segment_metadata(engine, query).await,
        "dataSourceMetadata" => datasource_metadata(engine, query).await,
        other => Err(invalid(format!(
            "queryType '{other}' is not supported (timeseries, topN, groupBy, scan, timeBoundary, segmentMetadata, dataSourceMetadata)"
        ))),
    }
}

async fn sql_rows(engine: &SqlEngine, sql: &str) -> Result<Vec<Row>, NativeError> {
    let output = engine.query(sql, vec![]).await.map_err(|e| match e {
        SqlError::Invalid(message) => NativeError::Invalid(message),
        SqlError::Execution(message) => NativeError::Execution(message),
    })?;
    Ok(object_rows(&output))
}

/// The datasource's columns and their SQL types, in order; empty when there is no such
/// datasource (Druid answers queries on it with no rows).
async fn columns(
    engine: &SqlEngine,
    datasource: &str,
) -> Result<Vec<(String, String)>, NativeError> {
    let rows = sql_rows(
        engine,
        &format!(
            "SELECT COLUMN_NAME, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = 'druid' AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
            literal(datasource)
        ),
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let text = |name: &str| {
                row.get(name)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            (text("COLUMN_NAME"), text("DATA_TYPE"))
        })
        .collect())
}

/// The earliest and latest `__time` within the intervals, regardless of any filter: the
/// span Druid zero-fills and stamps `all` buckets with.
async fn data_bounds(
    engine: &SqlEngine,
    datasource: &str,
    intervals: &[(i64, i64)],
) -> Result<Option<(i64, i64)>, NativeError> {
    let rows = sql_rows(
        engine,
        &format!(
            "SELECT MIN({t}) AS lo, MAX({t}) AS hi FROM {} {}",
            ident(datasource),
            where_clause(intervals, None)?,
            t = ident("__time")
        ),
    )
    .await?;
    let time = |name: &str| rows.first()?.get(name)?.as_str().and_then(parse_iso);
    Ok(time("lo").zip(time("hi")))
}

/// The millis of a bucket column's ISO text.
fn bucket_of(row: &Row) -> i64 {
    row.get(BUCKET)
        .and_then(Value::as_str)
        .and_then(parse_iso)
        .unwrap_or(0)
}

/// What timeseries, topN and groupBy share: where they read, how they bucket and aggregate.
struct Aggregation {
    datasource: String,
    intervals: Vec<(i64, i64)>,
    granularity: Granularity,
    aggregators: Vec<Aggregator>,
    posts: Vec<(String, Value)>,
    /// The intervals and the filter as a WHERE clause.
    where_sql: String,
}

impl Aggregation {
    fn parse(query: &Value) -> Result<Aggregation, NativeError> {
        let intervals = intervals(query, true)?;
        Ok(Aggregation {
            datasource: datasource(query)?,
            granularity: granularity(query)?,
            aggregators: aggregators(query)?,
            posts: post_aggregators(query)?,
            where_sql: where_clause(&intervals, query.get("filter"))?,
            intervals,
        })
    }

    /// Whether the datasource exists (queries on one that does not have no rows).
    async fn exists(&self, engine: &SqlEngine) -> Result<bool, NativeError> {
        Ok(!columns(engine, &self.datasource).await?.is_empty())
    }

    /// `SELECT [bucket,] dimensions, aggregators, row count ... GROUP BY ...`.
    fn sql(&self, bucket: Option<&str>, dimensions: &[(String, String)]) -> String {
        let mut select = Vec::new();
        if let Some(bucket) = bucket {
            select.push(format!("{bucket} AS {}", ident(BUCKET)));
        }
        for (column, output) in dimensions {
            select.push(format!("{} AS {}", ident(column), ident(output)));
        }
        for aggregator in &self.aggregators {
            select.push(format!("{} AS {}", aggregator.sql, ident(&aggregator.name)));
        }
        select.push(format!("COUNT(*) AS {}", ident(ROWS)));
        let groups = usize::from(bucket.is_some()) + dimensions.len();
        let mut sql = format!(
            "SELECT {} FROM {} {}",
            select.join(", "),
            ident(&self.datasource),
            self.where_sql
        );
        if groups > 0 {
            let positions: Vec<String> = (1..=groups).map(|i| i.to_string()).collect();
            sql.push_str(&format!(" GROUP BY {}", positions.join(", ")));
        }
        sql
    }
}

/// A row's aggregated values as Druid writes them, with its post-aggregators.
fn finish(mut row: Row, aggregators: &[Aggregator], posts: &[(String, Value)]) -> Row {
    row.shift_remove(BUCKET);
    row.shift_remove(ROWS);
    for aggregator in aggregators.iter().filter(|a| a.estimate) {
        if let Some(value) = row.get_mut(&aggregator.name)
            && let Some(number) = value.as_f64()
        {
            *value = json!(number);
        }
    }
    apply_post(posts, &mut row);
    row
}

fn empty_row(aggregators: &[Aggregator]) -> Row {
    aggregators
        .iter()
        .map(|a| (a.name.clone(), a.empty_value()))
        .collect()
}

fn rows_in(row: &Row) -> i64 {
    row.get(ROWS).and_then(Value::as_i64).unwrap_or(0)
}

async fn timeseries(engine: &SqlEngine, query: &Value) -> Result<Value, NativeError> {
    let agg = Aggregation::parse(query)?;
    let skip_empty = context_flag(query, "skipEmptyBuckets");
    let first_start = agg.intervals.first().map_or(0, |i| i.0);
    if !agg.exists(engine).await? {
        return Ok(match (&agg.granularity, skip_empty) {
            (Granularity::All, false) => json!([{
                "timestamp": timestamp(first_start),
                "result": finish(empty_row(&agg.aggregators), &agg.aggregators, &agg.posts),
            }]),
            _ => json!([]),
        });
    }
    let bounds = data_bounds(engine, &agg.datasource, &agg.intervals).await?;
    let bucket_expr = bucket_sql(&agg.granularity);
    let rows = sql_rows(engine, &agg.sql(bucket_expr.as_deref(), &[])).await?;
    let mut buckets: BTreeMap<i64, Row> = BTreeMap::new();
    match agg.granularity {
        Granularity::All => {
            let row = rows.into_iter().next().unwrap_or_default();
            if !(skip_empty && rows_in(&row) == 0) {
                let start = bounds.map_or(first_start, |(lo, _)| lo.max(first_start));
                buckets.insert(start, row);
            }
        }
        _ => {
            for row in rows {
                buckets.insert(bucket_of(&row), row);
            }
            if !skip_empty
                && agg.granularity != Granularity::None
                && let Some((lo, hi)) = bounds
            {
                for (start, end) in &agg.intervals {
                    let (from, to) = (lo.max(*start), (hi + 1).min(*end));
                    let mut at = bucket(from, &agg.granularity).0;
                    while at < to {
                        buckets
                            .entry(at)
                            .or_insert_with(|| empty_row(&agg.aggregators));
                        at = bucket(at, &agg.granularity).1;
                    }
                }
            }
        }
    }
    let mut results: Vec<Value> = buckets
        .into_iter()
        .map(|(at, row)| {
            let row = if rows_in(&row) == 0 && row.contains_key(ROWS) {
                empty_row(&agg.aggregators)
            } else {
                row
            };
            json!({"timestamp": timestamp(at), "result": finish(row, &agg.aggregators, &agg.posts)})
        })
        .collect();
    if query
        .get("descending")
        .is_some_and(|d| d == true || d == "true")
    {
        results.reverse();
    }
    if let Some(limit) = count_field(query, "limit")? {
        results.truncate(limit);
    }
    if context_flag(query, "grandTotal") {
        let total = sql_rows(engine, &agg.sql(None, &[])).await?;
        let row = total.into_iter().next().unwrap_or_default();
        results
            .push(json!({"timestamp": null, "result": finish(row, &agg.aggregators, &agg.posts)}));
    }
    Ok(Value::Array(results))
}

/// A dimension spec's column and output name (plain names and `default` specs).
fn dimension(spec: &Value) -> Result<(String, String), NativeError> {
    match spec {
        Value::String(name) => Ok((name.clone(), name.clone())),
        Value::Object(_) => {
            let kind = spec
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("default");
            if kind != "default" {
                return Err(invalid(format!(
                    "dimension spec type '{kind}' is not supported (default)"
                )));
            }
            let column = string(spec, "dimension")?.to_string();
            let output = spec
                .get("outputName")
                .and_then(Value::as_str)
                .unwrap_or(&column)
                .to_string();
            Ok((column, output))
        }
        other => Err(invalid(format!(
            "dimension {other} is not a name or a dimension spec"
        ))),
    }
}

/// How topN orders a bucket's values.
enum MetricOrder {
    /// By a metric, largest first.
    Numeric(String),
    /// By the dimension value, smallest first; only values after `previous_stop`.
    Dimension {
        ordering: String,
        previous_stop: Option<Value>,
    },
    Inverted(Box<MetricOrder>),
}

impl MetricOrder {
    fn parse(spec: &Value) -> Result<MetricOrder, NativeError> {
        match spec {
            Value::String(metric) => Ok(MetricOrder::Numeric(metric.clone())),
            Value::Object(_) => match string(spec, "type")? {
                "numeric" => Ok(MetricOrder::Numeric(string(spec, "metric")?.to_string())),
                "inverted" => Ok(MetricOrder::Inverted(Box::new(MetricOrder::parse(
                    spec.get("metric")
                        .ok_or_else(|| invalid("inverted metric needs a 'metric'"))?,
                )?))),
                kind @ ("dimension" | "lexicographic" | "alphaNumeric") => {
                    Ok(MetricOrder::Dimension {
                        ordering: match kind {
                            "dimension" => spec
                                .get("ordering")
                                .and_then(|o| o.as_str().or_else(|| o.get("type")?.as_str()))
                                .unwrap_or("lexicographic")
                                .to_string(),
                            "alphaNumeric" => "alphanumeric".into(),
                            _ => "lexicographic".into(),
                        },
                        previous_stop: spec.get("previousStop").filter(|v| !v.is_null()).cloned(),
                    })
                }
                other => Err(invalid(format!(
                    "topN metric type '{other}' is not supported"
                ))),
            },
            _ => Err(invalid("topN needs a 'metric'")),
        }
    }

    fn compare(&self, a: &Row, b: &Row, dimension: &str) -> std::cmp::Ordering {
        let get = |row: &Row, name: &str| row.get(name).cloned().unwrap_or(Value::Null);
        match self {
            MetricOrder::Numeric(metric) => compare(&get(b, metric), &get(a, metric), "numeric"),
            MetricOrder::Dimension { ordering, .. } => {
                compare(&get(a, dimension), &get(b, dimension), ordering)
            }
            MetricOrder::Inverted(inner) => inner.compare(b, a, dimension),
        }
    }

    /// Whether a row comes after the previous page's last value.
    fn keeps(&self, row: &Row, dimension: &str) -> bool {
        match self {
            MetricOrder::Dimension {
                ordering,
                previous_stop: Some(stop),
            } => compare(row.get(dimension).unwrap_or(&Value::Null), stop, ordering).is_gt(),
            _ => true,
        }
    }
}

async fn top_n(engine: &SqlEngine, query: &Value) -> Result<Value, NativeError> {
    let agg = Aggregation::parse(query)?;
    let (column, output) = dimension(
        query
            .get("dimension")
            .ok_or_else(|| invalid("topN needs a 'dimension'"))?,
    )?;
    let threshold =
        count_field(query, "threshold")?.ok_or_else(|| invalid("topN needs a 'threshold'"))?;
    let order = MetricOrder::parse(query.get("metric").unwrap_or(&Value::Null))?;
    if !agg.exists(engine).await? {
        return Ok(json!([]));
    }
    let bucket_expr = bucket_sql(&agg.granularity);
    let sql = agg.sql(bucket_expr.as_deref(), &[(column, output.clone())]);
    let all_start = match agg.granularity {
        Granularity::All => {
            let first = agg.intervals.first().map_or(0, |i| i.0);
            data_bounds(engine, &agg.datasource, &agg.intervals)
                .await?
                .map_or(first, |(lo, _)| lo.max(first))
        }
        _ => 0,
    };
    let mut buckets: BTreeMap<i64, Vec<Row>> = BTreeMap::new();
    for row in sql_rows(engine, &sql).await? {
        let at = if bucket_expr.is_some() {
            bucket_of(&row)
        } else {
            all_start
        };
        buckets
            .entry(at)
            .or_default()
            .push(finish(row, &agg.aggregators, &agg.posts));
    }
    let results: Vec<Value> = buckets
        .into_iter()
        .map(|(at, mut rows)| {
            rows.retain(|row| order.keeps(row, &output));
            rows.sort_by(|a, b| order.compare(a, b, &output));
            rows.truncate(threshold);
            json!({"timestamp": timestamp(at), "result": rows})
        })
        .collect();
    Ok(Value::Array(results))
}

/// A limitSpec column: the output it orders by, descending or not, and the ordering.
fn order_by_column(spec: &Value) -> Result<(String, bool, String), NativeError> {
    match spec {
        Value::String(name) => Ok((name.clone(), false, "lexicographic".into())),
        Value::Object(_) => {
            let direction = spec
                .get("direction")
                .and_then(Value::as_str)
                .unwrap_or("ascending");
            let ordering = spec
                .get("dimensionOrder")
                .and_then(|o| o.as_str().or_else(|| o.get("type")?.as_str()))
                .unwrap_or("lexicographic");
            Ok((
                string(spec, "dimension")?.to_string(),
                direction.to_ascii_lowercase().starts_with("desc"),
                ordering.to_ascii_lowercase(),
            ))
        }
        other => Err(invalid(format!("limitSpec column {other}"))),
    }
}

async fn group_by(engine: &SqlEngine, query: &Value) -> Result<Value, NativeError> {
    let agg = Aggregation::parse(query)?;
    if query
        .get("subtotalsSpec")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(invalid("subtotalsSpec is not supported"));
    }
    let dimensions: Vec<(String, String)> = match query.get("dimensions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(specs)) => specs.iter().map(dimension).collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("'dimensions' must be a list")),
    };
    if !agg.exists(engine).await? {
        return Ok(json!([]));
    }
    let bucket_expr = bucket_sql(&agg.granularity);
    let sql = agg.sql(bucket_expr.as_deref(), &dimensions);
    let first_start = agg.intervals.first().map_or(0, |i| i.0);
    let mut rows: Vec<(i64, Row)> = Vec::new();
    for row in sql_rows(engine, &sql).await? {
        if rows_in(&row) == 0 {
            continue;
        }
        let at = if bucket_expr.is_some() {
            bucket_of(&row)
        } else {
            first_start
        };
        let row = finish(row, &agg.aggregators, &agg.posts);
        if let Some(spec) = query.get("having").filter(|h| !h.is_null())
            && !having(spec, &row)?
        {
            continue;
        }
        rows.push((at, row));
    }
    let limit_spec = query
        .get("limitSpec")
        .filter(|l| !l.is_null() && l.get("type").and_then(Value::as_str) != Some("NoopLimitSpec"));
    let order: Vec<(String, bool, String)> = match limit_spec
        .and_then(|l| l.get("columns"))
        .and_then(Value::as_array)
    {
        Some(columns) if !columns.is_empty() => columns
            .iter()
            .map(order_by_column)
            .collect::<Result<_, _>>()?,
        _ => dimensions
            .iter()
            .map(|(_, out)| (out.clone(), false, "lexicographic".to_string()))
            .collect(),
    };
    let dims_first = context_flag(query, "sortByDimsFirst");
    rows.sort_by(|(ta, a), (tb, b)| {
        let by_columns = || {
            order.iter().fold(
                std::cmp::Ordering::Equal,
                |acc, (name, descending, ordering)| {
                    acc.then_with(|| {
                        let (x, y) = (
                            a.get(name).unwrap_or(&Value::Null),
                            b.get(name).unwrap_or(&Value::Null),
                        );
                        let order = compare(x, y, ordering);
                        if *descending { order.reverse() } else { order }
                    })
                },
            )
        };
        if dims_first {
            by_columns().then(ta.cmp(tb))
        } else {
            ta.cmp(tb).then_with(by_columns)
        }
    });
    let offset = limit_spec
        .map(|l| count_field(l, "offset"))
        .transpose()?
        .flatten()
        .unwrap_or(0);
    let limit = limit_spec
        .map(|l| count_field(l, "limit"))
        .transpose()?
        .flatten()
        .unwrap_or(usize::MAX);
    let as_arrays = context_flag(query, "resultAsArray");
    let results = rows.into_iter().skip(offset).take(limit).map(|(at, row)| {
        if as_arrays {
            let mut values: Vec<Value> = Vec::new();
            if agg.granularity != Granularity::All {
                values.push(json!(at));
            }
            values.extend(row.into_iter().map(|(_, v)| v));
            Value::Array(values)
        } else {
            json!({"version": "v1", "timestamp": timestamp(at), "event": row})
        }
    });
    Ok(Value::Array(results.collect()))
}

async fn scan(engine: &SqlEngine, query: &Value) -> Result<Value, NativeError> {
    let datasource = datasource(query)?;
    let intervals = intervals(query, true)?;
    let known = columns(engine, &datasource).await?;
    if known.is_empty() {
        return Ok(json!([]));
    }
    let wanted: Vec<String> = match query.get("columns").and_then(Value::as_array) {
        Some(columns) if !columns.is_empty() => columns
            .iter()
            .filter_map(|c| c.as_str().map(String::from))
            .collect(),
        _ => known.iter().map(|(name, _)| name.clone()).collect(),
    };
    let order = query
        .get("order")
        .and_then(Value::as_str)
        .unwrap_or("none")
        .to_ascii_lowercase();
    if order != "none" && !wanted.iter().any(|c| c == "__time") {
        return Err(invalid(
            "The __time column must be selected if the results are time-ordered.",
        ));
    }
    let select: Vec<String> = wanted
        .iter()
        .map(|name| match name.as_str() {
            "__time" => format!("TIMESTAMP_TO_MILLIS({t}) AS {t}", t = ident("__time")),
            _ if known.iter().any(|(k, _)| k == name) => ident(name),
            _ => format!("NULL AS {}", ident(name)),
        })
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {} {}",
        select.join(", "),
        ident(&datasource),
        where_clause(&intervals, query.get("filter"))?
    );
    match order.as_str() {
        "ascending" => sql.push_str(&format!(" ORDER BY {} ASC", ident("__time"))),
        "descending" => sql.push_str(&format!(" ORDER BY {} DESC", ident("__time"))),
        _ => {}
    }
    if let Some(limit) = count_field(query, "limit")?.filter(|l| *l > 0) {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    if let Some(offset) = count_field(query, "offset")?.filter(|o| *o > 0) {
        sql.push_str(&format!(" OFFSET {offset}"));
    }
    let rows = sql_rows(engine, &sql).await?;
    let compacted = query.get("resultFormat").and_then(Value::as_str) == Some("compactedList");
    let batch = count_field(query, "batchSize")?.unwrap_or(20_480).max(1);
    let results: Vec<Value> = rows
        .chunks(batch)
        .map(|chunk| {
            let events: Vec<Value> = chunk
                .iter()
                .map(|row| match compacted {
                    true => Value::Array(row.values().cloned().collect()),
                    false => Value::Object(row.clone()),
                })
                .collect();
            json!({"segmentId": null, "columns": wanted, "events": events})
        })
        .collect();
    Ok(Value::Array(results))
}

async fn time_boundary(engine: &SqlEngine, query: &Value) -> Result<Value, NativeError> {
    let datasource = datasource(query)?;
    let intervals = intervals(query, false)?;
    if columns(engine, &datasource).await?.is_empty() {
        return Ok(json!([]));
    }
    let sql = format!(
        "SELECT MIN({t}) AS lo, MAX({t}) AS hi FROM {} {}",
        ident(&datasource),
        where_clause(&intervals, query.get("filter"))?,
        t = ident("__time")
    );
    let rows = sql_rows(engine, &sql).await?;
    let (Some(lo), Some(hi)) = (
        rows.first()
            .and_then(|r| r.get("lo"))
            .filter(|v| !v.is_null())
            .cloned(),
        rows.first()
            .and_then(|r| r.get("hi"))
            .filter(|v| !v.is_null())
            .cloned(),
    ) else {
        return Ok(json!([]));
    };
    let bound = query
        .get("bound")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    Ok(match bound.as_deref() {
        Some("maxtime") => json!([{"timestamp": hi, "result": {"maxTime": hi}}]),
        Some("mintime") => json!([{"timestamp": lo, "result": {"minTime": lo}}]),
        _ => json!([{"timestamp": lo, "result": {"minTime": lo, "maxTime": hi}}]),
    })
}

async fn datasource_metadata(engine: &SqlEngine, query: &Value) -> Result<Value, NativeError> {
    let datasource = datasource(query)?;
    if columns(engine, &datasource).await?.is_empty() {
        return Ok(json!([]));
    }
    let rows = sql_rows(
        engine,
        &format!(
            "SELECT MAX({}) AS hi FROM {}",
            ident("__time"),
            ident(&datasource)
        ),
    )
    .await?;
    Ok(
        match rows
            .first()
            .and_then(|r| r.get("hi"))
            .filter(|v| !v.is_null())
        {
            Some(latest) => {
                json!([{"timestamp": latest, "result": {"maxIngestedEventTime": latest}}])
            }
            None => json!([]),
        },
    )
}

/// Druid's native type of a SQL type.
fn native_type(sql_type: &str) -> &'static str {
    match sql_type {
        "TIMESTAMP" | "BIGINT" | "BOOLEAN" => "LONG",
        "DOUBLE" => "DOUBLE",
        "FLOAT" => "FLOAT",
        "VARCHAR" => "STRING",
        _ => "COMPLEX<json>",
    }
}

/// One column's analysis over the rows of some intervals.
async fn analyse_columns(
    engine: &SqlEngine,
    datasource: &str,
    columns: &[(String, String)],
    intervals: &[(i64, i64)],
    analyses: &[String],
) -> Result<Map<String, Value>, NativeError> {
    if columns.is_empty() {
        return Ok(Map::new());
    }
    let wants = |name: &str| analyses.iter().any(|a| a == name);
    let mut select = Vec::new();
    for (i, (name, sql_type)) in columns.iter().enumerate() {
        let column = ident(name);
        select.push(format!("COUNT(*) - COUNT({column}) AS n{i}"));
        if sql_type == "VARCHAR" {
            select.push(format!(
                "COUNT(DISTINCT {column}) AS c{i}, MIN({column}) AS lo{i}, MAX({column}) AS hi{i}"
            ));
        }
    }
    let sql = format!(
        "SELECT {} FROM {} {}",
        select.join(", "),
        ident(datasource),
        where_clause(intervals, None)?
    );
    let stats = sql_rows(engine, &sql)
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut result = Map::new();
    for (i, (name, sql_type)) in columns.iter().enumerate() {
        let kind = native_type(sql_type);
        let string_stat = |prefix: &str, wanted: bool| -> Value {
            if wanted && kind == "STRING" {
                stats
                    .get(&format!("{prefix}{i}"))
                    .cloned()
                    .unwrap_or(Value::Null)
            } else {
                Value::Null
            }
        };
        result.insert(
            name.clone(),
            json!({
                "typeSignature": kind,
                "type": kind,
                "hasMultipleValues": false,
                "hasNulls": stats.get(&format!("n{i}")).and_then(Value::as_i64).unwrap_or(0) > 0,
                "size": 0,
                "cardinality": string_stat("c", wants("cardinality")),
                "minValue": string_stat("lo", wants("minmax")),
                "maxValue": string_stat("hi", wants("minmax")),
                "errorMessage": null,
            }),
        );
    }
    Ok(result)
}

async fn segment_metadata(engine: &SqlEngine, query: &Value) -> Result<Value, NativeError> {
    let datasource = datasource(query)?;
    let intervals = intervals(query, false)?;
    let mut columns = columns(engine, &datasource).await?;
    if columns.is_empty() {
        return Ok(json!([]));
    }
    match query
        .get("toInclude")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("all") => {}
        Some("none") => columns.clear(),
        Some("list") => {
            let listed: Vec<&str> = query["toInclude"]["columns"]
                .as_array()
                .map(|c| c.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            columns.retain(|(name, _)| listed.contains(&name.as_str()));
        }
        Some(other) => {
            return Err(invalid(format!(
                "toInclude type '{other}' is not supported"
            )));
        }
    }
    let analyses: Vec<String> = match query.get("analysisTypes").and_then(Value::as_array) {
        Some(types) => types
            .iter()
            .filter_map(|t| t.as_str().map(str::to_ascii_lowercase))
            .collect(),
        None => vec!["cardinality".into(), "interval".into(), "minmax".into()],
    };
    let segments = sql_rows(
        engine,
        &format!(
            "SELECT segment_id, \"start\", \"end\", num_rows, size FROM sys.segments WHERE datasource = {} AND is_active = 1 ORDER BY \"start\", partition_num",
            literal(&datasource)
        ),
    )
    .await?;
    let mut selected = Vec::new();
    for segment in segments {
        let text = |name: &str| {
            segment
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let Some(span) = parse_interval(&format!("{}/{}", text("start"), text("end"))) else {
            continue;
        };
        if intervals.is_empty() || intervals.iter().any(|(s, e)| span.0 < *e && span.1 > *s) {
            let number = |name: &str| segment.get(name).and_then(Value::as_i64).unwrap_or(0);
            selected.push((text("segment_id"), span, number("num_rows"), number("size")));
        }
    }
    let wants_size = analyses.iter().any(|a| a == "size");
    let wants_interval = analyses.iter().any(|a| a == "interval");
    let describe = |id: String,
                    spans: Vec<(i64, i64)>,
                    rows: i64,
                    size: i64,
                    columns: Map<String, Value>| {
        json!({
            "id": id,
            "intervals": if wants_interval { json!(spans.iter().map(|s| format_interval(*s)).collect::<Vec<_>>()) } else { Value::Null },
            "columns": columns,
            "size": if wants_size { size } else { 0 },
            "numRows": rows,
            "aggregators": null,
            "timestampSpec": null,
            "queryGranularity": null,
            "rollup": null,
        })
    };
    if query.get("merge").and_then(Value::as_bool) == Some(true) {
        if selected.is_empty() {
            return Ok(json!([]));
        }
        let mut spans: Vec<(i64, i64)> = selected.iter().map(|s| s.1).collect();
        spans.sort_unstable();
        spans.dedup();
        let analysed = analyse_columns(engine, &datasource, &columns, &spans, &analyses).await?;
        let rows = selected.iter().map(|s| s.2).sum();
        let size = selected.iter().map(|s| s.3).sum();
        return Ok(json!([describe(
            "merged".into(),
            condense(spans),
            rows,
            size,
            analysed
        )]));
    }
    let mut results = Vec::new();
    let mut by_span: BTreeMap<(i64, i64), Map<String, Value>> = BTreeMap::new();
    for (id, span, rows, size) in selected {
        let analysed = match by_span.entry(span) {
            std::collections::btree_map::Entry::Occupied(known) => known.get().clone(),
            std::collections::btree_map::Entry::Vacant(new) => new
                .insert(analyse_columns(engine, &datasource, &columns, &[span], &analyses).await?)
                .clone(),
        };
        results.push(describe(id, vec![span], rows, size, analysed));
    }
    Ok(Value::Array(results))
}

/// Sorted intervals with touching and overlapping ones joined.
fn condense(spans: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    let mut joined: Vec<(i64, i64)> = Vec::new();
    for (start, end) in spans {
        match joined.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => joined.push((start, end)),
        }
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_intervals_condense() {
        assert_eq!(
            condense(vec![(0, 10), (10, 20), (30, 40)]),
            vec![(0, 20), (30, 40)]
        );
    }
}

//! Compaction: the visible segments of an interval read back, their rows reshaped (columns,
//! filter, query granularity, rollup) and split anew (`dynamic`, `hashed`, `single_dim`,
//! `range`), written as segments of a newer version that overshadow them, all published in
//! one catalog transaction.
//!
//! A compaction holds the interval's lock (see [`crate::locks`]) but never blocks streaming:
//! segments appended to its time chunks while it ran are carried over into the new version
//! when it publishes, so no row is lost and none is seen twice.

pub mod auto;
pub mod spec;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use millrace_catalog::{ReplaceOutcome, Replacement, SegmentRecord, ShardSpec};
use millrace_segments::columns::{SegmentSchema, read_parquet, write_parquet};
use millrace_segments::compaction::{MetricPlan, RowShape, segment_rows};
use millrace_segments::filter::RowFilter;
use millrace_segments::partition::{PartitionsSpec, Piece, split};
use millrace_segments::rollup::MetricKind;
use millrace_segments::shard::ShardKeys;
use millrace_segments::spec::{Aggregator, DimensionType, Granularity};
use millrace_segments::time::{bucket, format_interval, format_iso, parse_iso};
use millrace_segments::timeline::{SegmentPlace, visibility};
use serde::Serialize;
use serde_json::{Value, json};

use crate::locks::IntervalLock;
use crate::publish::{self, record};
use crate::visible::{segment_file, segment_place};
use crate::{Context, now_millis};
use spec::{CompactionSpec, InputSpec};

/// What a compaction did, as its task report shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactionReport {
    pub segments_read: usize,
    pub segments_published: usize,
    /// Segments appended to the compacted chunks while it ran, carried over.
    pub segments_carried_over: usize,
    pub rows_read: u64,
    pub rows_written: u64,
    pub bytes_written: u64,
    /// What the split could not do as asked (a key value too big for one segment).
    pub warnings: Vec<String>,
    /// Milliseconds reading, reshaping and splitting, writing, and publishing.
    pub read_millis: u64,
    pub shape_millis: u64,
    pub write_millis: u64,
    pub publish_millis: u64,
}

/// A time chunk of the output and the input segments whose rows fall in it.
struct OutputChunk {
    interval: (i64, i64),
    inputs: Vec<usize>,
}

/// Files written so far; removed unless the compaction publishes.
struct Written(Vec<PathBuf>);

impl Drop for Written {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A compaction whose segments are written and not yet published: it holds its interval's
/// lock, and its files go when it is dropped unpublished.
pub struct Prepared {
    datasource: String,
    version: String,
    chunks: Vec<OutputChunk>,
    inputs: Vec<SegmentRecord>,
    /// Ids of the datasource's used segments when the inputs were chosen: any other found
    /// at publish time was appended meanwhile.
    used_before: BTreeSet<String>,
    records: Vec<SegmentRecord>,
    written: Written,
    report: CompactionReport,
    _lock: IntervalLock,
}

/// Runs a compaction to its end; an error says why nothing was published.
pub fn run(
    context: &Context,
    task_id: &str,
    spec: &CompactionSpec,
    cancel: &AtomicBool,
) -> Result<CompactionReport, String> {
    let prepared = prepare(context, task_id, spec, cancel)?;
    if cancel.load(Ordering::SeqCst) {
        return Err("the task was shut down; nothing was published".into());
    }
    prepared.publish(context)
}

/// Reads the inputs and writes the compacted segments, unpublished.
pub fn prepare(
    context: &Context,
    task_id: &str,
    spec: &CompactionSpec,
    cancel: &AtomicBool,
) -> Result<Prepared, String> {
    let datasource = &spec.datasource;
    let fail = |e: &dyn std::fmt::Display| e.to_string();
    let used = context
        .catalog
        .segments(datasource, true)
        .map_err(|e| fail(&e))?;
    let places: Vec<SegmentPlace> = used.iter().map(segment_place).collect();
    let visible: Vec<usize> = visibility(&places).visible;
    let (interval, inputs) = choose_inputs(spec, &used, &visible)?;
    let lock = context.locks.try_lock(task_id, datasource, interval)?;
    let chunks = output_chunks(spec, interval, &used, &inputs, &visible)?;
    let shape = row_shape(context, spec, &used, &inputs)?;
    let version = next_version(inputs.iter().map(|&i| used[i].version.as_str()));
    let state = compaction_state(spec, &shape);

    let mut report = CompactionReport {
        segments_read: inputs.len(),
        ..CompactionReport::default()
    };
    let directory = context.data_dir.join("segments").join(datasource);
    std::fs::create_dir_all(&directory)
        .map_err(|e| format!("creating {}: {e}", directory.display()))?;
    let mut written = Written(Vec::new());
    let mut records = Vec::new();
    for chunk in &chunks {
        if cancel.load(Ordering::SeqCst) {
            return Err("the task was shut down; nothing was published".into());
        }
        let started = Instant::now();
        let mut batches = Vec::new();
        for &i in &chunk.inputs {
            let file = segment_file(&context.data_dir, &used[i])
                .ok_or_else(|| format!("segment '{}': its columns are unreadable", used[i].id))?;
            let read = read_parquet(&file.path)
                .map_err(|e| format!("reading segment '{}': {e}", used[i].id))?;
            batches.extend(read);
        }
        report.read_millis += started.elapsed().as_millis() as u64;
        let started = Instant::now();
        let batches = within(&batches, chunk.interval).map_err(|e| fail(&e))?;
        let (rows, read) = shape
            .rows(&batches, chunk.interval.0)
            .map_err(|e| fail(&e))?;
        report.rows_read += read as u64;
        let dimension_names: Vec<String> =
            shape.dimensions.iter().map(|(n, _)| n.clone()).collect();
        let pieces = split(&rows, &spec.partitions, &dimension_names)?;
        report.warnings.extend(pieces.warnings);
        let pieces: Vec<Piece> = pieces
            .pieces
            .into_iter()
            .filter(|p| !p.rows.is_empty())
            .collect();
        report.shape_millis += started.elapsed().as_millis() as u64;
        let started = Instant::now();
        let count = pieces.len() as u32;
        let places: Vec<SegmentPlace> = (0..count)
            .map(|number| SegmentPlace {
                datasource: datasource.clone(),
                start: chunk.interval.0,
                end: chunk.interval.1,
                version: version.clone(),
                partition_num: number,
                core_partitions: count,
            })
            .collect();
        let files = write_pieces(&directory, &rows, &pieces, &places);
        // Every file written is removed unless published, also when another failed.
        written
            .0
            .extend(files.iter().flatten().map(|(path, _, _)| path.clone()));
        for (number, file) in files.into_iter().enumerate() {
            let (path, size, num_rows) = file?;
            report.rows_written += num_rows;
            report.bytes_written += size;
            let file_name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            records.push(
                record(
                    &places[number],
                    &format!("segments/{datasource}/{file_name}"),
                    size,
                    num_rows,
                    &shape.schema(),
                    shard_spec(&pieces[number].keys, number as u32, count, &spec.partitions),
                    Some(state.clone()),
                )
                .map_err(|e| fail(&e))?,
            );
        }
        report.write_millis += started.elapsed().as_millis() as u64;
    }
    report.segments_published = records.len();
    Ok(Prepared {
        datasource: datasource.clone(),
        version,
        chunks,
        inputs: inputs.iter().map(|&i| used[i].clone()).collect(),
        used_before: used.iter().map(|s| s.id.clone()).collect(),
        records,
        written,
        report,
        _lock: lock,
    })
}

impl Prepared {
    /// Publishes the compacted segments in place of the inputs, carrying over segments
    /// appended to the chunks meanwhile; returns the report.
    pub fn publish(mut self, context: &Context) -> Result<CompactionReport, String> {
        let started = Instant::now();
        self.report.segments_carried_over = self.commit(context)?;
        // Published: the files are the catalog's now.
        self.written.0.clear();
        self.report.publish_millis = started.elapsed().as_millis() as u64;
        Ok(std::mem::take(&mut self.report))
    }
}

/// A segment file written: its path, bytes and rows; or why it was not.
type WrittenFile = Result<(PathBuf, u64, u64), String>;

/// Writes each piece of a chunk's rows as the segment file of its place, on as many threads
/// as there are cores.
fn write_pieces(
    directory: &std::path::Path,
    rows: &arrow::array::RecordBatch,
    pieces: &[Piece],
    places: &[SegmentPlace],
) -> Vec<WrittenFile> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<WrittenFile>>> =
        std::sync::Mutex::new(vec![None; pieces.len()]);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(pieces.len());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= pieces.len() {
                        break;
                    }
                    let path = directory.join(format!("{}.parquet", places[i].id()));
                    let result = segment_rows(rows, &pieces[i].rows)
                        .map_err(|e| e.to_string())
                        .and_then(|batch| {
                            let size = write_parquet(&path, &batch).map_err(|e| e.to_string())?;
                            Ok((path, size, batch.num_rows() as u64))
                        });
                    results.lock().expect("written files")[i] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("written files")
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("a segment was not written".into())))
        .collect()
}

/// The interval compacted and the visible segments it compacts (indexes into `used`).
fn choose_inputs(
    spec: &CompactionSpec,
    used: &[SegmentRecord],
    visible: &[usize],
) -> Result<((i64, i64), Vec<usize>), String> {
    let overlapping = |(start, end): (i64, i64)| -> Vec<usize> {
        visible
            .iter()
            .copied()
            .filter(|&i| used[i].start < end && used[i].end > start)
            .collect()
    };
    let (interval, inputs) = match &spec.input {
        InputSpec::Interval((start, end)) => {
            let inputs = overlapping((*start, *end));
            if let Some(&outside) = inputs
                .iter()
                .find(|&&i| used[i].start < *start || used[i].end > *end)
            {
                return Err(format!(
                    "segment '{}' ({}) reaches beyond the interval to compact {}; give an interval of whole time chunks",
                    used[outside].id,
                    format_interval((used[outside].start, used[outside].end)),
                    format_interval((*start, *end))
                ));
            }
            ((*start, *end), inputs)
        }
        InputSpec::Segments(ids) => {
            let mut chosen = Vec::new();
            for id in ids {
                let found = visible.iter().copied().find(|&i| used[i].id == *id);
                chosen.push(found.ok_or_else(|| {
                    format!(
                        "segment '{id}' is not a visible segment of '{}'",
                        spec.datasource
                    )
                })?);
            }
            let start = chosen.iter().map(|&i| used[i].start).min().unwrap_or(0);
            let end = chosen.iter().map(|&i| used[i].end).max().unwrap_or(0);
            let all = overlapping((start, end));
            let missing: Vec<&str> = all
                .iter()
                .filter(|i| !chosen.contains(i))
                .map(|&i| used[i].id.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "the segments given are not all the visible segments of {}: also {}",
                    format_interval((start, end)),
                    missing.join(", ")
                ));
            }
            ((start, end), all)
        }
    };
    if inputs.is_empty() {
        return Err(format!(
            "no segments to compact in {} of '{}'; check the dataSource and the interval",
            format_interval(interval),
            spec.datasource
        ));
    }
    Ok((interval, inputs))
}

/// The time chunks the output has, each with the inputs holding its rows: the buckets of
/// the new segmentGranularity, or the inputs' own chunks.
fn output_chunks(
    spec: &CompactionSpec,
    interval: (i64, i64),
    used: &[SegmentRecord],
    inputs: &[usize],
    visible: &[usize],
) -> Result<Vec<OutputChunk>, String> {
    let mut intervals: BTreeSet<(i64, i64)> = BTreeSet::new();
    match &spec.segment_granularity {
        None => {
            for &i in inputs {
                intervals.insert((used[i].start, used[i].end));
            }
            let list: Vec<&(i64, i64)> = intervals.iter().collect();
            if let Some(pair) = list.windows(2).find(|w| w[0].1 > w[1].0) {
                return Err(format!(
                    "the input segments' time chunks {} and {} overlap; give granularitySpec.segmentGranularity",
                    format_interval(*pair[0]),
                    format_interval(*pair[1])
                ));
            }
        }
        Some((granularity, text)) => {
            let widened = (
                bucket(interval.0, granularity).0,
                bucket(interval.1 - 1, granularity).1,
            );
            if widened != interval && !spec.allow_non_aligned_interval {
                return Err(format!(
                    "Interval[{}] to compact is not aligned with segmentGranularity[{text}]",
                    format_interval(interval)
                ));
            }
            for &i in inputs {
                let mut at = used[i].start;
                while at < used[i].end {
                    let chunk = bucket(at, granularity);
                    intervals.insert(chunk);
                    at = chunk.1;
                }
            }
            // A wider chunk would overshadow segments that are not compacted.
            for chunk in &intervals {
                if let Some(&other) = visible.iter().find(|i| {
                    !inputs.contains(i) && used[**i].start < chunk.1 && used[**i].end > chunk.0
                }) {
                    return Err(format!(
                        "the time chunk {} of segmentGranularity {text} also holds segment '{}', which is not compacted",
                        format_interval(*chunk),
                        used[other].id
                    ));
                }
            }
        }
    }
    Ok(intervals
        .into_iter()
        .map(|interval| OutputChunk {
            interval,
            inputs: inputs
                .iter()
                .copied()
                .filter(|&i| used[i].start < interval.1 && used[i].end > interval.0)
                .collect(),
        })
        .collect())
}

/// The rows of batches whose time is within `[start, end)` (all of them when the chunk
/// covers the batches' segments).
fn within(
    batches: &[arrow::array::RecordBatch],
    (start, end): (i64, i64),
) -> Result<Vec<arrow::array::RecordBatch>, arrow::error::ArrowError> {
    use arrow::array::AsArray;
    use arrow::datatypes::TimestampMillisecondType;
    batches
        .iter()
        .map(|batch| {
            let times = batch.column(0).as_primitive::<TimestampMillisecondType>();
            if times.values().iter().all(|&t| t >= start && t < end) {
                return Ok(batch.clone());
            }
            let keep: arrow::array::BooleanArray = times
                .values()
                .iter()
                .map(|&t| Some(t >= start && t < end))
                .collect();
            arrow::compute::filter_record_batch(batch, &keep)
        })
        .collect()
}

/// The query granularity and rollup the input rows were stored with: the datasource's
/// supervisor spec's, else the last compaction's, else none and no rollup.
fn stored_granularity(
    context: &Context,
    spec: &CompactionSpec,
    used: &[SegmentRecord],
    inputs: &[usize],
) -> (Granularity, bool) {
    let supervisor = context.catalog.supervisors().ok().and_then(|all| {
        all.into_iter()
            .find(|s| s.id == spec.datasource)
            .and_then(|s| serde_json::to_vec(&s.spec).ok())
            .and_then(|body| crate::check_spec(&body).ok())
    });
    if let Some(supervisor) = supervisor {
        let granularity = &supervisor.spec.data_schema.granularity_spec;
        return (granularity.query_granularity.clone(), granularity.rollup);
    }
    let state = inputs
        .iter()
        .find_map(|&i| used[i].descriptor.last_compaction_state.as_ref());
    let from_state = |name: &str| {
        state
            .and_then(|s| s.pointer(&format!("/granularitySpec/{name}")))
            .filter(|v| !v.is_null())
            .cloned()
    };
    let granularity = from_state("queryGranularity")
        .and_then(|g| serde_json::from_value(g).ok())
        .unwrap_or(Granularity::None);
    let rollup = from_state("rollup")
        .and_then(|r| r.as_bool())
        .unwrap_or(false);
    (granularity, rollup)
}

/// What the output rows are: the spec's columns, filter and granularity, or the inputs'.
fn row_shape(
    context: &Context,
    spec: &CompactionSpec,
    used: &[SegmentRecord],
    inputs: &[usize],
) -> Result<RowShape, String> {
    let schemas: Vec<SegmentSchema> = inputs
        .iter()
        .map(|&i| {
            serde_json::from_value(used[i].descriptor.columns.clone())
                .map_err(|e| format!("segment '{}': its columns: {e}", used[i].id))
        })
        .collect::<Result<_, _>>()?;
    let stored = SegmentSchema::merge(&schemas);
    let dimensions: Vec<(String, DimensionType)> = match &spec.dimensions {
        Some(given) if !given.dimensions.is_empty() => given
            .dimensions
            .iter()
            .map(|d| (d.name.clone(), d.kind))
            .collect(),
        given => stored
            .dimensions
            .iter()
            .filter(|(name, _)| {
                given
                    .as_ref()
                    .is_none_or(|g| !g.dimension_exclusions.contains(name))
            })
            .cloned()
            .collect(),
    };
    for (i, (name, kind)) in dimensions.iter().enumerate() {
        if matches!(kind, DimensionType::Json | DimensionType::Auto) {
            return Err(format!(
                "dimensionsSpec.dimensions[{i}]: '{name}' of type json or auto is not supported in compaction"
            ));
        }
    }
    let metrics = match &spec.metrics {
        Some(given) => given
            .iter()
            .enumerate()
            .map(|(i, aggregator)| metric_plan(aggregator, i))
            .collect::<Result<Vec<_>, _>>()?,
        None => stored
            .metrics
            .iter()
            .map(|(name, kind)| MetricPlan::combining(name, *kind))
            .collect(),
    };
    for name in spec.partitions.dimensions() {
        match dimensions.iter().find(|(n, _)| n == name) {
            Some((_, DimensionType::String)) => {}
            Some(_) => {
                return Err(format!(
                    "tuningConfig.partitionsSpec: partition dimension '{name}' must be a string dimension"
                ));
            }
            None => {
                return Err(format!(
                    "tuningConfig.partitionsSpec: partition dimension '{name}' is not a dimension of '{}'",
                    spec.datasource
                ));
            }
        }
    }
    let (stored_granularity, stored_rollup) = stored_granularity(context, spec, used, inputs);
    let filter = spec
        .filter
        .as_ref()
        .map(|f| RowFilter::compile(f, "transformSpec.filter"))
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(RowShape {
        dimensions,
        metrics,
        query_granularity: spec.query_granularity.clone().unwrap_or(stored_granularity),
        // Partitioning that needs perfect rollup gets it.
        rollup: spec.rollup.unwrap_or(stored_rollup),
        filter,
    })
}

/// How a metricsSpec aggregator is computed over the input rows.
fn metric_plan(aggregator: &Aggregator, index: usize) -> Result<MetricPlan, String> {
    let kind = MetricKind::of(aggregator);
    let input = match aggregator {
        Aggregator::Count { .. } => None,
        Aggregator::StringFirst(a) | Aggregator::StringLast(a) => Some(a.field_name.clone()),
        Aggregator::Filtered { .. } => {
            return Err(format!(
                "metricsSpec[{index}]: filtered aggregators are not supported in compaction"
            ));
        }
        other => match other.field() {
            Some(field) if field.expression.is_none() => Some(
                field
                    .field_name
                    .clone()
                    .unwrap_or_else(|| field.name.clone()),
            ),
            _ => {
                return Err(format!(
                    "metricsSpec[{index}]: expression aggregators are not supported in compaction"
                ));
            }
        },
    };
    Ok(MetricPlan {
        name: aggregator.name().to_string(),
        kind,
        input,
    })
}

/// A version newer than every input's: now, or just after the newest input's.
fn next_version<'a>(versions: impl Iterator<Item = &'a str>) -> String {
    let newest = versions.filter_map(parse_iso).max().unwrap_or(i64::MIN);
    format_iso(now_millis().max(newest.saturating_add(1)))
}

/// `lastCompactionState`: how the segments were compacted, in Druid's shape.
fn compaction_state(spec: &CompactionSpec, shape: &RowShape) -> Value {
    let given = |name: &str| spec.given.get(name).cloned().unwrap_or(Value::Null);
    let granularity = given("granularitySpec");
    json!({
        "partitionsSpec": spec.partitions.to_json(),
        "dimensionsSpec": {"dimensions": shape.dimensions.iter().map(|(name, kind)| {
            json!({"type": kind, "name": name})
        }).collect::<Vec<_>>()},
        "metricsSpec": given("metricsSpec"),
        "transformSpec": given("transformSpec"),
        "indexSpec": {},
        "granularitySpec": {
            "segmentGranularity": granularity.get("segmentGranularity").cloned().unwrap_or(Value::Null),
            "queryGranularity": granularity.get("queryGranularity").cloned().unwrap_or(Value::Null),
            "rollup": shape.rollup,
        },
    })
}

/// The shard spec of piece `number` of `count` in its chunk.
fn shard_spec(keys: &ShardKeys, number: u32, count: u32, partitions: &PartitionsSpec) -> ShardSpec {
    match keys {
        ShardKeys::Any => ShardSpec::Numbered {
            partition_num: number,
            partitions: count,
        },
        ShardKeys::Hashed {
            dimensions,
            bucket,
            buckets,
        } => ShardSpec::Hashed {
            partition_num: number,
            partitions: count,
            bucket_id: *bucket,
            num_buckets: *buckets,
            partition_dimensions: dimensions.clone(),
            partition_function: Some("murmur3_32_abs".into()),
        },
        ShardKeys::Range {
            dimensions,
            start,
            end,
        } => match partitions {
            PartitionsSpec::Range {
                partition_dimensions,
                ..
            } if partition_dimensions.len() == 1 => ShardSpec::Single {
                dimension: dimensions[0].clone(),
                start: start.as_ref().and_then(|s| s[0].clone()),
                end: end.as_ref().and_then(|e| e[0].clone()),
                partition_num: number,
                num_core_partitions: count,
            },
            _ => ShardSpec::Range {
                dimensions: dimensions.clone(),
                start: start.clone(),
                end: end.clone(),
                partition_num: number,
                num_core_partitions: count,
            },
        },
    }
}

impl Prepared {
    /// Publishes the compacted segments in place of the inputs; returns how many appended
    /// segments were carried over. Runs while streaming publishes wait, so the used segments
    /// read here are the ones the catalog checks.
    fn commit(&mut self, context: &Context) -> Result<usize, String> {
        let _publishes = context.publish_lock.lock().expect("publish lock");
        let datasource = self.datasource.as_str();
        let now_used = context
            .catalog
            .segments(datasource, true)
            .map_err(|e| e.to_string())?;
        let gone: Vec<&str> = self
            .inputs
            .iter()
            .filter(|input| !now_used.iter().any(|s| s.id == input.id))
            .map(|input| input.id.as_str())
            .collect();
        if !gone.is_empty() {
            return Err(format!(
                "segments were marked unused while the compaction ran ({}); nothing was published",
                gone.join(", ")
            ));
        }
        let intervals: Vec<(i64, i64)> = self.chunks.iter().map(|c| c.interval).collect();
        let with_rows: BTreeSet<(i64, i64)> =
            self.records.iter().map(|r| (r.start, r.end)).collect();
        let mut expected = Vec::new();
        let mut carried = Vec::new();
        for segment in now_used
            .iter()
            .filter(|s| intervals.iter().any(|c| s.start < c.1 && s.end > c.0))
        {
            expected.push(segment.id.clone());
            if self.used_before.contains(&segment.id) {
                continue;
            }
            // Appended meanwhile: it joins the new version when its chunk is one of the
            // output's, since the new version would overshadow it.
            if with_rows.contains(&(segment.start, segment.end)) {
                let all: Vec<&SegmentRecord> = self.records.iter().chain(&carried).collect();
                carried.push(carry_over(
                    context,
                    segment,
                    &self.version,
                    &all,
                    &mut self.written,
                )?);
            } else if with_rows
                .iter()
                .any(|c| c.0 <= segment.start && c.1 >= segment.end)
            {
                return Err(format!(
                    "segment '{}' was appended while the compaction ran, and the new segmentGranularity cannot take it over; nothing was published, try again",
                    segment.id
                ));
            }
        }
        let carried_count = carried.len();
        // Inputs no output chunk covers whole (their chunks lost every row, or were split
        // into finer ones) would stay visible: they are marked unused instead.
        let retire: Vec<String> = self
            .inputs
            .iter()
            .filter(|s| !with_rows.iter().any(|c| c.0 <= s.start && c.1 >= s.end))
            .map(|s| s.id.clone())
            .collect();
        let mut segments = std::mem::take(&mut self.records);
        segments.extend(carried);
        let replacement = Replacement {
            segments,
            intervals,
            expected_used: expected,
            retire,
        };
        match context
            .catalog
            .replace(datasource, &replacement)
            .map_err(|e| e.to_string())?
        {
            ReplaceOutcome::Published => {}
            ReplaceOutcome::Changed { appeared, gone } => {
                return Err(format!(
                    "the segments of the interval changed while the compaction published (new: {appeared:?}, gone: {gone:?}); nothing was published"
                ));
            }
        }
        if let Err(e) = context
            .visible
            .refresh(context.catalog.as_ref(), datasource)
        {
            tracing::error!(
                datasource,
                "compacted segments are not shown to queries until the next publish or restart: reading the catalog failed: {e}"
            );
        }
        Ok(carried_count)
    }
}

/// A segment appended to a compacted chunk meanwhile, as a partition of the new version:
/// its file linked under the new id (so that killing the old record leaves it), numbered
/// after the version's partitions.
fn carry_over(
    context: &Context,
    appended: &SegmentRecord,
    version: &str,
    records: &[&SegmentRecord],
    written: &mut Written,
) -> Result<SegmentRecord, String> {
    let partition_num = records
        .iter()
        .filter(|r| r.start == appended.start && r.end == appended.end)
        .map(|r| r.partition_num + 1)
        .max()
        .unwrap_or(0);
    let place = SegmentPlace {
        datasource: appended.datasource.clone(),
        start: appended.start,
        end: appended.end,
        version: version.to_string(),
        partition_num,
        core_partitions: 0,
    };
    let file_name = format!("{}.parquet", place.id());
    let relative = format!("segments/{}/{file_name}", appended.datasource);
    let from = context.data_dir.join(&appended.descriptor.load_spec.path);
    let to = context.data_dir.join(&relative);
    if std::fs::hard_link(&from, &to).is_err() {
        std::fs::copy(&from, &to).map_err(|e| {
            format!(
                "carrying over segment '{}' ({} to {}): {e}",
                appended.id,
                from.display(),
                to.display()
            )
        })?;
    }
    written.0.push(to);
    let schema: SegmentSchema = serde_json::from_value(appended.descriptor.columns.clone())
        .map_err(|e| format!("segment '{}': its columns: {e}", appended.id))?;
    record(
        &place,
        &relative,
        appended.descriptor.size,
        appended.descriptor.num_rows,
        &schema,
        publish::appended(partition_num),
        None,
    )
    .map_err(|e| e.to_string())
}

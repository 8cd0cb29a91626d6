//! `millrace bench compaction`: the seed's last part at scale. Tutorial posts of one hour are
//! ingested by 4 tasks (4 segments), merged by a compaction (dynamic partitioning), then
//! range-partitioned on `username` into 4 segments; prints each compaction's time and rows/s
//! and the latency of a query filtering on `username` over each layout. Asserts nothing but
//! that every row is still there.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use millrace_catalog::SqliteCatalog;
use millrace_ingest::Ingestion;
use millrace_ingest::compact::spec::CompactionSpec;
use millrace_log::{EmbeddedLog, EmbeddedLogConfig, Log};
use millrace_query::SqlEngine;
use millrace_segments::time::format_interval;
use millrace_server::source::{ServerIdentity, ServerSource};
use serde_json::{Value, json};

use crate::bench::{BenchDir, first_number, peak_memory_mib, rate, time_query};
use crate::bench_druid::{START, ingest, produce};

const DATASOURCE: &str = "social_media";
const HOUR: i64 = 3_600_000;

/// Timed runs of a query; the median seconds and the count it answers.
fn time_count(
    runtime: &tokio::runtime::Runtime,
    engine: &SqlEngine,
    query: &str,
    runs: usize,
) -> Result<(f64, i64), String> {
    let (seconds, output) = time_query(runtime, engine, query, runs)?;
    let count = first_number(&output).ok_or_else(|| format!("{query}: no count"))?;
    Ok((seconds, count))
}

/// Runs a compaction of the hour and prints its figures.
fn compact(ingestion: &Ingestion, label: &str, extra: Value, rows: usize) -> Result<(), String> {
    let mut spec = json!({"type": "compact", "dataSource": DATASOURCE,
        "ioConfig": {"type": "compact", "inputSpec": {"type": "interval",
            "interval": format_interval((START, START + HOUR))}}});
    for (key, value) in extra.as_object().into_iter().flatten() {
        spec[key] = value.clone();
    }
    let spec = CompactionSpec::from_json(&spec).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let prepared = ingestion.prepare_compaction(label, &spec)?;
    let report = ingestion.publish_compaction(prepared)?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{label:<28} {:>6.2} s  {}  ({} segments in, {} out; read {} ms, reshape and split {} ms, write {} ms, publish {} ms)",
        seconds,
        rate(rows, seconds),
        report.segments_read,
        report.segments_published,
        report.read_millis,
        report.shape_millis,
        report.write_millis,
        report.publish_millis
    );
    for warning in &report.warnings {
        println!("  warning: {warning}");
    }
    Ok(())
}

/// Runs the benchmark.
pub fn run(rows: usize, query_runs: usize, data_dir: Option<PathBuf>) -> Result<(), String> {
    let dir = BenchDir::new(data_dir, "compaction")?;
    let log: Arc<dyn Log> = Arc::new(
        EmbeddedLog::open(dir.path(), EmbeddedLogConfig::default()).map_err(|e| e.to_string())?,
    );
    let catalog =
        Arc::new(SqliteCatalog::open(&dir.path().join("catalog.db")).map_err(|e| e.to_string())?);
    // As many workers as make the posts fill one simulated hour.
    produce(log.as_ref(), rows, rows.div_ceil(3600))?;
    let ingestion =
        Arc::new(Ingestion::open(log, catalog, dir.path(), None).map_err(|e| e.to_string())?);
    let (ingested, _) = ingest(&ingestion, DATASOURCE, 4, rows, None)?;
    println!(
        "{rows} tutorial posts of one hour ingested by 4 tasks in {ingested:.1} s: 4 segments"
    );
    let source = ServerSource(ingestion.clone(), Arc::new(ServerIdentity::new()));
    let engine = SqlEngine::new(Arc::new(source));
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    // The same filter, once as pruning reads it and once hidden in a function call that
    // pruning does not look into: the difference is what pruning saves.
    let filtered =
        |filter: &str| format!("SELECT COUNT(*), SUM(views) FROM \"{DATASOURCE}\" WHERE {filter}");
    let all = format!("SELECT COUNT(*) FROM \"{DATASOURCE}\"");
    let mut answers = Vec::new();
    let mut query = |layout: &str| -> Result<(), String> {
        let (pruned, count) =
            time_count(&runtime, &engine, &filtered("username = 'mia'"), query_runs)?;
        let (unpruned, same) = time_count(
            &runtime,
            &engine,
            &filtered("TRIM(username) = 'mia'"),
            query_runs,
        )?;
        println!(
            "  over {layout}: WHERE username = 'mia' {:.1} ms, WHERE TRIM(username) = 'mia' (not pruned) {:.1} ms (medians of {query_runs})",
            pruned * 1000.0,
            unpruned * 1000.0
        );
        let (_, total) = time_count(&runtime, &engine, &all, 1)?;
        answers.push((count, total));
        answers.push((same, total));
        Ok(())
    };
    query("4 streamed segments (nothing to prune)")?;
    compact(
        &ingestion,
        "merge (dynamic)",
        json!({"granularitySpec": {"segmentGranularity": "hour"}}),
        rows,
    )?;
    query("the merged segments")?;
    compact(
        &ingestion,
        "range on username",
        json!({"tuningConfig": {"type": "compaction", "forceGuaranteedRollup": true,
            "partitionsSpec": {"type": "range", "partitionDimensions": ["username"],
                "targetRowsPerSegment": rows.div_ceil(4)}}}),
        rows,
    )?;
    query("4 range segments (3 pruned)")?;
    if let Some(mib) = peak_memory_mib() {
        println!("peak memory (VmHWM): {mib:.0} MiB");
    }
    ingestion.shutdown();
    // The figures only count if the rows came through every compaction unchanged.
    if answers.iter().any(|a| *a != answers[0]) || answers[0].1 != rows as i64 {
        return Err(format!(
            "the rows changed: (mia's count, total) per layout {answers:?}, {rows} produced"
        ));
    }
    Ok(())
}

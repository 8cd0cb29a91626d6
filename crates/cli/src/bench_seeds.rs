//! `millrace bench seeds`: the seeds' experiments in one command. The data generator makes
//! the Druid tutorial's social posts (concurrency 500, as the notebook asks) into a
//! 4-partition topic; supervisors with 1, 2 and 4 tasks ingest them (rows/s until queryable,
//! publish time, segments per hour); the KSML tutorial's efficient-processing pipeline runs
//! over pre-produced events, as this repository's example and in the tutorial's own form
//! (one transformer, nested metadata, a log line per purchase and search): messages/s and
//! peak memory. Prints a table and writes the figures as JSON.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use millrace_catalog::SqliteCatalog;
use millrace_datagen::{Config, Limit, LogSink, Pacing, Progress, Settings, Simulation, builtin};
use millrace_ingest::Ingestion;
use millrace_log::{EmbeddedLog, EmbeddedLogConfig, Log};
use millrace_query::SqlEngine;
use millrace_query::values::object_rows;
use millrace_server::source::{ServerIdentity, ServerSource};
use serde_json::{Value, json};

use crate::bench::{BenchDir, peak_memory_mib, reset_peak_memory};
use crate::bench_druid::{PARTITIONS, START, TOPIC, ingest};
use crate::bench_pipeline::{events, pipeline_run, tutorial_events};

/// Makes `events` social posts into the topic; returns the seconds it took.
fn generate(log: Arc<dyn Log>, events: usize) -> Result<f64, String> {
    let text = builtin::find("social/social_posts.json").expect("a built-in config");
    let config = Config::parse(&serde_json::from_str(text).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let settings = Settings {
        start_ms: START,
        concurrency: 500,
        limit: Limit::Events(events as u64),
        seed: 1,
    };
    let mut simulation = Simulation::new(config, settings).map_err(|e| e.to_string())?;
    let mut sink = LogSink::open(log, TOPIC, Some(PARTITIONS), Vec::new())?;
    let started = Instant::now();
    millrace_datagen::run::run(
        &mut simulation,
        &mut sink,
        Pacing::Simulated,
        &Progress::default(),
        &AtomicBool::new(false),
    )?;
    Ok(started.elapsed().as_secs_f64())
}

/// Published segments of a datasource and the hours they cover.
fn segments_per_hour(engine: &SqlEngine, datasource: &str) -> Result<(i64, i64), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let sql = format!(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT \"start\") AS hours FROM sys.segments \
         WHERE datasource = '{datasource}' AND is_published = 1"
    );
    let output = runtime
        .block_on(engine.query(&sql, vec![]))
        .map_err(|e| e.to_string())?;
    let row = object_rows(&output).into_iter().next().unwrap_or_default();
    let number = |name: &str| row.get(name).and_then(Value::as_i64).unwrap_or(0);
    Ok((number("n"), number("hours")))
}

/// Runs each form of the efficient-processing pipeline over pre-produced events; prints and
/// returns its figures. Runs first, so that its peak memory is not the ingestion's.
fn pipelines(pipeline_events: usize) -> Result<Vec<Value>, String> {
    println!(
        "KSML efficient-processing pipeline over {pipeline_events} events on the embedded log:"
    );
    let mut figures = Vec::new();
    let variants = [
        (
            "examples/ksml/processor-efficient-processing.yaml",
            events(pipeline_events),
        ),
        (
            "examples/ksml/processor-efficient-processing-logging.yaml",
            tutorial_events(pipeline_events),
        ),
    ];
    for (definition, payloads) in variants {
        reset_peak_memory();
        let (seconds, written) = pipeline_run(&payloads, Path::new(definition), None, false)?;
        let peak = peak_memory_mib();
        let rate = pipeline_events as f64 / seconds;
        println!(
            "  {definition}: {rate:.0} msgs/s ({seconds:.2} s, {written} results), peak memory {:.0} MiB",
            peak.unwrap_or(0.0)
        );
        figures.push(json!({
            "definition": definition, "events": pipeline_events, "messagesPerSecond": rate,
            "seconds": seconds, "results": written, "peakMemoryMiB": peak,
        }));
    }
    Ok(figures)
}

/// Runs every experiment; prints the table and writes the JSON to `json_path`.
pub fn run(
    posts: usize,
    pipeline_events: usize,
    json_path: &Path,
    data_dir: Option<PathBuf>,
) -> Result<(), String> {
    let pipeline_figures = pipelines(pipeline_events)?;
    let dir = BenchDir::new(data_dir, "seeds")?;
    let log: Arc<dyn Log> = Arc::new(
        EmbeddedLog::open(dir.path(), EmbeddedLogConfig::default()).map_err(|e| e.to_string())?,
    );
    reset_peak_memory();
    let generated = generate(log.clone(), posts)?;
    println!(
        "data generator, social/social_posts.json, concurrency 500, into {PARTITIONS} partitions of the embedded log:"
    );
    println!(
        "  {posts} posts in {generated:.2} s: {:.0} events/s",
        posts as f64 / generated
    );
    let catalog =
        Arc::new(SqliteCatalog::open(&dir.path().join("catalog.db")).map_err(|e| e.to_string())?);
    let ingestion =
        Arc::new(Ingestion::open(log, catalog, dir.path(), None).map_err(|e| e.to_string())?);
    let engine = SqlEngine::new(Arc::new(ServerSource(
        ingestion.clone(),
        Arc::new(ServerIdentity::new()),
    )));
    println!(
        "Druid ingestion of the posts (supervisor spec examples/druid/social-media-supervisor.json):"
    );
    println!(
        "  {:<10} {:>14} {:>12} {:>10} {:>14}",
        "taskCount", "rows/s", "queryable s", "publish s", "segments/hour"
    );
    let mut ingestion_figures = Vec::new();
    for tasks in [1u32, 2, 4] {
        let datasource = format!("social_media_{tasks}task");
        let (queryable, publish) = ingest(&ingestion, &datasource, tasks, posts, None)?;
        let (segments, hours) = segments_per_hour(&engine, &datasource)?;
        let per_hour = segments as f64 / hours.max(1) as f64;
        println!(
            "  {tasks:<10} {:>14.0} {queryable:>12.2} {publish:>10.2} {per_hour:>14.1}",
            posts as f64 / queryable
        );
        ingestion_figures.push(json!({
            "taskCount": tasks, "rowsPerSecond": posts as f64 / queryable,
            "secondsUntilQueryable": queryable, "publishSeconds": publish,
            "segments": segments, "hours": hours,
        }));
    }
    let ingest_peak = peak_memory_mib();
    if let Some(mib) = ingest_peak {
        println!("  peak memory while generating, ingesting and publishing: {mib:.0} MiB");
    }
    ingestion.shutdown();

    let figures = json!({
        "generator": {"config": "social/social_posts.json", "events": posts, "seconds": generated,
                      "eventsPerSecond": posts as f64 / generated},
        "ingestion": {"posts": posts, "runs": ingestion_figures, "peakMemoryMiB": ingest_peak},
        "pipelines": pipeline_figures,
    });
    let text = serde_json::to_string_pretty(&figures).map_err(|e| e.to_string())?;
    std::fs::write(json_path, text + "\n").map_err(|e| format!("{}: {e}", json_path.display()))?;
    println!("figures written to {}", json_path.display());
    Ok(())
}

//! `millrace bench pipeline`: the KSML runtime against a bare CPython loop calling the same
//! functions on the same events. The ratio of the two is the runtime's overhead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use bytes::Bytes;
use millrace_kafka::test_broker::TestBroker;
use millrace_kafka::{KafkaLog, KafkaSettings};
use millrace_ksml::config::RunnerConfig;
use millrace_ksml::load::{load_definition_file, python_spec};
use millrace_log::{EmbeddedLog, EmbeddedLogConfig, Log, Record};
use millrace_python::convert::bytes_to_py;
use millrace_python::pyo3::prelude::*;
use millrace_python::pyo3::types::{PyDict, PyList};
use millrace_python::{Namespace, Python};
use millrace_stream::runner::{RunOptions, run as run_pipelines};
use millrace_types::DataType;

use crate::bench::{BenchDir, Input, lines_of, median, rate};

const INPUT_TOPIC: &str = "high_volume_events";

/// A small deterministic random source (xorshift64), so every run reads the same events.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// Events shaped like examples/ksml/producer-high-volume.yaml makes them, from a fixed seed.
pub(crate) fn events(count: usize) -> Vec<Bytes> {
    const TYPES: [&str; 5] = ["click", "purchase", "view", "scroll", "hover"];
    const CATEGORIES: [&str; 5] = ["electronics", "clothing", "books", "home", "sports"];
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    (0..count)
        .map(|i| {
            let r = next();
            Bytes::from(format!(
                r#"{{"event_id":"evt_{i}","user_id":"user_{}","event_type":"{}","category":"{}","value":{:.2},"timestamp":{}}}"#,
                r % 1000 + 1,
                TYPES[(r >> 10) as usize % 5],
                CATEGORIES[(r >> 20) as usize % 5],
                1.0 + ((r >> 30) % 49_900) as f64 / 100.0,
                1_700_000_000_000u64 + i as u64
            ))
        })
        .collect()
}

/// Events shaped like the KSML performance tutorial's own producer makes them (`type`,
/// product and session ids, a nested `metadata` object), from a fixed seed.
pub(crate) fn tutorial_events(count: usize) -> Vec<Bytes> {
    const TYPES: [&str; 6] = ["view", "click", "purchase", "search", "scroll", "hover"];
    const CATEGORIES: [&str; 5] = ["electronics", "clothing", "books", "home", "sports"];
    const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];
    const BROWSERS: [&str; 3] = ["chrome", "firefox", "safari"];
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    (0..count)
        .map(|i| {
            let r = next();
            let kind = TYPES[r as usize % 6];
            let user = (r >> 8) % 100 + 1;
            let value = if kind == "purchase" { 1.0 + ((r >> 16) % 9900) as f64 / 100.0 } else { 0.0 };
            Bytes::from(format!(
                r#"{{"event_id":"evt_{i:08}","type":"{kind}","user_id":"user_{user:04}","timestamp":{},"product_id":"prod_{:04}","category":"{}","value":{value},"session_id":"sess_{:03}","metadata":{{"source":"web","device":"{}","browser":"{}"}}}}"#,
                1_700_000_000_000u64 + i as u64,
                (r >> 24) % 1000 + 1,
                CATEGORIES[(r >> 34) as usize % 5],
                user % 50,
                DEVICES[(r >> 40) as usize % 3],
                BROWSERS[(r >> 44) as usize % 3],
            ))
        })
        .collect()
}

/// The events' values, in order: generated (shaped as [`events`] makes them) or a file's
/// lines.
fn payloads(input: &Input) -> Result<Vec<Bytes>, String> {
    match input {
        Input::Generated(count) => Ok(events(*count)),
        Input::File(path) => lines_of(path)?.collect(),
    }
}

/// Runs the pipeline and the bare loop `runs` times over the events; prints each run and the
/// medians, and writes them as JSON to `json_path` if given.
pub fn run(
    events: Input,
    definition: &Path,
    (predicate, mapper): (&str, &str),
    data_dir: Option<PathBuf>,
    runs: usize,
    kafka: bool,
    json_path: Option<&Path>,
) -> Result<(), String> {
    let payloads = payloads(&events)?;
    let count = payloads.len();
    let through = if kafka {
        "a Kafka broker (tansu)"
    } else {
        "the embedded log"
    };
    println!(
        "{count} events through {} on {through}",
        definition.display()
    );
    let mut pipeline_times = Vec::new();
    let mut bare_times = Vec::new();
    let mut results = 0;
    for run in 1..=runs.max(1) {
        let (pipeline, outputs) = pipeline_run(&payloads, definition, data_dir.clone(), kafka)?;
        let bare = bare_loop(definition, &payloads, predicate, mapper)?;
        println!(
            "run {run}: pipeline {} ({outputs} results) | bare loop {} | {:.0}%",
            rate(count, pipeline),
            rate(count, bare),
            100.0 * bare / pipeline
        );
        pipeline_times.push(pipeline);
        bare_times.push(bare);
        results = outputs;
    }
    let runs_seconds = pipeline_times.clone();
    let (pipeline, bare) = (median(pipeline_times), median(bare_times));
    if let Some(path) = json_path {
        let figures = serde_json::json!({
            "events": count, "definition": definition, "through": through, "results": results,
            "runs_seconds": runs_seconds, "median_seconds": pipeline,
            "messages_per_second": count as f64 / pipeline, "bare_loop_median_seconds": bare,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&figures).expect("JSON"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!(
        "median pipeline (read, JSON to dict, filter, mapValues, dict to JSON, append + commit): {}",
        rate(count, pipeline)
    );
    println!(
        "median bare CPython loop (same functions on the same dicts, nothing else):          {}",
        rate(count, bare)
    );
    println!("pipeline / bare loop: {:.0}%", 100.0 * bare / pipeline);
    Ok(())
}

/// One pipeline run over fresh data (on a fresh broker with `kafka`): seconds, and how many
/// results it wrote.
pub(crate) fn pipeline_run(
    payloads: &[Bytes],
    definition: &Path,
    data_dir: Option<PathBuf>,
    kafka: bool,
) -> Result<(f64, u64), String> {
    let dir = BenchDir::new(data_dir, "pipeline")?;
    let broker = kafka.then(TestBroker::start);
    let log: Arc<dyn Log> = match &broker {
        Some(broker) => KafkaLog::open(KafkaSettings::new(vec![(
            "bootstrap.servers".into(),
            broker.bootstrap_servers(),
        )]))?,
        None => Arc::new(
            EmbeddedLog::open(dir.path(), EmbeddedLogConfig::default())
                .map_err(|e| e.to_string())?,
        ),
    };
    log.create_topic(INPUT_TOPIC, 1)
        .map_err(|e| e.to_string())?;
    for chunk in payloads.chunks(1000) {
        let records = chunk
            .iter()
            .map(|value| Record {
                key: None,
                value: Some(value.clone()),
                timestamp: 1_700_000_000_000,
                headers: Vec::new(),
            })
            .collect();
        log.append(INPUT_TOPIC, 0, records)
            .map_err(|e| e.to_string())?;
    }
    let definitions = [load_definition_file(definition)?];
    let summary = run_pipelines(
        log.clone(),
        &definitions,
        RunnerConfig::default(),
        RunOptions::new(true, Arc::new(AtomicBool::new(false))),
    )
    .map_err(|e| e.to_string())?;
    Ok((summary.elapsed.as_secs_f64(), summary.records_written))
}

/// Times `for value in dicts: if predicate(None, value): mapper(None, value)` in CPython over
/// the events already parsed into dicts, with the functions compiled as the runtime compiles
/// them.
fn bare_loop(
    definition: &Path,
    payloads: &[Bytes],
    predicate: &str,
    mapper: &str,
) -> Result<f64, String> {
    let definition = load_definition_file(definition)?;
    Python::attach(|py| {
        let namespace = Namespace::new(py, &definition.namespace, &definition.file_name())
            .map_err(|e| e.to_string())?;
        for function in &definition.functions {
            if let Some(code) = &function.global_code {
                namespace
                    .run_global_code(py, &function.name, code)
                    .map_err(|e| e.to_string())?;
            }
            namespace
                .define(py, &python_spec(function))
                .map_err(|e| e.to_string())?;
        }
        let globals = namespace.globals(py);
        let lookup = |name: &str| {
            globals
                .get_item(name)
                .ok()
                .flatten()
                .ok_or_else(|| format!("the definition has no function '{name}'"))
        };
        // The same dicts the pipeline hands to the functions: decoded the same way.
        let dicts = PyList::empty(py);
        for payload in payloads {
            let dict =
                bytes_to_py(py, Some(payload), &DataType::Json).map_err(|e| e.to_string())?;
            dicts.append(dict).map_err(|e| e.to_string())?;
        }
        let scope = PyDict::new(py);
        let set = |k: &str, v: &dyn Fn() -> Result<_, String>| -> Result<(), String> {
            scope.set_item(k, v()?).map_err(|e| e.to_string())
        };
        // No predicate named: every value goes to the mapper (which may filter itself).
        if predicate.is_empty() {
            scope
                .set_item("predicate", py.None())
                .map_err(|e| e.to_string())?;
        } else {
            set("predicate", &|| lookup(predicate))?;
        }
        set("mapper", &|| lookup(mapper))?;
        scope.set_item("dicts", dicts).map_err(|e| e.to_string())?;
        let started = Instant::now();
        py.run(
            c"for value in dicts:\n    if predicate is None or predicate(None, value):\n        mapper(None, value)\n",
            Some(&scope),
            None,
        )
        .map_err(|e| e.to_string())?;
        Ok(started.elapsed().as_secs_f64())
    })
}

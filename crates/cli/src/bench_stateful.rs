//! `millrace bench stateful`: stateful pipelines over pre-produced records with a fixed number
//! of keys: a per-key count, a one-minute tumbling-window count, and the seed's
//! optimized-state example (a Python function keeping per-user metrics in a store). Each
//! prints messages/s and the peak memory of the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use millrace_ksml::config::RunnerConfig;
use millrace_ksml::load::load_definition_file;
use millrace_log::{EmbeddedLog, EmbeddedLogConfig, Log, Record};
use millrace_stream::runner::{RunOptions, run as run_pipelines};

use crate::bench::{BenchDir, peak_memory_mib, rate, reset_peak_memory};

/// A per-key count with Kafka Streams' default store: persistent, cached, logged.
const COUNT: &str = "
streams:
  events:
    topic: events
    keyType: string
    valueType: json
pipelines:
  count_per_key:
    from: events
    via:
      - type: groupByKey
      - type: count
      - type: toStream
    to:
      topic: counts
      keyType: string
      valueType: long
";

/// A one-minute tumbling-window count per key, with the default window store.
const WINDOWED_COUNT: &str = "
streams:
  events:
    topic: events
    keyType: string
    valueType: json
pipelines:
  count_per_minute:
    from: events
    via:
      - type: groupByKey
      - type: windowByTime
        windowType: tumbling
        duration: 1m
      - type: count
      - type: toStream
    to:
      topic: windowed_counts
      keyType: json
      valueType: long
";

/// One scenario: its name, where its definition comes from, and the topic it reads.
struct Scenario {
    name: &'static str,
    definition: Definition,
    topic: &'static str,
}

enum Definition {
    Inline(&'static str),
    File(PathBuf),
}

/// Runs the scenarios named in `only` (all when empty) over `count` records with `keys` keys.
pub fn run(
    count: usize,
    keys: usize,
    optimized_state: &Path,
    only: &[String],
    data_dir: Option<PathBuf>,
) -> Result<(), String> {
    let scenarios = [
        Scenario {
            name: "count",
            definition: Definition::Inline(COUNT),
            topic: "events",
        },
        Scenario {
            name: "window",
            definition: Definition::Inline(WINDOWED_COUNT),
            topic: "events",
        },
        Scenario {
            name: "optimized-state",
            definition: Definition::File(optimized_state.to_path_buf()),
            topic: "user_activity",
        },
    ];
    println!("{count} records, {} keys", keys.max(1));
    for scenario in scenarios
        .iter()
        .filter(|s| only.is_empty() || only.iter().any(|o| o == s.name))
    {
        // Each scenario on its own log: they read topics of the same names.
        let given = data_dir.as_ref().map(|dir| dir.join(scenario.name));
        let dir = BenchDir::new(given, scenario.name)?;
        let log = Arc::new(
            EmbeddedLog::open(dir.path(), EmbeddedLogConfig::default())
                .map_err(|e| e.to_string())?,
        );
        produce(log.as_ref(), scenario.topic, count, keys.max(1))?;
        let definition = match &scenario.definition {
            Definition::Inline(yaml) => {
                let path = dir.path().join(format!("{}.yaml", scenario.name));
                std::fs::write(&path, yaml).map_err(|e| e.to_string())?;
                path
            }
            Definition::File(path) => path.clone(),
        };
        reset_peak_memory();
        let (seconds, processed, written) = run_once(&log, &definition, dir.path())?;
        let peak = peak_memory_mib().map_or("unknown".into(), |m| format!("{m:.0} MiB"));
        println!(
            "{:<16} {} ({processed} processed, {written} results) | peak memory {peak}",
            scenario.name,
            rate(processed as usize, seconds),
        );
    }
    Ok(())
}

/// Appends `count` activity records keyed `user_<n>` with `keys` users, one second apart
/// every 1000 records, as JSON the optimized-state processor reads too.
fn produce(log: &dyn Log, topic: &str, count: usize, keys: usize) -> Result<(), String> {
    const ACTIVITIES: [&str; 5] = ["login", "page_view", "click", "purchase", "logout"];
    log.create_topic(topic, 1).map_err(|e| e.to_string())?;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut produced = 0;
    while produced < count {
        let chunk = (count - produced).min(1000);
        let records = (produced..produced + chunk)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let user = format!("user_{}", state as usize % keys);
                let timestamp = 1_700_000_000_000 + (i / 1000) as i64 * 1000;
                let value = format!(
                    r#"{{"user_id":"{user}","activity_type":"{}","score":{},"duration_ms":{},"timestamp":{timestamp}}}"#,
                    ACTIVITIES[(state >> 20) as usize % 5],
                    (state >> 30) % 50,
                    (state >> 40) % 5000,
                );
                Record {
                    key: Some(Bytes::from(user)),
                    value: Some(Bytes::from(value)),
                    timestamp,
                    headers: Vec::new(),
                }
            })
            .collect();
        log.append(topic, 0, records).map_err(|e| e.to_string())?;
        produced += chunk;
    }
    Ok(())
}

/// One run until idle: seconds, records processed, records written.
fn run_once(
    log: &Arc<EmbeddedLog>,
    definition: &Path,
    dir: &Path,
) -> Result<(f64, u64, u64), String> {
    let definitions = [load_definition_file(definition)?];
    let mut options = RunOptions::new(true, Arc::new(AtomicBool::new(false)));
    options.state_dir = Some(dir.join("state"));
    let summary = run_pipelines(log.clone(), &definitions, RunnerConfig::default(), options)
        .map_err(|e| e.to_string())?;
    Ok((
        summary.elapsed.as_secs_f64(),
        summary.records_processed,
        summary.records_written,
    ))
}

//! `millrace bench druid`: the seed's experiment (tutorial social posts ingested with 1, 2 and
//! 4 tasks) and Druid SQL latencies over the result. Prints figures; asserts none.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use millrace_catalog::SqliteCatalog;
use millrace_ingest::{ClusterConnector, Ingestion};
use millrace_kafka::test_broker::TestBroker;
use millrace_kafka::{KafkaLog, KafkaSettings};
use millrace_log::{EmbeddedLog, EmbeddedLogConfig, Log, Record};
use millrace_query::SqlEngine;
use millrace_segments::time::format_iso;
use millrace_server::source::{ServerIdentity, ServerSource};
use serde_json::json;

use crate::bench::{
    BenchDir, Input, first_number, lines_of, peak_memory_mib, rate, reset_peak_memory, time_query,
};

/// The topic the posts are in, and its partitions.
pub(crate) const TOPIC: &str = "social_media";
pub(crate) const PARTITIONS: u32 = 4;
/// 2025-01-01T00:00:00Z: the simulated clock starts here.
pub(crate) const START: i64 = 1_735_689_600_000;

/// A small deterministic random source (xorshift64*), so every run ingests the same events.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        mean + sd * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// The tutorial's social posts (see the datagen `social_posts` config): one per simulated
/// second per worker, with `workers` workers. Made as they are produced, so the benchmark's
/// memory is the server's, not the generator's.
fn social_posts(count: usize, workers: usize) -> impl Iterator<Item = Bytes> {
    const NAMES: [&str; 8] = [
        "willow", "mia", "leon", "milton", "miette", "gus", "jojo", "rocket",
    ];
    const TITLE: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_!';:,.";
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    (0..count).map(move |i| {
        let length = 1 + random.next() as usize % 140;
        let title: String = (0..length)
            .map(|_| TITLE[random.next() as usize % TITLE.len()] as char)
            .collect();
        let post = json!({
            "time": format_iso(START + (i / workers.max(1)) as i64 * 1000),
            "username": NAMES[random.next() as usize % NAMES.len()],
            "post_title": title,
            "views": (-10_000.0 * (1.0 - random.unit()).ln()) as i64,
            "upvotes": random.normal(70.0, 20.0).round() as i64,
            "comments": random.normal(10.0, 5.0).round().max(0.0) as i64,
            "edited": if random.next().is_multiple_of(2) { "True" } else { "False" },
        });
        Bytes::from(post.to_string())
    })
}

/// The example spec of the tutorial's posts (`examples/druid/social-media-supervisor.json`)
/// for a datasource and task count, reading the Kafka cluster at `bootstrap_servers` if
/// given; tasks run a day, so only the suspend publishes.
fn spec(datasource: &str, tasks: u32, bootstrap_servers: Option<&str>) -> Vec<u8> {
    let mut spec: serde_json::Value = serde_json::from_str(include_str!(
        "../../../examples/druid/social-media-supervisor.json"
    ))
    .expect("the example spec is JSON");
    spec["spec"]["dataSchema"]["dataSource"] = json!(datasource);
    let io = &mut spec["spec"]["ioConfig"];
    io["topic"] = json!(TOPIC);
    io["taskCount"] = json!(tasks);
    io["taskDuration"] = json!("PT24H");
    if let Some(servers) = bootstrap_servers {
        io["consumerProperties"] = json!({"bootstrap.servers": servers});
    }
    spec.to_string().into_bytes()
}

fn wait(what: &str, mut done: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(3600);
    while !done()? {
        if Instant::now() > deadline {
            return Err(format!("gave up waiting until {what}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Ingests the events with a supervisor of `tasks` tasks; returns the seconds until every row
/// was queryable and the seconds its tasks then took to publish.
pub(crate) fn ingest(
    ingestion: &Ingestion,
    datasource: &str,
    tasks: u32,
    events: usize,
    bootstrap_servers: Option<&str>,
) -> Result<(f64, f64), String> {
    let started = Instant::now();
    ingestion
        .submit(&spec(datasource, tasks, bootstrap_servers))
        .map_err(|e| e.to_string())?;
    wait("every row is ingested", || {
        let status = ingestion.status(datasource).map_err(|e| e.to_string())?;
        let processed: u64 = status.active_tasks.iter().map(|t| t.counts.processed).sum();
        Ok(processed as usize >= events)
    })?;
    let ingested = started.elapsed().as_secs_f64();
    let publishing = Instant::now();
    ingestion
        .set_suspended(datasource, true)
        .map_err(|e| e.to_string())?;
    wait("the tasks published", || {
        Ok(ingestion
            .status(datasource)
            .map_err(|e| e.to_string())?
            .state
            == "SUSPENDED")
    })?;
    Ok((ingested, publishing.elapsed().as_secs_f64()))
}

/// Produces `events` tutorial posts from `workers` workers to the topic (created here);
/// returns their bytes.
pub(crate) fn produce(log: &dyn Log, events: usize, workers: usize) -> Result<usize, String> {
    produce_values(log, social_posts(events, workers))
}

/// Produces values to the topic (created here) in runs of 1000 per partition; returns their
/// bytes.
fn produce_values(log: &dyn Log, mut posts: impl Iterator<Item = Bytes>) -> Result<usize, String> {
    log.create_topic(TOPIC, PARTITIONS)
        .map_err(|e| e.to_string())?;
    let mut bytes = 0;
    // Key-less records go to partitions in runs of 1000, as a batching producer sends them.
    for n in 0.. {
        let records: Vec<Record> = posts
            .by_ref()
            .take(1000)
            .map(|value| {
                bytes += value.len();
                Record {
                    key: None,
                    value: Some(value),
                    timestamp: START,
                    headers: Vec::new(),
                }
            })
            .collect();
        if records.is_empty() {
            break;
        }
        log.append(TOPIC, n % PARTITIONS, records)
            .map_err(|e| e.to_string())?;
    }
    Ok(bytes)
}

/// Runs the benchmark; with `kafka`, the posts are in a topic of a fresh Kafka-protocol
/// broker on loopback (tansu), which the specs name.
pub fn run(
    posts: Input,
    task_counts: &[u32],
    queries_runs: usize,
    data_dir: Option<PathBuf>,
    kafka: bool,
    json_path: Option<&Path>,
) -> Result<(), String> {
    let dir = BenchDir::new(data_dir, "druid")?;
    let own_log: Arc<dyn Log> = Arc::new(
        EmbeddedLog::open(dir.path(), EmbeddedLogConfig::default()).map_err(|e| e.to_string())?,
    );
    let catalog =
        Arc::new(SqliteCatalog::open(&dir.path().join("catalog.db")).map_err(|e| e.to_string())?);
    let broker = kafka.then(TestBroker::start);
    let servers = broker.as_ref().map(TestBroker::bootstrap_servers);
    let log = match &servers {
        Some(servers) => KafkaLog::open(KafkaSettings::new(vec![(
            "bootstrap.servers".into(),
            servers.clone(),
        )]))?,
        None => own_log.clone(),
    };
    // The specs' consumer properties name the broker: its log is the one the posts are in.
    let connect: Option<ClusterConnector> = kafka.then(|| {
        let log = log.clone();
        Arc::new(move |_: &[(String, String)]| Ok(log.clone())) as ClusterConnector
    });
    let generated = Instant::now();
    let (events, bytes, origin) = match &posts {
        Input::Generated(events) => (
            *events,
            produce(log.as_ref(), *events, 10)?,
            "tutorial social posts".to_string(),
        ),
        Input::File(path) => {
            // Produced as read, never held whole: a 10M-line file is 2 GB.
            let (mut lines, mut failure) = (0, None);
            let values = lines_of(path)?
                .map_while(|line| line.map_err(|e| failure = Some(e)).ok())
                .inspect(|_| lines += 1);
            let bytes = produce_values(log.as_ref(), values)?;
            if let Some(e) = failure {
                return Err(e);
            }
            (lines, bytes, format!("posts from {}", path.display()))
        }
    };
    let through = if kafka {
        "a Kafka broker (tansu)"
    } else {
        "the embedded log"
    };
    println!(
        "{events} {origin} ({:.0} MB of JSON) produced to {PARTITIONS} partitions of {through} in {:.1} s",
        bytes as f64 / 1e6,
        generated.elapsed().as_secs_f64()
    );
    let ingestion = Arc::new(
        Ingestion::open(own_log, catalog, dir.path(), connect).map_err(|e| e.to_string())?,
    );
    let mut last = None;
    let mut ingestions = Vec::new();
    for &tasks in task_counts {
        let datasource = format!("social_media_{tasks}");
        reset_peak_memory();
        let (ingested, published) =
            ingest(&ingestion, &datasource, tasks, events, servers.as_deref())?;
        let peak = peak_memory_mib();
        println!(
            "taskCount {tasks}: ingested {} until queryable, then published in {published:.2} s; peak memory (VmHWM) {:.0} MiB",
            rate(events, ingested),
            peak.unwrap_or(f64::NAN)
        );
        ingestions.push(json!({
            "tasks": tasks, "seconds": ingested, "rows_per_second": events as f64 / ingested,
            "publish_seconds": published, "peak_memory_mib": peak,
        }));
        last = Some(datasource);
    }
    let Some(datasource) = last else {
        return Ok(());
    };
    let source = ServerSource(ingestion.clone(), Arc::new(ServerIdentity::new()));
    let engine = SqlEngine::new(Arc::new(source));
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let queries = [
        ("COUNT(*)", format!("SELECT COUNT(*) FROM \"{datasource}\"")),
        (
            "GROUP BY username",
            format!(
                "SELECT username, COUNT(*) AS posts, SUM(views) AS views FROM \"{datasource}\" GROUP BY username ORDER BY posts DESC, username"
            ),
        ),
        (
            "TIME_FLOOR hourly",
            format!(
                "SELECT TIME_FLOOR(__time, 'PT1H') AS hour, COUNT(*) AS posts FROM \"{datasource}\" GROUP BY 1 ORDER BY 1"
            ),
        ),
        (
            "WHERE username",
            format!(
                "SELECT COUNT(*) AS posts, SUM(views) AS views FROM \"{datasource}\" WHERE username = 'mia'"
            ),
        ),
    ];
    println!(
        "SQL over {events} published rows of {datasource} (median of {queries_runs} after one warm-up):"
    );
    let mut timed = Vec::new();
    for (label, query) in queries {
        let (seconds, output) = time_query(&runtime, &engine, &query, queries_runs)?;
        if output.batches.iter().map(|b| b.num_rows()).sum::<usize>() == 0 {
            return Err(format!("{label}: no rows"));
        }
        println!("  {label:<18} {:>8.1} ms", seconds * 1000.0);
        timed.push(json!({
            "name": label, "sql": query, "median_ms": seconds * 1000.0,
            "answer": millrace_query::values::object_rows(&output),
        }));
    }
    // The figures only count if every event arrived exactly once.
    let counted = runtime
        .block_on(engine.query(&format!("SELECT COUNT(*) FROM \"{datasource}\""), vec![]))
        .map_err(|e| e.to_string())?;
    let counted = first_number(&counted);
    if counted != Some(events as i64) {
        return Err(format!("{datasource} holds {counted:?} rows, not {events}"));
    }
    ingestion.shutdown();
    if let Some(path) = json_path {
        let figures = json!({
            "rows": events, "bytes": bytes, "through": through, "ingestion": ingestions,
            "queries": {"datasource": datasource, "runs": queries_runs, "timed": timed},
        });
        std::fs::write(path, serde_json::to_vec_pretty(&figures).expect("JSON"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

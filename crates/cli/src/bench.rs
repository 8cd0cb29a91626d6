//! `millrace bench`: measured figures, printed. Nothing here asserts a timing.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use bytes::Bytes;
use clap::Subcommand;
use millrace_log::{EmbeddedLog, EmbeddedLogConfig, Log, Record};
use millrace_query::{QueryOutput, SqlEngine};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Append then read back records on the embedded log.
    Log {
        /// How many records.
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        /// Value size in bytes.
        #[arg(long, default_value_t = 200)]
        value_size: usize,
        /// Records per append call.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Where to put the log (a fresh temporary directory by default).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Repetitions; the median is reported (each run on fresh data).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Run the seed's efficient-processing pipeline over pre-produced events, and the same
    /// functions in a bare CPython loop over the same events as dicts.
    Pipeline {
        /// How many events.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// The processor definition (it must read `high_volume_events`).
        #[arg(
            long,
            default_value = "examples/ksml/processor-efficient-processing.yaml"
        )]
        definition: PathBuf,
        /// The predicate and value transformer the bare loop calls (an empty predicate: the
        /// mapper alone, for definitions that filter inside it).
        #[arg(long, default_value = "is_interesting_event")]
        predicate: String,
        #[arg(long, default_value = "compute_event_score")]
        mapper: String,
        /// Where to put the log (a fresh temporary directory by default).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Repetitions; the median is reported (each run on fresh data).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Through a Kafka-protocol broker on loopback (tansu, a fresh one per run, started
        /// with the repository's scripts/kafka-broker) instead of the embedded log.
        #[arg(long)]
        kafka: bool,
        /// The events from this JSON-lines file, one per line, instead of generated ones;
        /// --events is then the file's line count.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Also write the figures to this file as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Stateful pipelines over pre-produced records: a per-key count, a one-minute
    /// tumbling-window count, and the seed's optimized-state example; messages/s and peak
    /// memory of each.
    Stateful {
        /// How many records.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// How many distinct keys (users).
        #[arg(long, default_value_t = 100)]
        keys: usize,
        /// Only these scenarios (count, window, optimized-state); all by default.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// The optimized-state processor (it must read `user_activity`).
        #[arg(long, default_value = "examples/ksml/processor-optimized-state.yaml")]
        optimized_state: PathBuf,
        /// Where to put the data, a folder per scenario (fresh temporary directories by
        /// default).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The seed's compaction at scale: one hour of tutorial posts ingested by 4 tasks, merged,
    /// then range-partitioned on username; compaction times and rows/s, and the latency of a
    /// query filtering on username over each layout.
    Compaction {
        /// How many posts (rows).
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Timed runs of the query.
        #[arg(long, default_value_t = 5)]
        query_runs: usize,
        /// Where to put the data (a fresh temporary directory by default).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The seeds' experiments in one run: the data generator's social posts (events/s), their
    /// ingestion by supervisors with 1, 2 and 4 tasks (rows/s, segments per hour), and the
    /// KSML efficient-processing pipeline in this repository's and the tutorial's form
    /// (messages/s, peak memory); a table, and the figures as JSON.
    Seeds {
        /// How many social posts.
        #[arg(long, default_value_t = 1_000_000)]
        posts: usize,
        /// How many events through each pipeline.
        #[arg(long, default_value_t = 1_000_000)]
        pipeline_events: usize,
        /// Where to write the figures.
        #[arg(long, default_value = "bench-seeds.json")]
        json: PathBuf,
        /// Where to put the data (a fresh temporary directory by default).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The Druid seed's experiment: tutorial social posts ingested by supervisors with each
    /// task count (rows/s until queryable, publish time), then SQL latencies over the rows.
    Druid {
        /// How many events.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Task counts to ingest with, one datasource each.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        tasks: Vec<u32>,
        /// Timed runs of each query.
        #[arg(long, default_value_t = 5)]
        query_runs: usize,
        /// Where to put the data (a fresh temporary directory by default).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Posts in a topic of a Kafka-protocol broker on loopback (tansu, started with the
        /// repository's scripts/kafka-broker), which the specs name, instead of the
        /// embedded log.
        #[arg(long)]
        kafka: bool,
        /// Posts from this JSON-lines file (e.g. written by `millrace datagen --file`), one
        /// per line, instead of generated ones; --events is then the file's line count.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Also write the figures, and each query's answer, to this file as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// Runs a benchmark and prints its figures.
pub fn run(command: BenchCommand) -> Result<(), String> {
    match command {
        BenchCommand::Log {
            records,
            value_size,
            batch,
            data_dir,
            runs,
        } => {
            println!("embedded log, {records} records of {value_size} bytes, {batch} per append");
            let mut appends = Vec::new();
            let mut reads = Vec::new();
            for run in 1..=runs.max(1) {
                let (append, read) =
                    log_bench(records, value_size, batch.max(1), data_dir.clone())?;
                println!(
                    "run {run}: append {} | read {}",
                    rate(records, append),
                    rate(records, read)
                );
                appends.push(append);
                reads.push(read);
            }
            let bytes = (records * value_size) as f64;
            let (append, read) = (median(appends), median(reads));
            println!(
                "median: append {} ({:.0} MB/s) | read {} ({:.0} MB/s)",
                rate(records, append),
                bytes / append / 1e6,
                rate(records, read),
                bytes / read / 1e6
            );
            Ok(())
        }
        BenchCommand::Pipeline {
            events,
            definition,
            predicate,
            mapper,
            data_dir,
            runs,
            kafka,
            input,
            json,
        } => crate::bench_pipeline::run(
            Input::new(events, input),
            &definition,
            (&predicate, &mapper),
            data_dir,
            runs,
            kafka,
            json.as_deref(),
        ),
        BenchCommand::Stateful {
            events,
            keys,
            only,
            optimized_state,
            data_dir,
        } => crate::bench_stateful::run(events, keys, &optimized_state, &only, data_dir),
        BenchCommand::Seeds {
            posts,
            pipeline_events,
            json,
            data_dir,
        } => crate::bench_seeds::run(posts, pipeline_events, &json, data_dir),
        BenchCommand::Compaction {
            rows,
            query_runs,
            data_dir,
        } => crate::bench_compaction::run(rows, query_runs, data_dir),
        BenchCommand::Druid {
            events,
            tasks,
            query_runs,
            data_dir,
            kafka,
            file,
            json,
        } => crate::bench_druid::run(
            Input::new(events, file),
            &tasks,
            query_runs,
            data_dir,
            kafka,
            json.as_deref(),
        ),
    }
}

/// Where a benchmark's records come from.
pub enum Input {
    /// This many generated records.
    Generated(usize),
    /// The non-blank lines of a file (JSON lines, such as `millrace datagen --file` writes).
    File(PathBuf),
}

impl Input {
    /// The file if given, else `count` generated records.
    pub fn new(count: usize, file: Option<PathBuf>) -> Input {
        file.map_or(Input::Generated(count), Input::File)
    }
}

/// The non-blank lines of a file, in order, read as they are taken (a read error names the
/// file).
pub fn lines_of(path: &Path) -> Result<impl Iterator<Item = Result<Bytes, String>>, String> {
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(failed)?;
    Ok(std::io::BufReader::new(file)
        .split(b'\n')
        .map(move |line| line.map_err(failed))
        .filter(|line| {
            line.as_ref()
                .map_or(true, |l| !l.iter().all(u8::is_ascii_whitespace))
        })
        .map(|line| line.map(Bytes::from)))
}

/// A fresh directory for a benchmark's data, removed afterwards unless given.
pub struct BenchDir {
    path: PathBuf,
    remove: bool,
}

impl BenchDir {
    pub fn new(given: Option<PathBuf>, label: &str) -> Result<BenchDir, String> {
        let (path, remove) = match given {
            Some(path) => (path, false),
            None => (
                std::env::temp_dir().join(format!("millrace-bench-{label}-{}", std::process::id())),
                true,
            ),
        };
        if remove {
            let _ = std::fs::remove_dir_all(&path);
        }
        std::fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        Ok(BenchDir { path, remove })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// "N/s (T s)" for `count` items in `seconds`.
pub fn rate(count: usize, seconds: f64) -> String {
    format!("{:.0}/s ({seconds:.3} s)", count as f64 / seconds)
}

/// Timed runs of a query after one warm-up: the median seconds and the last answer.
pub fn time_query(
    runtime: &tokio::runtime::Runtime,
    engine: &SqlEngine,
    query: &str,
    runs: usize,
) -> Result<(f64, QueryOutput), String> {
    let mut timings = Vec::new();
    let mut answer = None;
    for run in 0..=runs.max(1) {
        let started = Instant::now();
        let output = runtime
            .block_on(engine.query(query, vec![]))
            .map_err(|e| format!("{query}: {e}"))?;
        if run > 0 {
            timings.push(started.elapsed().as_secs_f64());
        }
        answer = Some(output);
    }
    Ok((median(timings), answer.expect("at least one run")))
}

/// The first column of an answer's first row as a whole number (a count), if it is one.
pub fn first_number(output: &QueryOutput) -> Option<i64> {
    let batch = output.batches.iter().find(|b| b.num_rows() > 0)?;
    batch
        .column(0)
        .as_primitive_opt::<Int64Type>()
        .map(|c| c.value(0))
}

/// The median of some timings (the upper one of the middle two).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One run: seconds to append, then to read back, `records` records.
fn log_bench(
    records: usize,
    value_size: usize,
    batch: usize,
    data_dir: Option<PathBuf>,
) -> Result<(f64, f64), String> {
    let dir = BenchDir::new(data_dir, "log")?;
    let log =
        EmbeddedLog::open(dir.path(), EmbeddedLogConfig::default()).map_err(|e| e.to_string())?;
    log.create_topic("bench", 1).map_err(|e| e.to_string())?;
    let value = Bytes::from(vec![b'x'; value_size]);
    let template: Vec<Record> = (0..batch)
        .map(|i| Record {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(value.clone()),
            timestamp: 1_700_000_000_000 + i as i64,
            headers: Vec::new(),
        })
        .collect();
    let started = Instant::now();
    let mut written = 0;
    while written < records {
        let n = batch.min(records - written);
        log.append("bench", 0, template[..n].to_vec())
            .map_err(|e| e.to_string())?;
        written += n;
    }
    let append_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut offset = 0u64;
    let mut read = 0usize;
    loop {
        let got = log
            .read("bench", 0, offset, 10_000)
            .map_err(|e| e.to_string())?;
        if got.records.is_empty() {
            break;
        }
        offset = got.next_offset;
        read += got.records.len();
    }
    if read != written {
        return Err(format!("read back {read} of {written} records"));
    }
    Ok((append_seconds, started.elapsed().as_secs_f64()))
}

/// The peak resident memory of this process (VmHWM), in MiB.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Starts peak memory over from the current resident memory (Linux: `clear_refs` 5), so the
/// next [`peak_memory_mib`] covers what follows only.
pub fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

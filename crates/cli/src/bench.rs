//! `millrace bench`: measured figures, printed. Nothing here asserts a timing.

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use clap::Subcommand;
use millrace_log::{EmbeddedLog, EmbeddedLogConfig, Log, Record};

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
        /// The predicate and value transformer the bare loop calls.
        #[arg(long, default_value = "is_interesting_event")]
        predicate: String,
        #[arg(long, default_value = "compute_event_score")]
        mapper: String,
        /// Where to put the log (a fresh temporary directory by default).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

pub fn run(command: BenchCommand) -> Result<(), String> {
    match command {
        BenchCommand::Log {
            records,
            value_size,
            batch,
            data_dir,
        } => log_bench(records, value_size, batch.max(1), data_dir),
        BenchCommand::Pipeline {
            events,
            definition,
            predicate,
            mapper,
            data_dir,
        } => crate::bench_pipeline::run(events, &definition, &predicate, &mapper, data_dir),
    }
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

    pub fn path(&self) -> &std::path::Path {
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

fn rate(count: usize, bytes: usize, seconds: f64) -> String {
    format!(
        "{:>12.0} records/s {:>9.1} MB/s ({count} records in {seconds:.3} s)",
        count as f64 / seconds,
        bytes as f64 / seconds / 1e6
    )
}

fn log_bench(
    records: usize,
    value_size: usize,
    batch: usize,
    data_dir: Option<PathBuf>,
) -> Result<(), String> {
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
    let total_bytes = records * value_size;
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
        let Some(last) = got.last() else { break };
        offset = last.offset + 1;
        read += got.len();
    }
    let read_seconds = started.elapsed().as_secs_f64();
    println!("embedded log, {records} records of {value_size} bytes, {batch} per append");
    println!("append: {}", rate(written, total_bytes, append_seconds));
    println!("read:   {}", rate(read, total_bytes, read_seconds));
    Ok(())
}

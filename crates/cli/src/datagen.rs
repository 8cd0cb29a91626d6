//! `millrace datagen`: runs one data generator job (a learn-druid datagen config) into a
//! topic of the embedded log, a server (`--url`) or Kafka (`--bootstrap-servers`), a file or
//! standard output, with a progress bar on a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use millrace_datagen::jobs::parse_time_limit;
use millrace_datagen::target::now_ms;
use millrace_datagen::{
    Config, FileSink, Limit, LogSink, Pacing, Progress, Settings, Simulation, Sink, StdoutSink,
    builtin,
};

use crate::http::{Client, encode_segment};
use crate::topic;

#[derive(clap::Args)]
pub struct DatagenArgs {
    /// A built-in config (social/social_posts.json, clickstream/clickstream.json,
    /// iot/sensors.json) or a config file.
    #[arg(long)]
    config: String,
    /// Stop after this many events.
    #[arg(long, conflicts_with = "time")]
    total_events: Option<u64>,
    /// Stop when the simulated clock has run this long (15s, 10m, 2h, PT1H).
    #[arg(long)]
    time: Option<String>,
    /// Write to this topic: of the data directory, of a server with --url, or of a Kafka
    /// cluster with --bootstrap-servers.
    #[arg(long, conflicts_with_all = ["file", "stdout"])]
    topic: Option<String>,
    /// Create the topic with this many partitions when it does not exist.
    #[arg(long, requires = "topic")]
    partitions: Option<u32>,
    /// Key records by this field's value (repeatable: the values are concatenated);
    /// key-less records spread over the partitions.
    #[arg(long = "key", value_name = "FIELD", requires = "topic")]
    key_fields: Vec<String>,
    #[command(flatten)]
    log: topic::Target,
    /// Write JSON lines to this file (replaced).
    #[arg(long, conflicts_with = "stdout")]
    file: Option<PathBuf>,
    /// Write JSON lines to standard output.
    #[arg(long)]
    stdout: bool,
    /// Sessions alive at once (each emits its state's records).
    #[arg(long, default_value_t = millrace_datagen::jobs::DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Start the simulated clock at this ISO-8601 time instead of now.
    #[arg(long)]
    start: Option<String>,
    /// Never run ahead of the wall clock: catch up from --start at full speed, then make
    /// records as their time comes.
    #[arg(long)]
    real_time: bool,
    /// Seed of the random choices: the same seed makes the same records.
    #[arg(long)]
    seed: Option<u64>,
}

/// Reads a built-in config by name, or a config file.
fn load_config(name: &str) -> Result<Config, String> {
    let (text, source) = match builtin::find(name) {
        Some(text) => (text.to_string(), name.to_string()),
        None => (
            std::fs::read_to_string(name).map_err(|e| {
                format!(
                    "{name}: {e} (built-in configs: {})",
                    builtin::names().join(", ")
                )
            })?,
            name.to_string(),
        ),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{source}: not JSON: {e}"))?;
    Config::parse(&value).map_err(|e| format!("{source}: {e}"))
}

/// Posts JSON lines to a server's topic in large batches.
struct HttpSink {
    client: Client,
    path: String,
    batch: Vec<u8>,
    lines: usize,
}

/// Lines sent per request.
const LINES_PER_REQUEST: usize = 50_000;

impl Sink for HttpSink {
    fn write(&mut self, record: &[u8]) -> Result<(), String> {
        self.batch.extend_from_slice(record);
        self.batch.push(b'\n');
        self.lines += 1;
        if self.lines >= LINES_PER_REQUEST {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.lines > 0 {
            self.client.post(&self.path, "text/plain", &self.batch)?;
        }
        self.batch.clear();
        self.lines = 0;
        Ok(())
    }
}

impl DatagenArgs {
    fn sink(&self) -> Result<Box<dyn Sink>, String> {
        if let Some(path) = &self.file {
            return Ok(Box::new(FileSink::create(path.clone())?));
        }
        if self.stdout {
            return Ok(Box::new(StdoutSink::default()));
        }
        let Some(topic) = &self.topic else {
            return Err("name where records go: --topic, --file or --stdout".into());
        };
        if let Some(url) = self.log.url() {
            if !self.key_fields.is_empty() {
                return Err("--key works on a data directory or Kafka, not with --url".into());
            }
            let client = Client::new(url)?;
            if let Some(partitions) = self.partitions {
                topic::remote::create(&client, topic, partitions, &Default::default())?;
            }
            return Ok(Box::new(HttpSink {
                client,
                path: format!("/topics/{}", encode_segment(topic)),
                batch: Vec::new(),
                lines: 0,
            }));
        }
        Ok(Box::new(LogSink::open(
            self.log.open()?,
            topic,
            self.partitions,
            self.key_fields.clone(),
        )?))
    }
}

pub fn run(args: DatagenArgs) -> Result<(), String> {
    let config = load_config(&args.config)?;
    let limit = match (args.total_events, &args.time) {
        (Some(events), _) => Limit::Events(events),
        (None, Some(time)) => {
            Limit::Duration(parse_time_limit(time).map_err(|e| format!("--time: {e}"))?)
        }
        (None, None) => Limit::None,
    };
    let start_ms = match &args.start {
        Some(start) => millrace_types::time::parse_iso(start)
            .ok_or_else(|| format!("--start: '{start}' is not an ISO-8601 time"))?,
        None => now_ms(),
    };
    let settings = Settings {
        start_ms,
        concurrency: args.concurrency,
        limit,
        seed: args.seed.unwrap_or_else(|| now_ms() as u64),
    };
    let mut simulation =
        Simulation::new(config, settings).map_err(|e| format!("{}: {e}", args.config))?;
    let mut sink = args.sink()?;
    let pacing = if args.real_time {
        Pacing::WallClock
    } else {
        Pacing::Simulated
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))
            .map_err(|e| format!("cannot take Ctrl-C: {e}"))?;
    }
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let result = std::thread::scope(|scope| {
        let worker = {
            let (progress, stop) = (progress.clone(), stop.clone());
            scope.spawn(move || {
                millrace_datagen::run::run(&mut simulation, sink.as_mut(), pacing, &progress, &stop)
            })
        };
        show_progress(&progress, args.total_events, || worker.is_finished());
        worker
            .join()
            .unwrap_or_else(|_| Err("the generator panicked".into()))
    });
    let made = progress.records.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{made} events in {seconds:.2} s ({:.0} events/s){}",
        made as f64 / seconds.max(1e-9),
        if stop.load(Ordering::Relaxed) {
            ", stopped"
        } else {
            ""
        }
    );
    result
}

/// Draws a progress bar (events, events/s, ETA) on a terminal until `done`; prints nothing
/// when standard error is not a terminal.
fn show_progress(progress: &Progress, total: Option<u64>, done: impl Fn() -> bool) {
    let terminal = std::io::stderr().is_terminal();
    let bar = match total {
        Some(total) if terminal => indicatif::ProgressBar::new(total),
        _ if terminal => indicatif::ProgressBar::new_spinner(),
        _ => indicatif::ProgressBar::hidden(),
    };
    let template = if total.is_some() {
        "{bar:40} {pos}/{len} events, {per_sec}, ETA {eta}"
    } else {
        "{spinner} {pos} events, {per_sec}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    while !done() {
        bar.set_position(progress.records.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.set_position(progress.records.load(Ordering::Relaxed));
    bar.finish_and_clear();
}

//! The `millrace` command line: argument parsing and wiring of the crates below.

mod bench;
mod bench_compaction;
mod bench_druid;
mod bench_pipeline;
mod bench_seeds;
mod bench_stateful;
mod datagen;
mod definitions;
mod hosted;
mod http;
mod segments;
mod serve;
mod sql;
mod suites;
mod topic;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};
use millrace_kafka::{KafkaLog, KafkaSettings};
use millrace_ksml::config::RunnerConfig;
use millrace_log::{EmbeddedLog, EmbeddedLogConfig, Log};
use millrace_stream::runner::{RunOptions, run};

/// Large buffers (segments' columns during compaction and queries) are freed and allocated
/// again in quick succession; the system allocator returns each one to the kernel, which
/// zeroes fresh pages every time. mimalloc keeps them for reuse.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option: its position in `mi_option_t` (mimalloc.h of mimalloc 3,
/// which the mimalloc crate builds and links).
const MIMALLOC_PURGE_DELAY: std::ffi::c_int = 15;

unsafe extern "C" {
    /// Sets one of mimalloc's options (`mi_option_set` in mimalloc.h).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// How long mimalloc keeps freed memory for reuse before giving it back to the kernel: 100 ms
/// rather than mimalloc's 1 s. An ingestion task frees a persisted batch of rows (tens of MiB)
/// at a time, and with four tasks up to a second's worth of such batches stayed resident:
/// ingesting 3M posts with 4 tasks peaked at 477 - 579 MiB, against 429 - 444 MiB at 100 ms
/// with the same ingestion and publish times. At 0 (purge at once) the peak was 349 - 369 MiB
/// but publishing took 1.7x as long (fresh pages zeroed again for every slice). The
/// `MIMALLOC_PURGE_DELAY` environment variable (or its older name `MIMALLOC_RESET_DELAY`)
/// still decides when set.
fn tune_allocator() {
    let chosen = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    if !chosen {
        // SAFETY: called first in main, before other threads exist (mimalloc's option setter
        // is not thread safe); the option only changes when freed memory is purged.
        unsafe { mi_option_set(MIMALLOC_PURGE_DELAY, 100) };
    }
}

#[derive(Parser)]
#[command(
    name = "millrace",
    version,
    about = "KSML stream processing and Druid-compatible real-time ingestion and SQL, on an embedded log",
    long_about = "millrace runs KSML definition files (streams, functions in Python, pipelines, producers) \
with the semantics of the KSML runner, on an embedded crash-safe log in a data directory. \
`millrace serve` hosts that log with Druid's Kafka supervisors, segments and SQL behind Druid's HTTP API, \
and can run KSML definitions and the data generator next to them."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the embedded log lives.
#[derive(clap::Args, Clone)]
struct DataDir {
    /// Data directory of the embedded log (one process owns it at a time).
    #[arg(long, env = "MILLRACE_DATA_DIR", default_value = "./millrace-data")]
    data_dir: PathBuf,
}

impl DataDir {
    fn open(&self) -> Result<Arc<dyn Log>, String> {
        self.open_with(EmbeddedLogConfig::default())
    }

    fn open_with(&self, config: EmbeddedLogConfig) -> Result<Arc<dyn Log>, String> {
        EmbeddedLog::open(&self.data_dir, config)
            .map(|log| Arc::new(log) as Arc<dyn Log>)
            .map_err(|e| e.to_string())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run KSML definitions: producers and pipelines, on the embedded log of DATA_DIR, or on
    /// the Kafka cluster the config's `bootstrap.servers` names (at least once, or exactly once
    /// on Kafka transactions with processing.guarantee exactly_once_v2). Persistent
    /// state stores live in DATA_DIR/state/<application.id> (or the `state.dir` property);
    /// stores with changelogs are restored from them at start.
    Run {
        /// A KSML runner config (ksml-runner.yaml): `kafka:` or `runner: {type: streams,
        /// config:}` properties (with `bootstrap.servers`: run on that Kafka cluster), and
        /// ksml.definitions.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
        /// Stop once every producer has finished and every input is drained.
        #[arg(long)]
        until_idle: bool,
        /// Definition files (namespace: the file name without extension).
        definitions: Vec<PathBuf>,
    },
    /// Run KSML test-runner suites: each test produces its messages to a fresh embedded log,
    /// runs the suite's definition until idle, then runs its assertions' Python code with
    /// `records` and the stores they name. Exit code 0 when every test passes.
    Test {
        /// Suite files.
        suites: Vec<PathBuf>,
    },
    /// Validate KSML definitions; problems print as file:line:col: message, exit code 1.
    Check {
        /// Treat warnings (unknown keys) as errors.
        #[arg(long)]
        strict: bool,
        /// A KSML runner config whose definitions to check too.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Definition files.
        definitions: Vec<PathBuf>,
    },
    /// Serve the data directory: the log, Druid supervisors and tasks, segments, and Druid's
    /// HTTP API (supervisors, tasks, coordinator, SQL, native queries), plus topics, the data
    /// generator's API, KSML definitions (--definitions) and Prometheus metrics over HTTP.
    Serve(serve::ServeArgs),
    /// Generate events from a learn-druid datagen config (built-in or a file) into a topic,
    /// a file or standard output.
    Datagen(datagen::DatagenArgs),
    /// Run Druid SQL on a server.
    Sql {
        /// The server, e.g. http://127.0.0.1:8888; http://USER:PASSWORD@HOST:PORT signs in
        /// (or http://USER@HOST:PORT with the password in MILLRACE_PASSWORD).
        #[arg(long, env = "MILLRACE_URL", default_value = "http://127.0.0.1:8888")]
        url: String,
        /// How to print rows.
        #[arg(long, value_enum, default_value = "table")]
        format: sql::SqlFormat,
        /// The query.
        query: String,
    },
    /// List a datasource's published segments: interval, version, shard spec with the range
    /// or hash bucket it holds, rows and size.
    Segments {
        /// The server, e.g. http://127.0.0.1:8888 (as for `sql`).
        #[arg(long, env = "MILLRACE_URL", default_value = "http://127.0.0.1:8888")]
        url: String,
        /// The datasource.
        datasource: String,
    },
    /// List, create, delete, produce to and consume from topics of the embedded log, of a
    /// server with --url, or of a Kafka cluster with --bootstrap-servers.
    Topic {
        #[command(subcommand)]
        command: topic::TopicCommand,
    },
    /// Add, remove and list the users of the server's HTTP basic authentication.
    User {
        #[command(subcommand)]
        command: user::UserCommand,
    },
    /// Print throughput and latency figures: the log, the KSML runtime, Druid ingestion and SQL.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

/// Logs at info by default; the persistent store engine (fjall, lsm_tree) only from warn,
/// since its info lines describe routine housekeeping.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MILLRACE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    tune_allocator();
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            data,
            until_idle,
            definitions,
        } => run_command(config, data, until_idle, definitions),
        Command::Check {
            strict,
            config,
            definitions,
        } => definitions::load(config.as_deref(), &definitions, strict).map(|_| {
            eprintln!("definitions are valid");
        }),
        Command::Test { suites } => suites::run(&suites),
        Command::Serve(args) => serve::run(args),
        Command::Datagen(args) => datagen::run(args),
        Command::Sql { url, format, query } => sql::run(&url, &query, format),
        Command::Segments { url, datasource } => segments::run(&url, &datasource),
        Command::Topic { command } => topic::run(command),
        Command::User { command } => user::run(command),
        Command::Bench { command } => bench::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) if message.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The Kafka cluster a runner config names: its client properties go to librdkafka (those
/// librdkafka does not know, Java client settings, are named in a warning), and
/// `num.partitions` and `auto.create.topics.enable` say how missing topics are made.
/// Exactly-once runs on Kafka transactions, with a transactional id of this process
/// (`<application.id>-<pid>-<start time>`): the group's generation, sent with the offsets,
/// fences a process that lost its partitions.
fn connect_kafka(config: &RunnerConfig) -> Result<Arc<dyn Log>, String> {
    let mut settings = KafkaSettings::from_given(config.client_properties())?;
    if config.exactly_once() {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        settings.transactional_id = Some(format!(
            "{}-{}-{started:x}",
            config.application_id(),
            std::process::id()
        ));
    }
    // The broker properties that say how missing topics are made are read as the embedded
    // log reads them.
    let topics = EmbeddedLogConfig::default()
        .with_properties(config.kafka.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    settings.default_partitions = topics.default_partitions;
    settings.create_missing_topics = topics.create_missing_topics;
    KafkaLog::open(settings)
}

fn run_command(
    config: Option<PathBuf>,
    data: DataDir,
    until_idle: bool,
    definitions: Vec<PathBuf>,
) -> Result<(), String> {
    let (runner_config, loaded) = definitions::load(config.as_deref(), &definitions, false)?;
    let log = match runner_config.bootstrap_servers() {
        Some(_) => connect_kafka(&runner_config)?,
        None => {
            let inapplicable = runner_config.inapplicable_properties();
            if !inapplicable.is_empty() {
                tracing::warn!(
                    "properties not applicable on the embedded log, so not acted on: {}",
                    inapplicable.join(", ")
                );
            }
            // Broker properties in the config's kafka: section (num.partitions,
            // log.retention.*, ...) configure the embedded log.
            let log_config = EmbeddedLogConfig::default().with_properties(
                runner_config
                    .kafka
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )?;
            data.open_with(log_config)?
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
    }
    let mut options = RunOptions::new(until_idle, stop);
    options.state_dir = Some(match runner_config.kafka.get("state.dir") {
        Some(dir) => PathBuf::from(dir),
        None => data.data_dir.join("state"),
    });
    let summary = run(log, &loaded, runner_config, options).map_err(|e| e.to_string())?;
    eprintln!(
        "pipelines processed {} records and wrote {}, producers sent {} messages, in {:.2}s",
        summary.records_processed,
        summary.records_written,
        summary.messages_produced,
        summary.elapsed.as_secs_f64()
    );
    if summary.late_records_dropped > 0 {
        eprintln!(
            "windowed operations dropped {} late record(s): they arrived after their window closed (window end plus grace)",
            summary.late_records_dropped
        );
    }
    Ok(())
}

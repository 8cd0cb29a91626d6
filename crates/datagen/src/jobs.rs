//! Generator jobs as learn-druid's datagen server runs them: a request (`POST /start`) names
//! a config, a target and a limit; jobs run on their own threads; `status`, `stop`, `jobs`
//! and `list` answer with the same JSON shapes. Errors are messages for a 400 answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use serde_json::{Value, json};

use crate::builtin;
use crate::config::Config;
use crate::fields::{ConfigError, Fields, error};
use crate::run::{Pacing, Progress, run};
use crate::simulation::{Limit, Settings, Simulation};
use crate::target::{Sink, Target, now_ms};

/// Sessions at once when a request does not say.
pub const DEFAULT_CONCURRENCY: usize = 100;

/// A checked job request.
pub struct JobRequest {
    pub name: String,
    /// The built-in config's name, or `__custom__` for a config given inline.
    pub config_file: String,
    pub config: Config,
    pub target: Target,
    pub settings: Settings,
    pub pacing: Pacing,
}

impl JobRequest {
    /// Reads a `POST /start` body: `name`, `target`, `config_file` or `config`,
    /// `total_events` or `time`, `concurrency`, `time_type` (`SIM`, `REAL` or a start time)
    /// and `seed`.
    pub fn parse(body: &Value) -> Result<JobRequest, ConfigError> {
        let fields = Fields::of(body, "")?;
        let (config_file, config) =
            match (fields.optional_string("config_file")?, fields.get("config")) {
                (Some(name), _) => {
                    let text = builtin::find(name).ok_or_else(|| {
                        fields.error(
                            "config_file",
                            format!("no built-in config is named '{name}' (GET /list names them)"),
                        )
                    })?;
                    let value: Value =
                        serde_json::from_str(text).expect("built-in configs are JSON");
                    (
                        name.to_string(),
                        Config::parse(&value).map_err(|e| within("config_file", e))?,
                    )
                }
                (None, Some(inline)) => (
                    "__custom__".to_string(),
                    Config::parse(inline).map_err(|e| within("config", e))?,
                ),
                (None, None) => {
                    return Err(error(
                        "config_file",
                        "a request needs \"config_file\" or \"config\"",
                    ));
                }
            };
        let limit = match (
            fields.optional_count("total_events")?,
            fields.optional_string("time")?,
        ) {
            (Some(_), Some(_)) => {
                return Err(error(
                    "time",
                    "use either \"time\" or \"total_events\", not both",
                ));
            }
            (Some(events), None) => Limit::Events(events),
            (None, Some(time)) => {
                Limit::Duration(parse_time_limit(time).map_err(|e| fields.error("time", e))?)
            }
            (None, None) => Limit::None,
        };
        let concurrency = fields
            .optional_count("concurrency")?
            .map_or(DEFAULT_CONCURRENCY, |c| c as usize);
        if concurrency == 0 {
            return Err(fields.error("concurrency", "must be at least 1"));
        }
        let now = now_ms();
        let (start_ms, pacing) = match fields.optional_string("time_type")? {
            None => (now, Pacing::Simulated),
            Some(kind) if kind.eq_ignore_ascii_case("SIM") => (now, Pacing::Simulated),
            Some(kind) if kind.eq_ignore_ascii_case("REAL") => (now, Pacing::WallClock),
            Some(start) => (
                millrace_types::time::parse_iso(start).ok_or_else(|| {
                    fields.error(
                        "time_type",
                        format!("'{start}' is not SIM, REAL or an ISO-8601 start time"),
                    )
                })?,
                Pacing::WallClock,
            ),
        };
        let seed = match fields.get("seed") {
            Some(seed) => seed
                .as_u64()
                .ok_or_else(|| fields.error("seed", "expected a whole number"))?,
            None => now as u64 ^ u64::from(std::process::id()).rotate_left(32),
        };
        Ok(JobRequest {
            name: fields.string("name")?.to_string(),
            config_file,
            config,
            target: Target::parse(fields.required("target")?, "target")?,
            settings: Settings {
                start_ms,
                concurrency,
                limit,
                seed,
            },
            pacing,
        })
    }
}

/// A config error's path under the request field that held the config.
fn within(field: &str, mut e: ConfigError) -> ConfigError {
    e.path = if e.path.is_empty() {
        field.to_string()
    } else {
        format!("{field}.{}", e.path)
    };
    e
}

/// A job's `time` limit (`15s`, `10m`, `5h`, `PT1H`) in milliseconds.
pub fn parse_time_limit(text: &str) -> Result<i64, String> {
    let text = if text.starts_with(['P', 'p']) {
        text.to_string()
    } else {
        text.to_ascii_lowercase()
    };
    if text.trim().parse::<u64>().is_ok() {
        return Err(format!("'{text}' has no unit (s, m, h or d)"));
    }
    millrace_types::duration::parse_duration(&text).map(|d| d.as_millis() as i64)
}

/// Opens a target's sink; the host decides what `log` and `kafka` targets reach.
pub type Connect = dyn Fn(&Target) -> Result<Box<dyn Sink>, String> + Send + Sync;

struct Job {
    /// Where its records go.
    target_spec: Target,
    config_file: String,
    target: Value,
    start_ms: i64,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    /// Set when the job ended: Ok when its limit was reached or it was stopped.
    outcome: Arc<Mutex<Option<Result<(), String>>>>,
    thread: Option<JoinHandle<()>>,
}

impl Job {
    fn outcome(&self) -> Option<Result<(), String>> {
        self.outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn report(&self, name: &str) -> Value {
        let clock = self
            .progress
            .clock_ms
            .load(Ordering::Relaxed)
            .max(self.start_ms);
        let (status, message) = match self.outcome() {
            None => (
                "RUNNING",
                format!("Running, Sim Clock: {}", civil(clock, true)),
            ),
            Some(Ok(())) => (
                "COMPLETE",
                format!("Complete, Sim Clock: {}", civil(clock, true)),
            ),
            Some(Err(e)) => ("FAILED", format!("Failed: {e}")),
        };
        json!({
            "name": name,
            "config_file": self.config_file,
            "target": self.target,
            "active_sessions": self.progress.active_sessions.load(Ordering::Relaxed),
            "total_records": self.progress.records.load(Ordering::Relaxed),
            "start_time": civil(self.start_ms, false),
            "run_time": (clock - self.start_ms) as f64 / 1000.0,
            "status": status,
            "status_msg": message,
        })
    }

    /// Stops the job and waits until what it made is flushed.
    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `2024-05-01 10:00:00` (with `.123000` when `fraction`), as learn-druid's reports show
/// times.
fn civil(millis: i64, fraction: bool) -> String {
    const DAY: i64 = 86_400_000;
    let (year, month, day) = millrace_types::time::civil_from_days(millis.div_euclid(DAY));
    let ms = millis.rem_euclid(DAY);
    let clock = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60
    );
    if fraction {
        format!("{clock}.{:06}", ms % 1000 * 1000)
    } else {
        clock
    }
}

/// The jobs of a server.
pub struct Jobs {
    jobs: Mutex<BTreeMap<String, Job>>,
    connect: Box<Connect>,
}

const NOT_RUNNING: &str = "Data generation is NOT running.";

impl Jobs {
    pub fn new(connect: Box<Connect>) -> Jobs {
        Jobs {
            jobs: Mutex::new(BTreeMap::new()),
            connect,
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Job>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `POST /start`: starts a job; a finished job of the same name is replaced, a running
    /// one is an error.
    pub fn start(&self, body: &[u8]) -> Result<Value, String> {
        let request: Value =
            serde_json::from_slice(body).map_err(|e| format!("The request is not JSON: {e}"))?;
        let Some(name) = request.get("name").and_then(Value::as_str) else {
            return Err("ERROR job must have a \"name\" property.".to_string());
        };
        let failed = |e: String| format!("ERROR starting data generator job: {e}");
        let parsed = JobRequest::parse(&request).map_err(|e| failed(e.to_string()))?;
        // A running job of that name, or one writing the same file (lines of two jobs would
        // interleave, and opening the file empties it), refuses the request.
        let refusal = |jobs: &BTreeMap<String, Job>| -> Option<String> {
            if jobs.get(name).is_some_and(|job| job.outcome().is_none()) {
                return Some(format!(
                    "A Job with name [{name}] is already running. Use /stop/{name} to cancel it and try again."
                ));
            }
            let Target::File { path } = &parsed.target else {
                return None;
            };
            jobs.iter()
                .find(|(_, job)| {
                    job.outcome().is_none()
                        && matches!(&job.target_spec, Target::File { path: p } if p.file_name() == path.file_name())
                })
                .map(|(other, _)| failed(format!("job [{other}] is writing the file {}", path.display())))
        };
        if let Some(refused) = refusal(&self.jobs()) {
            return Err(refused);
        }
        // Connecting (a Kafka cluster may be slow to answer) and drawing the fixed value sets
        // happen without the jobs' lock, so status requests are answered meanwhile.
        let mut sink = (self.connect)(&parsed.target).map_err(failed)?;
        let mut simulation = Simulation::new(parsed.config.clone(), parsed.settings)
            .map_err(|e| failed(e.to_string()))?;
        let mut jobs = self.jobs();
        if let Some(refused) = refusal(&jobs) {
            return Err(refused);
        }
        if let Some(old) = jobs.remove(name) {
            old.finish();
        }
        let progress = Arc::new(Progress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let outcome = Arc::new(Mutex::new(None));
        let thread = {
            let (progress, stop, outcome) = (progress.clone(), stop.clone(), outcome.clone());
            let name = name.to_string();
            std::thread::Builder::new()
                .name(format!("datagen-{name}"))
                .spawn(move || {
                    let result = run(
                        &mut simulation,
                        sink.as_mut(),
                        parsed.pacing,
                        &progress,
                        &stop,
                    );
                    if let Err(e) = &result {
                        tracing::warn!("data generator job {name} failed: {e}");
                    }
                    *outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
                })
                .map_err(|e| failed(e.to_string()))?
        };
        jobs.insert(
            name.to_string(),
            Job {
                target_spec: parsed.target.clone(),
                config_file: parsed.config_file,
                target: request.get("target").cloned().unwrap_or(Value::Null),
                start_ms: parsed.settings.start_ms,
                progress,
                stop,
                outcome,
                thread: Some(thread),
            },
        );
        Ok(json!({"message": "Starting generator for request.", "request": request}))
    }

    /// `GET /status/{name}`.
    pub fn status(&self, name: &str) -> Result<Value, String> {
        let jobs = self.jobs();
        if jobs.is_empty() {
            return Ok(json!({"message": NOT_RUNNING}));
        }
        jobs.get(name)
            .map(|job| job.report(name))
            .ok_or_else(|| format!("Job [{name}] not found"))
    }

    /// `POST /stop/{name}`: stops the job, keeping every record it made, and forgets it.
    pub fn stop(&self, name: &str) -> Result<Value, String> {
        let job = self
            .jobs()
            .remove(name)
            .ok_or_else(|| format!("Job [{name}] not found."))?;
        job.finish();
        Ok(json!({"message": format!("Job [{name}] stopped successfully.")}))
    }

    /// `GET /jobs`: every job's report.
    pub fn reports(&self) -> Value {
        let jobs = self.jobs();
        if jobs.is_empty() {
            return json!({"message": NOT_RUNNING});
        }
        Value::Array(jobs.iter().map(|(name, job)| job.report(name)).collect())
    }

    /// `GET /list`: the built-in configs' names.
    pub fn list(&self) -> Value {
        json!(builtin::names())
    }

    /// Stops every job (at server shutdown), keeping what they made.
    pub fn stop_all(&self) {
        let jobs = std::mem::take(&mut *self.jobs());
        for job in jobs.into_values() {
            job.finish();
        }
    }
}

//! KSML definitions run inside `millrace serve`, next to supervisors and on the same log:
//! each definition file is its own application (`<application.id>-<namespace>`), so it can be
//! started and stopped on its own over HTTP. A file that fails to load is reported, and the
//! server and the other definitions go on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use millrace_ksml::config::{DefinitionSource, RunnerConfig};
use millrace_ksml::diagnostics::Severity;
use millrace_ksml::load::load_definitions;
use millrace_ksml::model::Definition;
use millrace_log::Log;
use millrace_segments::time::format_iso;
use millrace_server::definitions_api::{DefinitionHost, HostError};
use millrace_stream::runner::{RunCounters, RunError, RunOptions, RunSummary, run};
use serde_json::{Value, json};

/// One definition file and what became of its last run.
struct Unit {
    source: DefinitionSource,
    /// The definition's file (for an inline definition, the runner config's).
    file: PathBuf,
    /// The run in progress, if any.
    running: Option<Running>,
    /// How the last run ended, or why the file could not run.
    last: Outcome,
    /// The counters of the current or last run.
    counters: Arc<RunCounters>,
    pipelines: usize,
    producers: usize,
    /// The topics of the definition: lag is counted on those its group committed.
    topics: Vec<String>,
    /// A stop was asked for and the run has not ended yet: it may not start again meanwhile.
    stopping: bool,
}

enum Outcome {
    NotRun,
    Stopped,
    Failed(String),
    /// The file did not load; the diagnostics say where and why.
    Invalid(String),
}

struct Running {
    stop: Arc<AtomicBool>,
    started_ms: i64,
    thread: JoinHandle<Result<RunSummary, RunError>>,
}

/// The definitions a server runs.
pub struct Hosted {
    log: Arc<dyn Log>,
    config: RunnerConfig,
    state_dir: PathBuf,
    units: Mutex<BTreeMap<String, Unit>>,
}

impl Hosted {
    /// Hosts the config's definitions on `log`; none runs until started.
    pub fn new(log: Arc<dyn Log>, config: RunnerConfig, state_dir: PathBuf) -> Hosted {
        let units = config
            .definitions
            .iter()
            .map(|(namespace, source)| {
                let file = match source {
                    DefinitionSource::File(file) | DefinitionSource::Inline { file, .. } => {
                        file.clone()
                    }
                };
                let unit = Unit {
                    source: source.clone(),
                    file,
                    running: None,
                    last: Outcome::NotRun,
                    counters: Arc::default(),
                    pipelines: 0,
                    producers: 0,
                    topics: Vec::new(),
                    stopping: false,
                };
                (namespace.clone(), unit)
            })
            .collect();
        Hosted {
            log,
            config,
            state_dir,
            units: Mutex::new(units),
        }
    }

    fn units(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Unit>> {
        self.units.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The application id a definition runs under.
    fn application_id(&self, namespace: &str) -> String {
        format!("{}-{namespace}", self.config.application_id())
    }

    /// Loads a definition afresh (so a fixed file starts without a server restart).
    fn load(&self, namespace: &str, unit: &Unit) -> Result<Definition, String> {
        let loaded = load_definitions(&[(namespace.to_string(), unit.source.clone())], false);
        let problems: Vec<String> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        for warning in &loaded.diagnostics {
            tracing::warn!("{warning}");
        }
        loaded
            .definitions
            .into_iter()
            .next()
            .ok_or_else(|| format!("{}: nothing to run", unit.file.display()))
    }

    /// Notes runs that ended by themselves (failed, or finished their producers and input).
    fn reap(unit: &mut Unit) {
        if !unit
            .running
            .as_ref()
            .is_some_and(|r| r.thread.is_finished())
        {
            return;
        }
        if let Some(running) = unit.running.take() {
            unit.last = Self::outcome(running);
        }
    }

    fn outcome(running: Running) -> Outcome {
        match running.thread.join() {
            Ok(Ok(_)) => Outcome::Stopped,
            Ok(Err(e)) => Outcome::Failed(e.to_string()),
            Err(_) => Outcome::Failed("the run panicked".into()),
        }
    }

    fn describe(&self, namespace: &str, unit: &Unit) -> Value {
        let (state, error) = match (&unit.running, &unit.last) {
            (None, _) if unit.stopping => ("STOPPING", None),
            (Some(_), _) => ("RUNNING", None),
            (None, Outcome::NotRun | Outcome::Stopped) => ("STOPPED", None),
            (None, Outcome::Failed(e)) => ("FAILED", Some(e.clone())),
            (None, Outcome::Invalid(e)) => ("INVALID", Some(e.clone())),
        };
        let counters = &unit.counters;
        json!({
            "name": namespace,
            "file": unit.file.display().to_string(),
            "applicationId": self.application_id(namespace),
            "state": state,
            "error": error,
            "startedAt": unit.running.as_ref().map(|r| format_iso(r.started_ms)),
            "pipelines": unit.pipelines,
            "producers": unit.producers,
            "metrics": {
                "recordsIn": counters.processed.load(Ordering::Relaxed),
                "recordsOut": counters.written.load(Ordering::Relaxed),
                "messagesProduced": counters.produced.load(Ordering::Relaxed),
                "lateRecordsDropped": counters.late.load(Ordering::Relaxed),
                "recordsFailed": counters.failed.load(Ordering::Relaxed),
                "lag": self.lag(namespace, unit),
                "storeEntries": counters.store_sizes(),
                "pythonBusySeconds": counters.python.get().map(|watch| {
                    watch
                        .busy_seconds()
                        .into_iter()
                        .map(|(function, seconds)| json!({"function": function, "seconds": seconds}))
                        .collect::<Vec<_>>()
                }),
            },
        })
    }

    /// Records not yet processed: the end of each partition the group committed for, minus
    /// its committed offset.
    fn lag(&self, namespace: &str, unit: &Unit) -> u64 {
        let group = self.application_id(namespace);
        let mut lag = 0;
        for topic in &unit.topics {
            let partitions = self.log.partition_count(topic).ok().flatten().unwrap_or(0);
            for partition in 0..partitions {
                let committed = self.log.committed(&group, topic, partition).ok().flatten();
                let end = self.log.offset_range(topic, partition).map(|(_, end)| end);
                if let (Some(committed), Ok(end)) = (committed, end) {
                    lag += end.saturating_sub(committed);
                }
            }
        }
        lag
    }

    fn start_unit(&self, namespace: &str, unit: &mut Unit) -> Result<(), String> {
        let definition = match self.load(namespace, unit) {
            Ok(definition) => definition,
            Err(problems) => {
                tracing::error!("definition {namespace} cannot run:\n{problems}");
                unit.last = Outcome::Invalid(problems.clone());
                return Err(problems);
            }
        };
        unit.pipelines = definition.pipelines.len();
        unit.producers = definition.producers.len();
        unit.topics = definition
            .topics
            .values()
            .map(|t| t.topic.clone())
            .collect();
        let mut config = self.config.clone();
        config
            .kafka
            .insert("application.id".into(), self.application_id(namespace));
        let stop = Arc::new(AtomicBool::new(false));
        let mut options = RunOptions::new(false, stop.clone());
        options.state_dir = Some(self.state_dir.clone());
        unit.counters = options.counters.clone();
        let log = self.log.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ksml-{namespace}"))
            .spawn(move || {
                let result = run(log, &[definition], config, options);
                if let Err(e) = &result {
                    tracing::error!("definition stopped: {e}");
                }
                result
            })
            .map_err(|e| e.to_string())?;
        unit.running = Some(Running {
            stop,
            started_ms: millrace_datagen::target::now_ms(),
            thread,
        });
        Ok(())
    }

    /// Starts every definition; those that fail to load are reported and left out.
    pub fn start_all(&self) {
        let mut units = self.units();
        for (namespace, unit) in units.iter_mut() {
            if let Err(problems) = self.start_unit(namespace, unit) {
                eprintln!("{problems}");
            }
        }
    }
}

impl DefinitionHost for Hosted {
    fn list(&self) -> Vec<Value> {
        let mut units = self.units();
        units
            .iter_mut()
            .map(|(namespace, unit)| {
                Self::reap(unit);
                self.describe(namespace, unit)
            })
            .collect()
    }

    fn get(&self, name: &str) -> Option<Value> {
        let mut units = self.units();
        let unit = units.get_mut(name)?;
        Self::reap(unit);
        Some(self.describe(name, unit))
    }

    fn start(&self, name: &str) -> Result<Value, HostError> {
        let mut units = self.units();
        let unit = units
            .get_mut(name)
            .ok_or_else(|| HostError::NotFound(format!("no definition is named '{name}'")))?;
        Self::reap(unit);
        if unit.running.is_some() || unit.stopping {
            return Err(HostError::Invalid(format!(
                "definition '{name}' is running or stopping"
            )));
        }
        self.start_unit(name, unit).map_err(HostError::Invalid)?;
        Ok(self.describe(name, unit))
    }

    /// Stops a run and waits for it without holding the definitions' lock, so that listing
    /// and metrics go on meanwhile.
    fn stop(&self, name: &str) -> Result<Value, HostError> {
        let running = {
            let mut units = self.units();
            let unit = units
                .get_mut(name)
                .ok_or_else(|| HostError::NotFound(format!("no definition is named '{name}'")))?;
            let running = unit.running.take();
            if let Some(running) = &running {
                running.stop.store(true, Ordering::SeqCst);
                unit.stopping = true;
            }
            running
        };
        let outcome = running.map(Self::outcome);
        let mut units = self.units();
        let unit = units
            .get_mut(name)
            .ok_or_else(|| HostError::NotFound(format!("no definition is named '{name}'")))?;
        if let Some(outcome) = outcome {
            unit.last = outcome;
            unit.stopping = false;
        }
        Ok(self.describe(name, unit))
    }

    fn shutdown(&self) {
        let mut units = self.units();
        for unit in units.values_mut() {
            if let Some(running) = &unit.running {
                running.stop.store(true, Ordering::SeqCst);
            }
        }
        for unit in units.values_mut() {
            if let Some(running) = unit.running.take() {
                unit.last = Self::outcome(running);
            }
        }
    }
}

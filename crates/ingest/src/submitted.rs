//! Tasks submitted through Druid's indexer API (`POST /druid/indexer/v1/task`) rather than
//! run by a supervisor: their spec is read here and they run here (kill at once, compaction on
//! its own thread), so that the HTTP layer only hands the spec over.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use millrace_catalog::{TaskKind, TaskRecord, TaskStatus};
use millrace_segments::spec::SpecError;
use millrace_segments::time::{format_iso, parse_interval};
use serde_json::{Value, json};

use crate::compact::spec::{CompactionSpec, InputSpec};
use crate::compact::{self, CompactionReport};
use crate::{Context, IngestError, Ingestion, now_millis};

/// A submitted task, read from its spec.
#[derive(Debug, Clone)]
pub enum SubmittedTask {
    /// Delete a datasource's unused segments within an interval, with their files.
    Kill {
        datasource: String,
        interval: (i64, i64),
    },
    /// Rewrite the segments of an interval.
    Compact(Box<CompactionSpec>),
}

fn refused(path: &str, message: impl Into<String>) -> IngestError {
    IngestError::Spec(SpecError {
        path: path.to_string(),
        message: message.into(),
    })
}

impl SubmittedTask {
    /// Reads a task spec (Druid's JSON); a task this server cannot run, or a field it needs
    /// missing or wrong, is an error naming the field.
    pub fn parse(spec: &Value) -> Result<SubmittedTask, IngestError> {
        let kind = spec.get("type").and_then(Value::as_str).unwrap_or_default();
        match TaskKind::parse(kind) {
            Some(TaskKind::Kill) => {}
            Some(TaskKind::Compact) => {
                return Ok(SubmittedTask::Compact(Box::new(
                    CompactionSpec::from_json(spec).map_err(IngestError::Spec)?,
                )));
            }
            _ => {
                return Err(refused(
                    "type",
                    format!("task type '{kind}' is not supported yet (kill and compact are)"),
                ));
            }
        }
        let datasource = spec
            .get("dataSource")
            .and_then(Value::as_str)
            .ok_or_else(|| refused("dataSource", "is missing"))?
            .to_string();
        let interval = spec
            .get("interval")
            .and_then(Value::as_str)
            .and_then(parse_interval)
            .ok_or_else(|| refused("interval", "must be an ISO interval start/end"))?;
        Ok(SubmittedTask::Kill {
            datasource,
            interval,
        })
    }
}

/// A compaction running on its own thread.
pub(crate) struct RunningCompaction {
    datasource: String,
    /// The interval it compacts (when given as one).
    interval: Option<(i64, i64)>,
    cancel: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The compactions started, by task id (finished ones are let go at the next start).
#[derive(Default)]
pub(crate) struct Compactions(std::sync::Mutex<BTreeMap<String, RunningCompaction>>);

impl Compactions {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RunningCompaction>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks a running compaction to stop; false when none has that id.
    pub(crate) fn cancel(&self, id: &str) -> bool {
        self.lock()
            .get(id)
            .filter(|c| !c.thread.is_finished())
            .map(|c| c.cancel.store(true, Ordering::SeqCst))
            .is_some()
    }

    /// How many are running.
    pub(crate) fn running(&self) -> usize {
        self.lock()
            .values()
            .filter(|c| !c.thread.is_finished())
            .count()
    }

    /// Whether a running compaction of the datasource works on time overlapping `interval`
    /// (one compacting given segments counts as overlapping everything).
    pub(crate) fn is_working_on(&self, datasource: &str, interval: (i64, i64)) -> bool {
        self.lock().values().any(|c| {
            !c.thread.is_finished()
                && c.datasource == datasource
                && c.interval
                    .is_none_or(|(start, end)| start < interval.1 && interval.0 < end)
        })
    }

    /// Stops every compaction and waits for them (server shutdown).
    pub(crate) fn stop_all(&self) {
        let running = std::mem::take(&mut *self.lock());
        for compaction in running.values() {
            compaction.cancel.store(true, Ordering::SeqCst);
        }
        for (_, compaction) in running {
            let _ = compaction.thread.join();
        }
    }
}

/// A task id not taken yet: `<prefix>_<datasource>_<time>[_<n>]`.
pub(crate) fn task_id(
    ingestion: &Ingestion,
    prefix: &str,
    datasource: &str,
) -> Result<String, IngestError> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let base = format!("{prefix}_{datasource}_{}", format_iso(now_millis()));
    let mut id = base.clone();
    while ingestion.catalog().task(&id)?.is_some() {
        id = format!("{base}_{}", SERIAL.fetch_add(1, Ordering::Relaxed) + 1);
    }
    Ok(id)
}

/// The stored details of a finished compaction: its outcome and report.
fn compaction_payload(
    started: i64,
    outcome: &Result<CompactionReport, String>,
    spec: &CompactionSpec,
) -> Value {
    let mut payload = json!({"duration": now_millis() - started});
    match outcome {
        Ok(report) => {
            payload["rowStats"] = json!({"processed": report.rows_read, "processedWithError": 0,
                                         "thrownAway": report.rows_read.saturating_sub(report.rows_written),
                                         "unparseable": 0});
            payload["compaction"] = json!(report);
        }
        Err(message) => payload["errorMsg"] = json!(message),
    }
    if !spec.not_acted_on.is_empty() {
        payload["fieldsNotActedOn"] = json!(spec.not_acted_on);
    }
    payload
}

impl Ingestion {
    /// Reads and writes a compaction on this thread, without recording a task, leaving it
    /// to be published with [`Ingestion::publish_compaction`] (or dropped: nothing changes).
    pub fn prepare_compaction(
        &self,
        task_id: &str,
        spec: &CompactionSpec,
    ) -> Result<compact::Prepared, String> {
        compact::prepare(&self.context, task_id, spec, &AtomicBool::new(false))
    }

    /// Publishes a prepared compaction.
    pub fn publish_compaction(
        &self,
        prepared: compact::Prepared,
    ) -> Result<CompactionReport, String> {
        prepared.publish(&self.context)
    }

    /// Starts a submitted task and records it; returns its id. A kill runs to its end
    /// first; a compaction runs on its own thread, RUNNING until it ends.
    pub fn run_task(&self, task: SubmittedTask) -> Result<String, IngestError> {
        let started = now_millis();
        match task {
            SubmittedTask::Kill {
                datasource,
                interval,
            } => {
                let id = task_id(self, TaskKind::Kill.as_str(), &datasource)?;
                let (status, payload) = match self.kill_unused(&id, &datasource, interval) {
                    Ok(killed) => (
                        TaskStatus::Success,
                        json!({"duration": now_millis() - started, "killedSegments": killed}),
                    ),
                    Err(IngestError::Locked(why)) => (
                        TaskStatus::Failed,
                        json!({"duration": now_millis() - started, "errorMsg": why}),
                    ),
                    Err(e) => return Err(e),
                };
                self.catalog().put_task(&TaskRecord {
                    id: id.clone(),
                    datasource,
                    kind: TaskKind::Kill,
                    status,
                    created: started,
                    payload,
                })?;
                Ok(id)
            }
            SubmittedTask::Compact(spec) => {
                let id = match &spec.id {
                    Some(id) if self.catalog().task(id)?.is_some() => {
                        return Err(refused("id", format!("Task [{id}] already exists")));
                    }
                    Some(id) => id.clone(),
                    None => task_id(self, TaskKind::Compact.as_str(), &spec.datasource)?,
                };
                if !spec.not_acted_on.is_empty() {
                    tracing::warn!(task = %id, "compaction spec fields accepted but not acted on: {}",
                        spec.not_acted_on.join(", "));
                }
                let mut record = TaskRecord {
                    id: id.clone(),
                    datasource: spec.datasource.clone(),
                    kind: TaskKind::Compact,
                    status: TaskStatus::Running,
                    created: started,
                    payload: json!({}),
                };
                self.catalog().put_task(&record)?;
                let cancel = Arc::new(AtomicBool::new(false));
                let datasource = spec.datasource.clone();
                let interval = match spec.input {
                    InputSpec::Interval(interval) => Some(interval),
                    InputSpec::Segments(_) => None,
                };
                let thread = {
                    let (context, cancel, id) = (self.context.clone(), cancel.clone(), id.clone());
                    std::thread::Builder::new()
                        .name("compaction".into())
                        .spawn(move || {
                            let outcome = compact::run(&context, &id, &spec, &cancel);
                            finish(&context, &mut record, &outcome, &spec);
                        })
                        .map_err(|e| IngestError::Io("starting a compaction thread".into(), e))?
                };
                let mut compactions = self.compactions.lock();
                compactions.retain(|_, c| !c.thread.is_finished());
                compactions.insert(
                    id.clone(),
                    RunningCompaction {
                        datasource,
                        interval,
                        cancel,
                        thread,
                    },
                );
                Ok(id)
            }
        }
    }
}

/// Records how a compaction ended.
fn finish(
    context: &Context,
    record: &mut TaskRecord,
    outcome: &Result<CompactionReport, String>,
    spec: &CompactionSpec,
) {
    match outcome {
        Ok(report) => tracing::info!(task = %record.id, segments_read = report.segments_read,
            segments_published = report.segments_published, rows = report.rows_written,
            "compaction published"),
        Err(e) => tracing::warn!(task = %record.id, "compaction failed: {e}"),
    }
    record.status = if outcome.is_ok() {
        TaskStatus::Success
    } else {
        TaskStatus::Failed
    };
    record.payload = compaction_payload(record.created, outcome, spec);
    if let Err(e) = context.catalog.put_task(record) {
        tracing::error!(task = %record.id, "recording the task's end failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_and_compact_specs_are_read_and_other_tasks_are_refused_naming_the_field() {
        let kill = json!({"type": "kill", "dataSource": "posts",
                          "interval": "2024-01-01T00:00:00Z/2024-01-02T00:00:00Z"});
        assert!(matches!(
            SubmittedTask::parse(&kill).unwrap(),
            SubmittedTask::Kill { datasource, interval: (1_704_067_200_000, 1_704_153_600_000) }
                if datasource == "posts"
        ));
        let message = |spec: Value| SubmittedTask::parse(&spec).unwrap_err().to_string();
        assert_eq!(
            message(json!({"type": "index_parallel"})),
            "type: task type 'index_parallel' is not supported yet (kill and compact are)"
        );
        assert_eq!(
            message(json!({"type": "kill", "interval": "2024-01-01/2024-01-02"})),
            "dataSource: is missing"
        );
        assert_eq!(
            message(json!({"type": "kill", "dataSource": "posts", "interval": "yesterday"})),
            "interval: must be an ISO interval start/end"
        );
        assert_eq!(
            message(json!({"type": "compact", "dataSource": "posts"})),
            "ioConfig.inputSpec: is missing"
        );
    }
}

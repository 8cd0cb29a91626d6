//! Tasks submitted through Druid's indexer API (`POST /druid/indexer/v1/task`) rather than
//! run by a supervisor: their spec is read here and they run to their end here, so that the
//! HTTP layer only hands the spec over.

use millrace_catalog::{TaskKind, TaskRecord, TaskStatus};
use millrace_segments::spec::SpecError;
use millrace_segments::time::parse_interval;
use serde_json::{Value, json};

use crate::{IngestError, Ingestion, now_millis};

/// A submitted task, read from its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmittedTask {
    /// Delete a datasource's unused segments within an interval, with their files.
    Kill {
        datasource: String,
        interval: (i64, i64),
    },
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
            _ => {
                return Err(refused(
                    "type",
                    format!("task type '{kind}' is not supported yet (kill is)"),
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

impl Ingestion {
    /// Runs a submitted task to its end and records it with its outcome; returns its id.
    pub fn run_task(&self, task: SubmittedTask) -> Result<String, IngestError> {
        let started = now_millis();
        let SubmittedTask::Kill {
            datasource,
            interval,
        } = task;
        let id = format!("kill_{datasource}_{started}");
        let killed = self.kill_unused(&datasource, interval)?;
        self.catalog().put_task(&TaskRecord {
            id: id.clone(),
            datasource,
            kind: TaskKind::Kill,
            status: TaskStatus::Success,
            created: started,
            payload: json!({"duration": now_millis() - started, "killedSegments": killed}),
        })?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_spec_is_read_and_other_tasks_are_refused_naming_the_field() {
        let kill = json!({"type": "kill", "dataSource": "posts",
                          "interval": "2024-01-01T00:00:00Z/2024-01-02T00:00:00Z"});
        assert_eq!(
            SubmittedTask::parse(&kill).unwrap(),
            SubmittedTask::Kill {
                datasource: "posts".into(),
                interval: (1_704_067_200_000, 1_704_153_600_000),
            }
        );
        let message = |spec: Value| SubmittedTask::parse(&spec).unwrap_err().to_string();
        assert_eq!(
            message(json!({"type": "index_parallel"})),
            "type: task type 'index_parallel' is not supported yet (kill is)"
        );
        assert_eq!(
            message(json!({"type": "kill", "interval": "2024-01-01/2024-01-02"})),
            "dataSource: is missing"
        );
        assert_eq!(
            message(json!({"type": "kill", "dataSource": "posts", "interval": "yesterday"})),
            "interval: must be an ISO interval start/end"
        );
    }
}

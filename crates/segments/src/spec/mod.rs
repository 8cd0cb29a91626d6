//! Druid Kafka supervisor specs: `{"type": "kafka", "spec": {"dataSchema", "ioConfig",
//! "tuningConfig"}, "suspended"}`, read with Druid's field names and defaults. A problem is
//! reported with the JSON path of the field (`spec.dataSchema.timestampSpec.format: ...`).

mod period;
mod schema;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;

pub use period::{Granularity, Period};
pub use schema::*;

/// Why a spec was refused: where (a JSON path) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SpecError {
    pub path: String,
    pub message: String,
}

impl SpecError {
    fn at(path: &str, message: impl Into<String>) -> SpecError {
        SpecError {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// A Kafka supervisor spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorSpec {
    #[serde(rename = "type")]
    pub kind: String,
    pub spec: IngestionSpec,
    #[serde(default)]
    pub suspended: bool,
    /// Task context, kept as given.
    #[serde(default)]
    pub context: Option<Json>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngestionSpec {
    pub data_schema: DataSchema,
    pub io_config: KafkaIoConfig,
    #[serde(default)]
    pub tuning_config: KafkaTuningConfig,
}

fn default_one() -> u32 {
    1
}

fn period(text: &str) -> Period {
    Period::parse(text).expect("built-in period")
}

/// How the supervisor reads Kafka (or the server's own log).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaIoConfig {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub topic: Option<String>,
    /// A regular expression that topic names must match in full.
    pub topic_pattern: Option<String>,
    /// Kafka consumer properties; without `bootstrap.servers` the server's own log is read.
    #[serde(default)]
    pub consumer_properties: BTreeMap<String, Json>,
    pub input_format: InputFormat,
    #[serde(default = "default_one")]
    pub task_count: u32,
    #[serde(default = "default_one")]
    pub replicas: u32,
    #[serde(default = "KafkaIoConfig::default_task_duration")]
    pub task_duration: Period,
    #[serde(default)]
    pub use_earliest_offset: bool,
    #[serde(default = "KafkaIoConfig::default_start_delay")]
    pub start_delay: Period,
    #[serde(default = "KafkaIoConfig::default_period")]
    pub period: Period,
    #[serde(default = "KafkaIoConfig::default_completion_timeout")]
    pub completion_timeout: Period,
    pub late_message_rejection_period: Option<Period>,
    pub late_message_rejection_start_date_time: Option<String>,
    pub early_message_rejection_period: Option<Period>,
    #[serde(default = "KafkaIoConfig::default_poll_timeout")]
    pub poll_timeout: u64,
    pub idle_config: Option<Json>,
    pub auto_scaler_config: Option<Json>,
    /// Accepted as Druid does; not used.
    pub config_overrides: Option<Json>,
    pub emit_time_lag_metrics: Option<bool>,
    pub stream: Option<String>,
}

impl KafkaIoConfig {
    /// How long a task reads before it publishes (fixed and positive: the spec check says so).
    pub fn task_duration(&self) -> Duration {
        Duration::from_millis(self.task_duration.fixed_millis().unwrap_or_default())
    }

    /// How long a task may take to publish before it fails (fixed and positive, as checked).
    pub fn completion_timeout(&self) -> Duration {
        Duration::from_millis(self.completion_timeout.fixed_millis().unwrap_or_default())
    }

    fn default_task_duration() -> Period {
        period("PT1H")
    }
    fn default_start_delay() -> Period {
        period("PT5S")
    }
    fn default_period() -> Period {
        period("PT30S")
    }
    fn default_completion_timeout() -> Period {
        period("PT30M")
    }
    fn default_poll_timeout() -> u64 {
        100
    }

    /// `bootstrap.servers`, when the spec names a Kafka cluster.
    pub fn bootstrap_servers(&self) -> Option<&str> {
        self.consumer_properties
            .get("bootstrap.servers")
            .and_then(Json::as_str)
            .filter(|s| !s.trim().is_empty())
    }
}

/// Limits and behaviour of the ingestion tasks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct KafkaTuningConfig {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub max_rows_in_memory: u64,
    pub max_bytes_in_memory: i64,
    pub max_rows_per_segment: u64,
    pub max_total_rows: Option<u64>,
    pub intermediate_persist_period: Period,
    pub intermediate_handoff_period: Option<Period>,
    pub handoff_condition_timeout: u64,
    pub reset_offset_automatically: bool,
    pub log_parse_exceptions: bool,
    /// None: unlimited.
    pub max_parse_exceptions: Option<u64>,
    pub max_saved_parse_exceptions: u64,
    pub worker_threads: Option<u32>,
    pub offset_fetch_period: Period,
    /// Druid fields accepted for compatibility and not used here.
    pub skip_sequence_number_availability_check: Option<bool>,
    pub chat_threads: Option<u32>,
    pub chat_retries: Option<u32>,
    pub http_timeout: Option<Period>,
    pub shutdown_timeout: Option<Period>,
    pub index_spec: Option<Json>,
    pub index_spec_for_intermediate_persists: Option<Json>,
    pub report_parse_exceptions: Option<bool>,
    pub appendable_index_spec: Option<Json>,
    pub segment_write_out_medium_factory: Option<Json>,
    pub max_pending_persists: Option<u32>,
    pub num_persist_threads: Option<u32>,
    pub partitions_spec: Option<Json>,
}

impl Default for KafkaTuningConfig {
    fn default() -> Self {
        KafkaTuningConfig {
            kind: None,
            max_rows_in_memory: 150_000,
            max_bytes_in_memory: 0,
            max_rows_per_segment: 5_000_000,
            max_total_rows: Some(20_000_000),
            intermediate_persist_period: period("PT10M"),
            intermediate_handoff_period: None,
            handoff_condition_timeout: 900_000,
            reset_offset_automatically: false,
            log_parse_exceptions: false,
            max_parse_exceptions: None,
            max_saved_parse_exceptions: 0,
            worker_threads: None,
            offset_fetch_period: period("PT30S"),
            skip_sequence_number_availability_check: None,
            chat_threads: None,
            chat_retries: None,
            http_timeout: None,
            shutdown_timeout: None,
            index_spec: None,
            index_spec_for_intermediate_persists: None,
            report_parse_exceptions: None,
            appendable_index_spec: None,
            segment_write_out_medium_factory: None,
            max_pending_persists: None,
            num_persist_threads: None,
            partitions_spec: None,
        }
    }
}

/// Fields of a supervisor spec that Druid acts on and this server accepts without acting on
/// them, as paths under `spec`.
pub const NOT_ACTED_ON: &[&str] = &[
    "ioConfig.startDelay",
    "ioConfig.period",
    "ioConfig.lateMessageRejectionStartDateTime",
    "ioConfig.idleConfig",
    "ioConfig.autoScalerConfig",
    "ioConfig.configOverrides",
    "ioConfig.emitTimeLagMetrics",
    "ioConfig.stream",
    "tuningConfig.maxTotalRows",
    "tuningConfig.intermediateHandoffPeriod",
    "tuningConfig.handoffConditionTimeout",
    "tuningConfig.resetOffsetAutomatically",
    "tuningConfig.workerThreads",
    "tuningConfig.offsetFetchPeriod",
    "tuningConfig.partitionsSpec",
    "tuningConfig.skipSequenceNumberAvailabilityCheck",
    "tuningConfig.chatThreads",
    "tuningConfig.chatRetries",
    "tuningConfig.httpTimeout",
    "tuningConfig.shutdownTimeout",
    "tuningConfig.indexSpec",
    "tuningConfig.indexSpecForIntermediatePersists",
    "tuningConfig.reportParseExceptions",
    "tuningConfig.appendableIndexSpec",
    "tuningConfig.segmentWriteOutMediumFactory",
    "tuningConfig.maxPendingPersists",
    "tuningConfig.numPersistThreads",
];

/// The fields of a spec (as sent) that are accepted and not acted on (see [`NOT_ACTED_ON`]),
/// as full paths (`spec.ioConfig.startDelay`), for a warning.
pub fn fields_not_acted_on(spec: &Json) -> Vec<String> {
    NOT_ACTED_ON
        .iter()
        .filter(|path| {
            let pointer = format!("/spec/{}", path.replace('.', "/"));
            spec.pointer(&pointer).is_some_and(|value| !value.is_null())
        })
        .map(|path| format!("spec.{path}"))
        .collect()
}

impl SupervisorSpec {
    /// Reads and checks a supervisor spec from JSON text.
    pub fn from_json(text: &[u8]) -> Result<SupervisorSpec, SpecError> {
        let de = &mut serde_json::Deserializer::from_slice(text);
        let spec: SupervisorSpec = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let message = e.inner().to_string();
            if e.inner().is_syntax() || e.inner().is_eof() {
                // Not JSON at all: the line and column say where.
                return SpecError {
                    path: "$".into(),
                    message: format!("the body is not valid JSON: {message}"),
                };
            }
            // serde_json appends " at line L column C"; the path says where already.
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.clone(), |(m, _)| m.to_string());
            SpecError {
                path: if path == "." { "$".into() } else { path },
                message,
            }
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// The datasource, which is also the supervisor's id.
    pub fn id(&self) -> &str {
        &self.spec.data_schema.data_source
    }

    /// Checks what the shape alone cannot.
    fn validate(&self) -> Result<(), SpecError> {
        if self.kind != "kafka" {
            return Err(SpecError::at(
                "type",
                format!("unknown supervisor type '{}' (only kafka)", self.kind),
            ));
        }
        let io = &self.spec.io_config;
        if let Some(kind) = &io.kind
            && kind != "kafka"
        {
            return Err(SpecError::at("spec.ioConfig.type", "must be kafka"));
        }
        match (&io.topic, &io.topic_pattern) {
            (Some(_), Some(_)) => {
                return Err(SpecError::at(
                    "spec.ioConfig",
                    "give either topic or topicPattern, not both",
                ));
            }
            (None, None) => {
                return Err(SpecError::at(
                    "spec.ioConfig.topic",
                    "a topic (or topicPattern) is required",
                ));
            }
            (Some(topic), None) if topic.trim().is_empty() => {
                return Err(SpecError::at("spec.ioConfig.topic", "must not be empty"));
            }
            _ => {}
        }
        if io.task_count == 0 {
            return Err(SpecError::at(
                "spec.ioConfig.taskCount",
                "must be at least 1",
            ));
        }
        if io.replicas != 1 {
            return Err(SpecError::at(
                "spec.ioConfig.replicas",
                "only 1 replica is supported",
            ));
        }
        for (field, period, example) in [
            ("taskDuration", &io.task_duration, "PT1H"),
            ("completionTimeout", &io.completion_timeout, "PT30M"),
        ] {
            if period.fixed_millis().is_none_or(|ms| ms == 0) {
                return Err(SpecError::at(
                    &format!("spec.ioConfig.{field}"),
                    format!("must be a fixed, positive period such as {example}"),
                ));
            }
        }
        if let Some(kind) = &self.spec.tuning_config.kind
            && kind != "kafka"
        {
            return Err(SpecError::at("spec.tuningConfig.type", "must be kafka"));
        }
        if self.spec.tuning_config.max_rows_per_segment == 0 {
            return Err(SpecError::at(
                "spec.tuningConfig.maxRowsPerSegment",
                "must be at least 1",
            ));
        }
        self.spec.data_schema.validate("spec.dataSchema")?;
        io.input_format.validate("spec.ioConfig.inputFormat")
    }
}

#[cfg(test)]
mod tests;

//! Auto-compaction, as Druid's coordinator does it. Each datasource may have a compaction
//! config (`POST /druid/coordinator/v1/config/compaction`); the configs are kept together in
//! the catalog as Druid keeps them (`coordinator.compaction.config`). A duty, run every
//! period, finds each configured datasource's time chunks that end before the latest
//! segment's end minus `skipOffsetFromLatest` and whose segments were not yet compacted with
//! the config's spec, and starts compaction tasks for them, newest first, at most
//! `maxCompactionTaskSlots` running at once. Chunks compacted with the same spec are skipped,
//! so the same data is never compacted over and over.

use millrace_catalog::SegmentRecord;
use millrace_segments::spec::{Period, SpecError};
use millrace_segments::time::{bucket, format_interval};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::spec::CompactionSpec;

/// Where the catalog keeps the compaction configs.
pub const SETTING: &str = "coordinator.compaction.config";

/// Compaction tasks the duty may have running at once when no limit is set.
const DEFAULT_TASK_SLOTS: u64 = 1;

fn error(path: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        path: path.to_string(),
        message: message.into(),
    }
}

const FIELDS: &[&str] = &[
    "dataSource",
    "skipOffsetFromLatest",
    "tuningConfig",
    "granularitySpec",
    "dimensionsSpec",
    "transformSpec",
    "metricsSpec",
    "ioConfig",
    "maxRowsPerSegment",
];
/// Fields Druid acts on that this server accepts without acting on them.
pub const NOT_ACTED_ON: &[&str] = &[
    "taskPriority",
    "inputSegmentSizeBytes",
    "taskContext",
    "engine",
    "projections",
];

/// One datasource's auto-compaction config.
#[derive(Debug, Clone)]
pub struct AutoConfig {
    pub datasource: String,
    /// Chunks ending within this many milliseconds of the latest segment's end are left
    /// alone (streaming is still writing them).
    pub skip_offset_millis: i64,
    /// The config as stored and shown, with Druid's defaults filled in.
    pub json: Value,
    /// The compaction each chosen chunk gets (its interval set when the task starts).
    pub compaction: CompactionSpec,
    /// The task spec the duty submits, without its interval.
    template: Value,
    /// Fields accepted and not acted on.
    pub not_acted_on: Vec<String>,
}

impl AutoConfig {
    /// Reads and checks a config (`DataSourceCompactionConfig`); errors name the field.
    pub fn from_json(body: &Value) -> Result<AutoConfig, SpecError> {
        let object = body
            .as_object()
            .ok_or_else(|| error("$", "must be a JSON object"))?;
        let mut not_acted_on = Vec::new();
        for (name, value) in object {
            if NOT_ACTED_ON.contains(&name.as_str()) {
                if !value.is_null() {
                    not_acted_on.push(name.clone());
                }
            } else if !FIELDS.contains(&name.as_str()) {
                return Err(error(
                    name,
                    format!(
                        "unknown field; known: {}",
                        [FIELDS, NOT_ACTED_ON].concat().join(", ")
                    ),
                ));
            }
        }
        let datasource = object
            .get("dataSource")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .ok_or_else(|| error("dataSource", "is missing"))?
            .to_string();
        let skip_text = match object.get("skipOffsetFromLatest") {
            None | Some(Value::Null) => "P1D",
            Some(Value::String(text)) => text.as_str(),
            Some(_) => return Err(error("skipOffsetFromLatest", "must be an ISO-8601 period")),
        };
        let skip = Period::parse(skip_text).map_err(|e| error("skipOffsetFromLatest", e))?;
        let skip_offset_millis = match skip.fixed_millis() {
            Some(millis) => millis as i64,
            None => {
                return Err(error(
                    "skipOffsetFromLatest",
                    "must be a period of fixed length (weeks, days, hours, ...), not months or years",
                ));
            }
        };
        let mut template = Map::new();
        template.insert("type".into(), json!("compact"));
        template.insert("dataSource".into(), json!(datasource));
        for name in [
            "granularitySpec",
            "dimensionsSpec",
            "transformSpec",
            "metricsSpec",
        ] {
            if let Some(value) = object.get(name).filter(|v| !v.is_null()) {
                template.insert(name.into(), value.clone());
            }
        }
        let mut tuning = object
            .get("tuningConfig")
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or_else(|| json!({}));
        if let Some(tuning) = tuning.as_object_mut() {
            tuning.remove("type");
            // Druid's old top-level maxRowsPerSegment sizes dynamic partitions.
            if let Some(max) = object.get("maxRowsPerSegment").filter(|v| !v.is_null())
                && !tuning.contains_key("partitionsSpec")
            {
                tuning.insert(
                    "partitionsSpec".into(),
                    json!({"type": "dynamic", "maxRowsPerSegment": max}),
                );
            }
            // Partitioning that needs perfect rollup gets it, as Druid's coordinator does.
            let partitioned = tuning
                .get("partitionsSpec")
                .and_then(|p| p.get("type"))
                .and_then(Value::as_str)
                .is_some_and(|kind| kind != "dynamic");
            if partitioned && !tuning.contains_key("forceGuaranteedRollup") {
                tuning.insert("forceGuaranteedRollup".into(), json!(true));
            }
        }
        template.insert("tuningConfig".into(), tuning);
        if let Some(io) = object.get("ioConfig").filter(|v| !v.is_null()) {
            let io = io
                .as_object()
                .ok_or_else(|| error("ioConfig", "must be an object"))?;
            let mut io = io.clone();
            io.remove("type");
            template.insert("ioConfig".into(), Value::Object(io));
        }
        let template = Value::Object(template);
        // The spec of a compaction of some interval: checks every field, with its path.
        let compaction = CompactionSpec::from_json(&with_interval(&template, (0, 1)))?;
        let mut shown = body.clone();
        if let Some(shown) = shown.as_object_mut() {
            shown
                .entry("skipOffsetFromLatest")
                .or_insert(json!(skip_text));
            shown.entry("taskPriority").or_insert(json!(25));
            shown
                .entry("inputSegmentSizeBytes")
                .or_insert(json!(100_000_000_000_000_i64));
        }
        Ok(AutoConfig {
            datasource,
            skip_offset_millis,
            json: shown,
            compaction,
            template,
            not_acted_on,
        })
    }

    /// The compaction task spec for one interval.
    pub fn task_spec(&self, interval: (i64, i64)) -> Value {
        with_interval(&self.template, interval)
    }
}

fn with_interval(template: &Value, interval: (i64, i64)) -> Value {
    let mut spec = template.clone();
    let io = spec
        .as_object_mut()
        .expect("the template is an object")
        .entry("ioConfig")
        .or_insert_with(|| json!({}));
    if let Some(io) = io.as_object_mut() {
        io.insert("type".into(), json!("compact"));
        io.insert(
            "inputSpec".into(),
            json!({"type": "interval", "interval": format_interval(interval)}),
        );
    }
    spec
}

/// The task slots setting: `maxCompactionTaskSlots` (the ratio of Druid's workers does not
/// apply to one process).
pub fn task_slots(document: &Value) -> u64 {
    document
        .get("maxCompactionTaskSlots")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_TASK_SLOTS)
        .max(1)
}

/// Druid's coordinator compaction document with nothing configured.
pub fn empty_document() -> Value {
    json!({"compactionConfigs": [], "compactionTaskSlotRatio": 0.1,
           "maxCompactionTaskSlots": DEFAULT_TASK_SLOTS, "useAutoScaleSlots": false,
           "engine": "native"})
}

/// What the duty found of one datasource, in Druid's `AutoCompactionSnapshot` shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub data_source: String,
    pub schedule_status: String,
    pub bytes_awaiting_compaction: u64,
    pub bytes_compacted: u64,
    pub bytes_skipped: u64,
    pub segment_count_awaiting_compaction: u64,
    pub segment_count_compacted: u64,
    pub segment_count_skipped: u64,
    pub interval_count_awaiting_compaction: u64,
    pub interval_count_compacted: u64,
    pub interval_count_skipped: u64,
}

/// A time chunk (in the config's segment granularity) and its visible segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub interval: (i64, i64),
    pub bytes: u64,
    pub segments: u64,
}

/// Which chunks need compaction, newest first, and the datasource's snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Survey {
    pub awaiting: Vec<Chunk>,
    pub snapshot: Snapshot,
}

/// Whether a segment was compacted with the spec the config asks for.
fn compacted_as_asked(config: &AutoConfig, segment: &SegmentRecord) -> bool {
    let Some(state) = &segment.descriptor.last_compaction_state else {
        return false;
    };
    let asked = &config.compaction;
    if state.get("partitionsSpec") != Some(&asked.partitions.to_json()) {
        return false;
    }
    let given = |name: &str| asked.given.get(name);
    for name in ["metricsSpec", "transformSpec"] {
        if let Some(value) = given(name)
            && state.get(name) != Some(value)
        {
            return false;
        }
    }
    if let Some(granularity) = given("granularitySpec") {
        for field in ["segmentGranularity", "queryGranularity", "rollup"] {
            if let Some(value) = granularity.get(field).filter(|v| !v.is_null())
                && state.pointer(&format!("/granularitySpec/{field}")) != Some(value)
            {
                return false;
            }
        }
    }
    if let Some(dimensions) = &asked.dimensions
        && !dimensions.dimensions.is_empty()
    {
        let names: Vec<&str> = dimensions
            .dimensions
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        let compacted: Vec<&str> = state
            .pointer("/dimensionsSpec/dimensions")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(|d| d["name"].as_str()).collect())
            .unwrap_or_default();
        if names != compacted {
            return false;
        }
    }
    true
}

/// Surveys a datasource's visible segments for its config.
pub fn survey(config: &AutoConfig, visible: &[&SegmentRecord]) -> Survey {
    let granularity = config
        .compaction
        .segment_granularity
        .as_ref()
        .map(|(g, _)| g);
    // Each segment's chunk: the buckets of the granularity it spans, or its own interval.
    let mut spans: Vec<((i64, i64), &SegmentRecord)> = visible
        .iter()
        .map(|s| {
            let interval = match granularity {
                Some(g) => (bucket(s.start, g).0, bucket(s.end - 1, g).1),
                None => (s.start, s.end),
            };
            (interval, *s)
        })
        .collect();
    spans.sort_by_key(|(interval, _)| *interval);
    let mut chunks: Vec<((i64, i64), Vec<&SegmentRecord>)> = Vec::new();
    for (interval, segment) in spans {
        match chunks.last_mut() {
            Some((last, members)) if interval.0 < last.1 => {
                last.1 = last.1.max(interval.1);
                members.push(segment);
            }
            _ => chunks.push((interval, vec![segment])),
        }
    }
    let latest = visible.iter().map(|s| s.end).max().unwrap_or(0);
    let mut survey = Survey {
        snapshot: Snapshot {
            data_source: config.datasource.clone(),
            schedule_status: "RUNNING".into(),
            ..Snapshot::default()
        },
        ..Survey::default()
    };
    for (interval, members) in chunks.into_iter().rev() {
        let chunk = Chunk {
            interval,
            bytes: members.iter().map(|s| s.descriptor.size).sum(),
            segments: members.len() as u64,
        };
        let snapshot = &mut survey.snapshot;
        if interval.1 > latest.saturating_sub(config.skip_offset_millis) {
            snapshot.bytes_skipped += chunk.bytes;
            snapshot.segment_count_skipped += chunk.segments;
            snapshot.interval_count_skipped += 1;
        } else if members
            .iter()
            .all(|s| compacted_as_asked(config, s) && (s.start, s.end) == interval)
        {
            snapshot.bytes_compacted += chunk.bytes;
            snapshot.segment_count_compacted += chunk.segments;
            snapshot.interval_count_compacted += 1;
        } else {
            snapshot.bytes_awaiting_compaction += chunk.bytes;
            snapshot.segment_count_awaiting_compaction += chunk.segments;
            snapshot.interval_count_awaiting_compaction += 1;
            survey.awaiting.push(chunk);
        }
    }
    survey
}

//! A compaction task's spec (`{"type": "compact", ...}`), read with Druid's field names. A
//! field that is wrong is reported with its path; fields Druid acts on that this server does
//! not are listed for a warning.

use millrace_segments::partition::PartitionsSpec;
use millrace_segments::spec::{Aggregator, DimensionsSpec, Filter, Granularity, SpecError};
use millrace_segments::time::parse_interval;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Which segments to compact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    /// The visible segments within `[start, end)`.
    Interval((i64, i64)),
    /// These segments, which must be all the visible segments of the interval they span.
    Segments(Vec<String>),
}

/// A compaction task as submitted.
#[derive(Debug, Clone)]
pub struct CompactionSpec {
    pub id: Option<String>,
    pub datasource: String,
    pub input: InputSpec,
    pub allow_non_aligned_interval: bool,
    /// With its text as given (a name, or JSON) for messages; None: each input time chunk
    /// stays as it is.
    pub segment_granularity: Option<(Granularity, String)>,
    pub query_granularity: Option<Granularity>,
    pub rollup: Option<bool>,
    pub dimensions: Option<DimensionsSpec>,
    pub metrics: Option<Vec<Aggregator>>,
    pub filter: Option<Filter>,
    pub partitions: PartitionsSpec,
    pub force_guaranteed_rollup: bool,
    /// The parts of the spec that describe the result, as given (for `lastCompactionState`).
    pub given: Map<String, Value>,
    /// Fields accepted but not acted on, as paths.
    pub not_acted_on: Vec<String>,
}

fn error(path: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// A field read with serde, errors naming the field's path.
fn typed<T: DeserializeOwned>(value: &Value, path: &str) -> Result<T, SpecError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let at = if inner == "." {
            path.to_string()
        } else {
            format!("{path}.{inner}")
        };
        error(&at, e.inner().to_string())
    })
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, SpecError> {
    value
        .as_object()
        .ok_or_else(|| error(path, "must be an object"))
}

/// A present, non-null field.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|v| !v.is_null())
}

/// Checks an object's fields: unknown ones are an error, known ones that are not acted on
/// are added to `ignored` (as `path.name`).
fn check_fields(
    object: &Map<String, Value>,
    path: &str,
    acted_on: &[&str],
    not_acted_on: &[&str],
    ignored: &mut Vec<String>,
) -> Result<(), SpecError> {
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    };
    for (name, value) in object {
        if acted_on.contains(&name.as_str()) {
            continue;
        }
        if not_acted_on.contains(&name.as_str()) {
            if !value.is_null() {
                ignored.push(format!("{prefix}{name}"));
            }
            continue;
        }
        return Err(error(
            &format!("{prefix}{name}"),
            format!(
                "unknown field; known: {}",
                [acted_on, not_acted_on].concat().join(", ")
            ),
        ));
    }
    Ok(())
}

const TOP_FIELDS: &[&str] = &[
    "type",
    "id",
    "dataSource",
    "ioConfig",
    "interval",
    "dimensionsSpec",
    "metricsSpec",
    "transformSpec",
    "granularitySpec",
    "segmentGranularity",
    "tuningConfig",
    "context",
];
const TOP_NOT_ACTED_ON: &[&str] = &["resource", "projections", "compactionRunner"];
const TUNING_FIELDS: &[&str] = &[
    "type",
    "partitionsSpec",
    "forceGuaranteedRollup",
    "maxRowsPerSegment",
];
const TUNING_NOT_ACTED_ON: &[&str] = &[
    "maxRowsInMemory",
    "maxBytesInMemory",
    "maxColumnsToMerge",
    "maxTotalRows",
    "numShards",
    "splitHintSpec",
    "indexSpec",
    "indexSpecForIntermediatePersists",
    "maxPendingPersists",
    "pushTimeout",
    "segmentWriteOutMediumFactory",
    "maxNumConcurrentSubTasks",
    "maxRetry",
    "taskStatusCheckPeriodMs",
    "chatHandlerTimeout",
    "chatHandlerNumRetries",
    "maxNumSegmentsToMerge",
    "totalNumMergeTasks",
    "logParseExceptions",
    "maxParseExceptions",
    "maxSavedParseExceptions",
    "maxNumPersists",
    "appendableIndexSpec",
    "awaitSegmentAvailabilityTimeoutMillis",
    "partitionDimensions",
    "reportParseExceptions",
];

impl CompactionSpec {
    /// Reads a compaction task spec.
    pub fn from_json(spec: &Value) -> Result<CompactionSpec, SpecError> {
        let top = object(spec, "$")?;
        let mut ignored = Vec::new();
        check_fields(top, "", TOP_FIELDS, TOP_NOT_ACTED_ON, &mut ignored)?;
        let datasource = field(top, "dataSource")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .ok_or_else(|| error("dataSource", "is missing"))?
            .to_string();
        let id = match field(top, "id") {
            None => None,
            Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
            Some(_) => return Err(error("id", "must be a non-empty string")),
        };

        let io = match field(top, "ioConfig") {
            Some(io) => object(io, "ioConfig")?.clone(),
            None => Map::new(),
        };
        check_fields(
            &io,
            "ioConfig",
            &["type", "inputSpec", "allowNonAlignedInterval"],
            &["dropExisting"],
            &mut ignored,
        )?;
        let input = match (field(&io, "inputSpec"), field(top, "interval")) {
            (Some(input), _) => read_input(input)?,
            // The old top-level `interval`.
            (None, Some(interval)) => InputSpec::Interval(read_interval(interval, "interval")?),
            (None, None) => return Err(error("ioConfig.inputSpec", "is missing")),
        };
        let allow_non_aligned_interval = match field(&io, "allowNonAlignedInterval") {
            None => false,
            Some(v) => v.as_bool().ok_or_else(|| {
                error("ioConfig.allowNonAlignedInterval", "must be true or false")
            })?,
        };

        let granularity = match field(top, "granularitySpec") {
            Some(g) => object(g, "granularitySpec")?.clone(),
            None => Map::new(),
        };
        check_fields(
            &granularity,
            "granularitySpec",
            &["type", "segmentGranularity", "queryGranularity", "rollup"],
            &["intervals"],
            &mut ignored,
        )?;
        let segment_granularity = match field(&granularity, "segmentGranularity")
            .map(|g| (g, "granularitySpec.segmentGranularity"))
            .or_else(|| field(top, "segmentGranularity").map(|g| (g, "segmentGranularity")))
        {
            Some((g, path)) => Some((
                typed::<Granularity>(g, path)?,
                g.as_str().map_or_else(|| g.to_string(), str::to_string),
            )),
            None => None,
        };
        let query_granularity = field(&granularity, "queryGranularity")
            .map(|g| typed::<Granularity>(g, "granularitySpec.queryGranularity"))
            .transpose()?;
        let rollup = field(&granularity, "rollup")
            .map(|r| {
                r.as_bool()
                    .ok_or_else(|| error("granularitySpec.rollup", "must be true or false"))
            })
            .transpose()?;

        let dimensions = field(top, "dimensionsSpec")
            .map(|d| typed::<DimensionsSpec>(d, "dimensionsSpec"))
            .transpose()?;
        let metrics = field(top, "metricsSpec")
            .map(|m| typed::<Vec<Aggregator>>(m, "metricsSpec"))
            .transpose()?;
        let filter = match field(top, "transformSpec") {
            Some(transform) => {
                let transform = object(transform, "transformSpec")?;
                check_fields(transform, "transformSpec", &["filter"], &[], &mut ignored)?;
                field(transform, "filter")
                    .map(|f| typed::<Filter>(f, "transformSpec.filter"))
                    .transpose()?
            }
            None => None,
        };

        let tuning = match field(top, "tuningConfig") {
            Some(t) => object(t, "tuningConfig")?.clone(),
            None => Map::new(),
        };
        check_fields(
            &tuning,
            "tuningConfig",
            TUNING_FIELDS,
            TUNING_NOT_ACTED_ON,
            &mut ignored,
        )?;
        let partitions = match field(&tuning, "partitionsSpec") {
            Some(p) => PartitionsSpec::from_json(p, "tuningConfig.partitionsSpec")?,
            // The old tuningConfig.maxRowsPerSegment means a dynamic split.
            None => PartitionsSpec::from_json(
                &serde_json::json!({"type": "dynamic",
                    "maxRowsPerSegment": field(&tuning, "maxRowsPerSegment")}),
                "tuningConfig.maxRowsPerSegment",
            )?,
        };
        let force_guaranteed_rollup = match field(&tuning, "forceGuaranteedRollup") {
            None => false,
            Some(v) => v.as_bool().ok_or_else(|| {
                error(
                    "tuningConfig.forceGuaranteedRollup",
                    "must be true or false",
                )
            })?,
        };
        if partitions.needs_guaranteed_rollup() && !force_guaranteed_rollup {
            return Err(error(
                "tuningConfig.forceGuaranteedRollup",
                "must be true for hashed, single_dim and range partitionsSpec (they need perfect rollup)",
            ));
        }
        if force_guaranteed_rollup && !partitions.needs_guaranteed_rollup() {
            return Err(error(
                "tuningConfig.partitionsSpec",
                "forceGuaranteedRollup needs a hashed, single_dim or range partitionsSpec",
            ));
        }

        let given = [
            "dimensionsSpec",
            "metricsSpec",
            "transformSpec",
            "granularitySpec",
        ]
        .iter()
        .filter_map(|name| field(top, name).map(|v| (name.to_string(), v.clone())))
        .collect();
        Ok(CompactionSpec {
            id,
            datasource,
            input,
            allow_non_aligned_interval,
            segment_granularity,
            query_granularity,
            rollup,
            dimensions,
            metrics,
            filter,
            partitions,
            force_guaranteed_rollup,
            given,
            not_acted_on: ignored,
        })
    }
}

fn read_interval(value: &Value, path: &str) -> Result<(i64, i64), SpecError> {
    value
        .as_str()
        .and_then(parse_interval)
        .filter(|(start, end)| start < end)
        .ok_or_else(|| {
            error(
                path,
                "must be an ISO interval start/end with start before end",
            )
        })
}

fn read_input(input: &Value) -> Result<InputSpec, SpecError> {
    const PATH: &str = "ioConfig.inputSpec";
    let fields = object(input, PATH)?;
    match fields.get("type").and_then(Value::as_str) {
        Some("interval") => {
            let interval = field(fields, "interval")
                .ok_or_else(|| error(&format!("{PATH}.interval"), "is missing"))?;
            Ok(InputSpec::Interval(read_interval(
                interval,
                &format!("{PATH}.interval"),
            )?))
        }
        Some("segments") => {
            let ids: Vec<String> = field(fields, "segments")
                .and_then(Value::as_array)
                .and_then(|items| {
                    items
                        .iter()
                        .map(|item| {
                            // Segment ids, or segment descriptors with their `identifier`.
                            item.as_str()
                                .or_else(|| item.get("identifier").and_then(Value::as_str))
                                .map(str::to_string)
                        })
                        .collect::<Option<Vec<_>>>()
                })
                .filter(|ids| !ids.is_empty())
                .ok_or_else(|| {
                    error(
                        &format!("{PATH}.segments"),
                        "must list the segments (ids) to compact",
                    )
                })?;
            Ok(InputSpec::Segments(ids))
        }
        other => Err(error(
            &format!("{PATH}.type"),
            format!(
                "must be interval or segments, not {}",
                other.map_or("missing".into(), |o| format!("'{o}'"))
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refused(spec: Value) -> String {
        CompactionSpec::from_json(&spec).unwrap_err().to_string()
    }

    #[test]
    fn the_seeds_two_compactions_are_read() {
        let merge = CompactionSpec::from_json(&json!({
            "type": "compact", "dataSource": "social_media_4task",
            "ioConfig": {"type": "compact", "inputSpec": {"type": "interval",
                "interval": "2025-01-01T10:00:00/2025-01-01T11:00:00"}},
            "granularitySpec": {"segmentGranularity": "hour"}}))
        .unwrap();
        assert_eq!(
            merge.input,
            InputSpec::Interval((1_735_725_600_000, 1_735_729_200_000))
        );
        assert!(merge.segment_granularity.is_some());
        assert_eq!(
            merge.partitions,
            PartitionsSpec::Dynamic {
                max_rows_per_segment: 5_000_000
            }
        );
        let range = CompactionSpec::from_json(&json!({
            "type": "compact", "dataSource": "social_media_4task",
            "ioConfig": {"type": "compact", "inputSpec": {"type": "interval",
                "interval": "2025-01-01T10:00:00/2025-01-01T11:00:00"}},
            "tuningConfig": {"type": "compaction", "forceGuaranteedRollup": true,
                "partitionsSpec": {"type": "range", "partitionDimensions": ["username"],
                                   "targetRowsPerSegment": 250000},
                "maxNumConcurrentSubTasks": 2}}))
        .unwrap();
        assert!(range.force_guaranteed_rollup);
        assert_eq!(range.partitions.dimensions(), ["username".to_string()]);
        assert_eq!(
            range.not_acted_on,
            vec!["tuningConfig.maxNumConcurrentSubTasks"]
        );
    }

    #[test]
    fn druids_validation_errors_name_the_field() {
        let base = |extra: Value| {
            let mut spec = json!({"type": "compact", "dataSource": "d",
                "ioConfig": {"inputSpec": {"type": "interval", "interval": "2025-01-01/2025-01-02"}}});
            for (k, v) in extra.as_object().unwrap() {
                spec[k] = v.clone();
            }
            spec
        };
        assert_eq!(
            refused(base(json!({"tuningConfig": {"partitionsSpec":
                {"type": "hashed", "numShards": 2}}}))),
            "tuningConfig.forceGuaranteedRollup: must be true for hashed, single_dim and range partitionsSpec (they need perfect rollup)"
        );
        assert_eq!(
            refused(base(
                json!({"ioConfig": {"inputSpec": {"type": "interval", "interval": "x"}}})
            )),
            "ioConfig.inputSpec.interval: must be an ISO interval start/end with start before end"
        );
        assert_eq!(
            refused(base(
                json!({"granularitySpec": {"segmentGranularity": "fortnight"}})
            )),
            "granularitySpec.segmentGranularity: unknown granularity 'fortnight' (use none, second, minute, fifteen_minute, thirty_minute, hour, day, week, month, quarter, year, all, or a period object)"
        );
        assert!(
            refused(base(json!({"tuningConfg": {}}))).starts_with("tuningConfg: unknown field")
        );
        assert_eq!(
            refused(json!({"type": "compact"})),
            "dataSource: is missing"
        );
        assert_eq!(
            refused(json!({"type": "compact", "dataSource": "d"})),
            "ioConfig.inputSpec: is missing"
        );
        assert_eq!(
            refused(base(
                json!({"ioConfig": {"inputSpec": {"type": "segments", "segments": []}}})
            )),
            "ioConfig.inputSpec.segments: must list the segments (ids) to compact"
        );
    }
}

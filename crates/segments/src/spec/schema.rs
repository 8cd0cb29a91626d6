//! The `dataSchema` of an ingestion spec and the `inputFormat` of its ioConfig.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{Granularity, SpecError};
use crate::timeline::MAX_DATASOURCE_BYTES;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DataSchema {
    pub data_source: String,
    #[serde(default)]
    pub timestamp_spec: TimestampSpec,
    #[serde(default)]
    pub dimensions_spec: DimensionsSpec,
    #[serde(default)]
    pub metrics_spec: Vec<Aggregator>,
    #[serde(default)]
    pub granularity_spec: GranularitySpec,
    #[serde(default)]
    pub transform_spec: TransformSpec,
    /// Legacy field, accepted and not used.
    pub parser: Option<Json>,
}

/// Where a row's time comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TimestampSpec {
    pub column: String,
    pub format: TimestampFormat,
    /// Used when the column is missing or null: an ISO time or epoch milliseconds.
    pub missing_value: Option<Json>,
}

impl Default for TimestampSpec {
    fn default() -> Self {
        TimestampSpec {
            column: "timestamp".into(),
            format: TimestampFormat::Auto,
            missing_value: None,
        }
    }
}

/// How timestamp text or numbers are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampFormat {
    Iso,
    /// ISO text or epoch milliseconds, whichever the value looks like.
    Auto,
    Millis,
    /// Epoch seconds.
    Posix,
    Micro,
    Nano,
    /// A Joda-Time pattern such as `yyyy-MM-dd HH:mm:ss`.
    Pattern(String),
}

impl<'de> Deserialize<'de> for TimestampFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TimestampFormat, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match text.as_str() {
            "iso" => TimestampFormat::Iso,
            "auto" => TimestampFormat::Auto,
            "millis" => TimestampFormat::Millis,
            "posix" => TimestampFormat::Posix,
            "micro" => TimestampFormat::Micro,
            "nano" => TimestampFormat::Nano,
            "" => {
                return Err(serde::de::Error::custom(
                    "the timestamp format must not be empty",
                ));
            }
            _ => TimestampFormat::Pattern(text),
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct DimensionsSpec {
    pub dimensions: Vec<DimensionSpec>,
    pub dimension_exclusions: Vec<String>,
    pub include_all_dimensions: bool,
    pub use_schema_discovery: bool,
    /// Accepted and not used.
    pub spatial_dimensions: Option<Json>,
}

/// A dimension: a bare name (a string dimension) or a typed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimensionSpec {
    pub name: String,
    pub kind: DimensionType,
    pub multi_value_handling: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DimensionType {
    String,
    Long,
    Float,
    Double,
    Json,
    Auto,
}

impl<'de> Deserialize<'de> for DimensionSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DimensionSpec, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        struct Typed {
            #[serde(rename = "type", default = "string_type")]
            kind: DimensionType,
            name: String,
            #[serde(default)]
            create_bitmap_index: Option<bool>,
            #[serde(default)]
            multi_value_handling: Option<String>,
            #[serde(default)]
            format_version: Option<u32>,
        }
        fn string_type() -> DimensionType {
            DimensionType::String
        }
        match Json::deserialize(d)? {
            Json::String(name) => Ok(DimensionSpec {
                name,
                kind: DimensionType::String,
                multi_value_handling: None,
            }),
            other => {
                let typed = Typed::deserialize(other).map_err(serde::de::Error::custom)?;
                let _ = (typed.create_bitmap_index, typed.format_version);
                Ok(DimensionSpec {
                    name: typed.name,
                    kind: typed.kind,
                    multi_value_handling: typed.multi_value_handling,
                })
            }
        }
    }
}

/// A metric aggregator of rollup.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Aggregator {
    Count {
        name: String,
    },
    LongSum(FieldAggregator),
    DoubleSum(FieldAggregator),
    FloatSum(FieldAggregator),
    LongMin(FieldAggregator),
    LongMax(FieldAggregator),
    DoubleMin(FieldAggregator),
    DoubleMax(FieldAggregator),
    FloatMin(FieldAggregator),
    FloatMax(FieldAggregator),
    LongFirst(FieldAggregator),
    LongLast(FieldAggregator),
    DoubleFirst(FieldAggregator),
    DoubleLast(FieldAggregator),
    FloatFirst(FieldAggregator),
    FloatLast(FieldAggregator),
    StringFirst(StringAggregator),
    StringLast(StringAggregator),
    Filtered {
        filter: Filter,
        aggregator: Box<Aggregator>,
        name: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FieldAggregator {
    pub name: String,
    pub field_name: Option<String>,
    pub expression: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StringAggregator {
    pub name: String,
    pub field_name: String,
    pub time_column: Option<String>,
    pub max_string_bytes: Option<u32>,
}

impl Aggregator {
    /// The output column.
    pub fn name(&self) -> &str {
        match self {
            Aggregator::Count { name } => name,
            Aggregator::StringFirst(a) | Aggregator::StringLast(a) => &a.name,
            Aggregator::Filtered {
                name, aggregator, ..
            } => name.as_deref().unwrap_or_else(|| aggregator.name()),
            Aggregator::LongSum(a)
            | Aggregator::DoubleSum(a)
            | Aggregator::FloatSum(a)
            | Aggregator::LongMin(a)
            | Aggregator::LongMax(a)
            | Aggregator::DoubleMin(a)
            | Aggregator::DoubleMax(a)
            | Aggregator::FloatMin(a)
            | Aggregator::FloatMax(a)
            | Aggregator::LongFirst(a)
            | Aggregator::LongLast(a)
            | Aggregator::DoubleFirst(a)
            | Aggregator::DoubleLast(a)
            | Aggregator::FloatFirst(a)
            | Aggregator::FloatLast(a) => &a.name,
        }
    }

    /// The input column of a field aggregator, when it reads one.
    pub fn field(&self) -> Option<&FieldAggregator> {
        match self {
            Aggregator::LongSum(a)
            | Aggregator::DoubleSum(a)
            | Aggregator::FloatSum(a)
            | Aggregator::LongMin(a)
            | Aggregator::LongMax(a)
            | Aggregator::DoubleMin(a)
            | Aggregator::DoubleMax(a)
            | Aggregator::FloatMin(a)
            | Aggregator::FloatMax(a)
            | Aggregator::LongFirst(a)
            | Aggregator::LongLast(a)
            | Aggregator::DoubleFirst(a)
            | Aggregator::DoubleLast(a)
            | Aggregator::FloatFirst(a)
            | Aggregator::FloatLast(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct GranularitySpec {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub segment_granularity: Granularity,
    pub query_granularity: Granularity,
    pub rollup: bool,
    pub intervals: Option<Vec<String>>,
}

impl Default for GranularitySpec {
    fn default() -> Self {
        GranularitySpec {
            kind: None,
            segment_granularity: Granularity::named("day").expect("day"),
            query_granularity: Granularity::None,
            rollup: true,
            intervals: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformSpec {
    pub transforms: Vec<Transform>,
    pub filter: Option<Filter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub expression: String,
}

/// Druid's native filters (used by transformSpec and filtered aggregators).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Filter {
    Selector {
        dimension: String,
        value: Option<Json>,
        #[serde(rename = "extractionFn")]
        extraction_fn: Option<Json>,
    },
    Equals {
        column: String,
        #[serde(rename = "matchValueType")]
        match_value_type: String,
        #[serde(rename = "matchValue")]
        match_value: Json,
    },
    In {
        dimension: String,
        values: Vec<Option<Json>>,
    },
    Bound {
        dimension: String,
        lower: Option<Json>,
        upper: Option<Json>,
        #[serde(rename = "lowerStrict", default)]
        lower_strict: bool,
        #[serde(rename = "upperStrict", default)]
        upper_strict: bool,
        ordering: Option<String>,
    },
    Range {
        column: String,
        #[serde(rename = "matchValueType")]
        match_value_type: String,
        lower: Option<Json>,
        upper: Option<Json>,
        #[serde(rename = "lowerOpen", default)]
        lower_open: bool,
        #[serde(rename = "upperOpen", default)]
        upper_open: bool,
    },
    Like {
        dimension: String,
        pattern: String,
        escape: Option<String>,
    },
    Regex {
        dimension: String,
        pattern: String,
    },
    And {
        fields: Vec<Filter>,
    },
    Or {
        fields: Vec<Filter>,
    },
    Not {
        field: Box<Filter>,
    },
    Null {
        column: String,
    },
    True,
    False,
}

/// How record bytes become rows.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum InputFormat {
    Json {
        #[serde(rename = "flattenSpec")]
        flatten_spec: Option<FlattenSpec>,
        #[serde(rename = "featureSpec")]
        feature_spec: Option<Json>,
        #[serde(rename = "keepNullColumns", default)]
        keep_null_columns: bool,
        #[serde(rename = "assumeNewlineDelimited", default)]
        assume_newline_delimited: bool,
        #[serde(rename = "useJsonNodeReader", default)]
        use_json_node_reader: bool,
    },
    Csv(DelimitedFormat),
    Tsv(DelimitedFormat),
    Kafka {
        #[serde(rename = "valueFormat")]
        value_format: Box<InputFormat>,
        #[serde(rename = "keyFormat")]
        key_format: Option<Box<InputFormat>>,
        #[serde(rename = "headerFormat")]
        header_format: Option<Json>,
        #[serde(rename = "timestampColumnName")]
        timestamp_column_name: Option<String>,
        #[serde(rename = "topicColumnName")]
        topic_column_name: Option<String>,
        #[serde(rename = "headerColumnPrefix")]
        header_column_prefix: Option<String>,
        #[serde(rename = "keyColumnName")]
        key_column_name: Option<String>,
    },
    AvroStream(Json),
    Protobuf(Json),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct DelimitedFormat {
    pub columns: Vec<String>,
    pub find_columns_from_header: bool,
    pub skip_header_rows: u32,
    pub list_delimiter: Option<String>,
    pub delimiter: Option<String>,
    /// Legacy name of findColumnsFromHeader.
    pub has_header_row: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FlattenSpec {
    #[serde(default = "yes")]
    pub use_field_discovery: bool,
    #[serde(default)]
    pub fields: Vec<FlattenField>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlattenField {
    #[serde(rename = "type")]
    pub kind: FlattenType,
    pub name: String,
    pub expr: Option<String>,
    pub nodes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlattenType {
    Root,
    Path,
    Jq,
    Tree,
}

impl DataSchema {
    pub(super) fn validate(&self, path: &str) -> Result<(), SpecError> {
        if self.data_source.trim().is_empty() {
            return Err(SpecError::at(
                &format!("{path}.dataSource"),
                "must not be empty",
            ));
        }
        // Druid's rules for ids; the name also becomes a directory of segment files.
        let name = &self.data_source;
        if name.starts_with('.')
            || name.contains(['/', '\\'])
            || name
                .chars()
                .any(|c| c.is_whitespace() && c != ' ' || c.is_control())
        {
            return Err(SpecError::at(
                &format!("{path}.dataSource"),
                "must not start with '.' or contain '/', '\\', tabs, line breaks or control characters",
            ));
        }
        if name.len() > MAX_DATASOURCE_BYTES {
            return Err(SpecError::at(
                &format!("{path}.dataSource"),
                format!(
                    "is {} bytes long; at most {MAX_DATASOURCE_BYTES} bytes fit (segment files are named by it)",
                    name.len()
                ),
            ));
        }
        if self.timestamp_spec.column.is_empty() {
            return Err(SpecError::at(
                &format!("{path}.timestampSpec.column"),
                "must not be empty",
            ));
        }
        let mut names = BTreeSet::new();
        for (i, dimension) in self.dimensions_spec.dimensions.iter().enumerate() {
            let at = format!("{path}.dimensionsSpec.dimensions[{i}]");
            if dimension.name.is_empty() {
                return Err(SpecError::at(&at, "a dimension needs a name"));
            }
            if dimension.name == "__time" || dimension.name == self.timestamp_spec.column {
                return Err(SpecError::at(
                    &at,
                    format!("'{}' is the time column, not a dimension", dimension.name),
                ));
            }
            if !names.insert(dimension.name.as_str()) {
                return Err(SpecError::at(
                    &at,
                    format!("dimension '{}' is listed twice", dimension.name),
                ));
            }
        }
        for (i, metric) in self.metrics_spec.iter().enumerate() {
            let at = format!("{path}.metricsSpec[{i}]");
            if !names.insert(metric.name()) {
                return Err(SpecError::at(
                    &at,
                    format!("'{}' is already a dimension or metric", metric.name()),
                ));
            }
            if let Some(field) = metric.field()
                && field.field_name.is_none() == field.expression.is_none()
            {
                return Err(SpecError::at(
                    &at,
                    "give exactly one of fieldName and expression",
                ));
            }
        }
        if matches!(self.granularity_spec.segment_granularity, Granularity::None) {
            return Err(SpecError::at(
                &format!("{path}.granularitySpec.segmentGranularity"),
                "segments need a granularity of at least a second (or all)",
            ));
        }
        for (i, transform) in self.transform_spec.transforms.iter().enumerate() {
            if transform.kind != "expression" {
                return Err(SpecError::at(
                    &format!("{path}.transformSpec.transforms[{i}].type"),
                    "only expression transforms exist",
                ));
            }
        }
        Ok(())
    }
}

impl InputFormat {
    pub(super) fn validate(&self, path: &str) -> Result<(), SpecError> {
        match self {
            InputFormat::Json { flatten_spec, .. } => {
                for (i, field) in flatten_spec.iter().flat_map(|f| &f.fields).enumerate() {
                    let at = format!("{path}.flattenSpec.fields[{i}]");
                    match field.kind {
                        FlattenType::Path | FlattenType::Jq if field.expr.is_none() => {
                            return Err(SpecError::at(&at, "a path or jq field needs expr"));
                        }
                        FlattenType::Jq | FlattenType::Tree => {
                            return Err(SpecError::at(
                                &at,
                                "jq and tree fields are not supported yet",
                            ));
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
            InputFormat::Csv(format) | InputFormat::Tsv(format) => {
                // Druid reads a stream's records one by one: none carries a header row.
                if format.columns.is_empty() {
                    return Err(SpecError::at(
                        &format!("{path}.columns"),
                        "give columns: stream records have no header row to find them in",
                    ));
                }
                if let Some(delimiter) = &format.delimiter
                    && delimiter.len() != 1
                {
                    return Err(SpecError::at(
                        &format!("{path}.delimiter"),
                        format!("'{delimiter}' is not one single-byte character"),
                    ));
                }
                Ok(())
            }
            InputFormat::Kafka {
                value_format,
                key_format,
                ..
            } => {
                if matches!(**value_format, InputFormat::Kafka { .. }) {
                    return Err(SpecError::at(
                        &format!("{path}.valueFormat"),
                        "cannot be kafka again",
                    ));
                }
                value_format.validate(&format!("{path}.valueFormat"))?;
                if let Some(key) = key_format {
                    key.validate(&format!("{path}.keyFormat"))?;
                }
                Ok(())
            }
            InputFormat::AvroStream(_) | InputFormat::Protobuf(_) => Err(SpecError::at(
                &format!("{path}.type"),
                "avro_stream and protobuf input formats are not supported yet",
            )),
        }
    }
}

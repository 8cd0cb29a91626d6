use serde_json::json;

use super::*;
use crate::timeline::MAX_DATASOURCE_BYTES;

/// The seed's supervisor spec (social_media_2task).
fn seed_spec() -> serde_json::Value {
    json!({
        "type": "kafka",
        "spec": {
            "ioConfig": { "type": "kafka", "consumerProperties": { "bootstrap.servers": "localhost:9092" },
                "topic": "social", "taskCount": 2, "useEarliestOffset": true,
                "inputFormat": { "type": "json"} },
            "tuningConfig": { "type": "kafka"},
            "dataSchema": {
                "dataSource": "social_media_2task",
                "timestampSpec": { "column": "time", "format": "iso" },
                "dimensionsSpec": {
                    "dimensions": [
                        "username",
                        "post_title",
                        { "type": "long", "name": "views"},
                        { "type": "long", "name": "upvotes"},
                        { "type": "long", "name": "comments"},
                        "edited"
                    ]
                },
                "granularitySpec": { "queryGranularity": "none", "rollup": false, "segmentGranularity": "hour" }
            }
        }
    })
}

fn parse(value: &serde_json::Value) -> Result<SupervisorSpec, SpecError> {
    SupervisorSpec::from_json(value.to_string().as_bytes())
}

fn error_of(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut spec = seed_spec();
    edit(&mut spec);
    parse(&spec).unwrap_err().to_string()
}

#[test]
fn the_seed_spec_reads_with_druid_defaults() {
    let spec = parse(&seed_spec()).unwrap();
    assert_eq!(spec.id(), "social_media_2task");
    let io = &spec.spec.io_config;
    assert_eq!(io.topic.as_deref(), Some("social"));
    assert_eq!((io.task_count, io.replicas), (2, 1));
    assert!(io.use_earliest_offset);
    assert_eq!(io.bootstrap_servers(), Some("localhost:9092"));
    assert_eq!(io.task_duration.fixed_millis(), Some(3_600_000));
    assert_eq!(io.completion_timeout.fixed_millis(), Some(1_800_000));
    let schema = &spec.spec.data_schema;
    assert_eq!(schema.timestamp_spec.column, "time");
    assert_eq!(schema.timestamp_spec.format, TimestampFormat::Iso);
    let kinds: Vec<(&str, DimensionType)> = schema
        .dimensions_spec
        .dimensions
        .iter()
        .map(|d| (d.name.as_str(), d.kind))
        .collect();
    assert_eq!(kinds[0], ("username", DimensionType::String));
    assert_eq!(kinds[2], ("views", DimensionType::Long));
    assert!(!schema.granularity_spec.rollup);
    assert_eq!(
        schema.granularity_spec.segment_granularity,
        Granularity::named("hour").unwrap()
    );
    assert_eq!(schema.granularity_spec.query_granularity, Granularity::None);
    let tuning = &spec.spec.tuning_config;
    assert_eq!(tuning.max_rows_in_memory, 150_000);
    assert_eq!(tuning.max_rows_per_segment, 5_000_000);
    assert!(!spec.suspended);
}

#[test]
fn metrics_filters_and_formats() {
    let spec = parse(&json!({
        "type": "kafka",
        "spec": {
            "ioConfig": { "topic": "t", "inputFormat": { "type": "kafka",
                "valueFormat": { "type": "csv", "columns": ["time", "user", "n"] } } },
            "dataSchema": {
                "dataSource": "d",
                "metricsSpec": [
                    { "type": "count", "name": "count" },
                    { "type": "longSum", "name": "total", "fieldName": "n" },
                    { "type": "filtered", "filter": { "type": "selector", "dimension": "user", "value": "ann" },
                      "aggregator": { "type": "count", "name": "anns" } },
                    { "type": "stringLast", "name": "last_user", "fieldName": "user" }
                ],
                "transformSpec": {
                    "transforms": [ { "type": "expression", "name": "big", "expression": "n > 10" } ],
                    "filter": { "type": "and", "fields": [
                        { "type": "not", "field": { "type": "null", "column": "user" } },
                        { "type": "in", "dimension": "user", "values": ["ann", "bob"] },
                        { "type": "bound", "dimension": "n", "lower": "1", "ordering": "numeric" },
                        { "type": "like", "dimension": "user", "pattern": "a%" } ] }
                },
                "granularitySpec": { "segmentGranularity": { "type": "period", "period": "PT15M" } }
            }
        }
    }))
    .unwrap();
    let schema = &spec.spec.data_schema;
    assert_eq!(schema.metrics_spec.len(), 4);
    assert_eq!(schema.metrics_spec[2].name(), "anns");
    assert!(schema.granularity_spec.rollup, "rollup defaults to true");
    assert!(
        matches!(&schema.transform_spec.filter, Some(Filter::And { fields }) if fields.len() == 4)
    );
    assert!(
        matches!(&spec.spec.io_config.input_format, InputFormat::Kafka { value_format, .. }
        if matches!(**value_format, InputFormat::Csv(_)))
    );
}

#[test]
fn problems_name_the_json_path() {
    assert_eq!(
        error_of(|s| s["spec"]["dataSchema"]["timestampSpec"]["colum"] = json!("x")),
        "spec.dataSchema.timestampSpec.colum: unknown field `colum`, expected one of `column`, `format`, `missingValue`"
    );
    assert_eq!(
        error_of(|s| s["spec"]["ioConfig"]["taskCount"] = json!("two")),
        "spec.ioConfig.taskCount: invalid type: string \"two\", expected u32"
    );
    assert_eq!(
        error_of(|s| s["spec"]["ioConfig"]["taskDuration"] = json!("an hour")),
        "spec.ioConfig.taskDuration: 'an hour' is not an ISO-8601 period such as PT1H or P1D"
    );
    assert_eq!(
        error_of(|s| s["spec"]["ioConfig"]
            .as_object_mut()
            .unwrap()
            .remove("topic")
            .map(|_| ())
            .unwrap()),
        "spec.ioConfig.topic: a topic (or topicPattern) is required"
    );
    assert_eq!(
        error_of(
            |s| s["spec"]["dataSchema"]["dimensionsSpec"]["dimensions"][5] = json!("username")
        ),
        "spec.dataSchema.dimensionsSpec.dimensions[5]: dimension 'username' is listed twice"
    );
    assert_eq!(
        error_of(|s| s["spec"]["ioConfig"]["completionTimeout"] = json!("P1M")),
        "spec.ioConfig.completionTimeout: must be a fixed, positive period such as PT30M"
    );
    assert_eq!(
        error_of(|s| s["spec"]["ioConfig"]["replicas"] = json!(2)),
        "spec.ioConfig.replicas: only 1 replica is supported"
    );
    for name in ["../escape", ".hidden", "a/b", "tab\there"] {
        assert!(
            error_of(|s| s["spec"]["dataSchema"]["dataSource"] = json!(name))
                .starts_with("spec.dataSchema.dataSource: must not start with '.'"),
            "{name}"
        );
    }
    // Bytes count, not characters: 81 x 'ö' is 162 bytes.
    for name in ["x".repeat(MAX_DATASOURCE_BYTES + 1), "ö".repeat(81)] {
        assert_eq!(
            error_of(|s| s["spec"]["dataSchema"]["dataSource"] = json!(name)),
            format!(
                "spec.dataSchema.dataSource: is {} bytes long; at most {MAX_DATASOURCE_BYTES} bytes fit (segment files are named by it)",
                name.len()
            )
        );
    }
    let longest = "ö".repeat(MAX_DATASOURCE_BYTES / 2);
    let mut spec = seed_spec();
    spec["spec"]["dataSchema"]["dataSource"] = json!(longest);
    assert_eq!(parse(&spec).unwrap().id(), longest);
    assert_eq!(
        error_of(|s| s["type"] = json!("kinesis")),
        "type: unknown supervisor type 'kinesis' (only kafka)"
    );
    assert!(
        error_of(
            |s| s["spec"]["dataSchema"]["granularitySpec"]["segmentGranularity"] =
                json!("fortnight")
        )
        .starts_with(
            "spec.dataSchema.granularitySpec.segmentGranularity: unknown granularity 'fortnight'"
        )
    );
    let unknown_format =
        error_of(|s| s["spec"]["ioConfig"]["inputFormat"] = json!({"type": "xml"}));
    assert!(
        unknown_format.starts_with("spec.ioConfig.inputFormat")
            && unknown_format.contains("unknown variant `xml`"),
        "{unknown_format}"
    );
    assert_eq!(
        error_of(|s| s["spec"]["ioConfig"]["inputFormat"] = json!({"type": "csv"})),
        "spec.ioConfig.inputFormat.columns: give columns: stream records have no header row to find them in"
    );
    assert_eq!(
        error_of(|s| s["spec"]["ioConfig"]["inputFormat"] =
            json!({"type": "tsv", "findColumnsFromHeader": true})),
        "spec.ioConfig.inputFormat.columns: give columns: stream records have no header row to find them in"
    );
    assert_eq!(
        error_of(|s| s["spec"]["ioConfig"]["inputFormat"] =
            json!({"type": "csv", "columns": ["a"], "delimiter": "ab"})),
        "spec.ioConfig.inputFormat.delimiter: 'ab' is not one single-byte character"
    );
    let not_json = SupervisorSpec::from_json(b"{\"type\": ").unwrap_err();
    assert_eq!(
        not_json.to_string(),
        "$: the body is not valid JSON: EOF while parsing a value at line 1 column 9"
    );
}

#[test]
fn fields_accepted_without_effect_are_named() {
    let mut spec = seed_spec();
    assert!(
        fields_not_acted_on(&spec).is_empty(),
        "the seed's spec uses none"
    );
    spec["spec"]["ioConfig"]["startDelay"] = json!("PT10S");
    spec["spec"]["ioConfig"]["idleConfig"] = json!(null);
    spec["spec"]["tuningConfig"]["maxTotalRows"] = json!(1000);
    assert_eq!(
        fields_not_acted_on(&spec),
        ["spec.ioConfig.startDelay", "spec.tuningConfig.maxTotalRows"]
    );
    // They are still accepted.
    assert!(parse(&spec).is_ok());
}

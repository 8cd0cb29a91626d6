//! Entry points for fuzzing and property tests: arbitrary bytes as supervisor specs and as
//! records read by a spec's input format, timestamp, transforms, filter and rollup. They must
//! never panic; errors are fine.

use serde_json::json;

use crate::index::ChunkIndex;
use crate::input::{RecordMeta, RowReader};
use crate::spec::SupervisorSpec;
use crate::time::bucket;
use crate::transform::{Outcome, RowTransformer};
use crate::view::RealtimeChunk;

/// The specs records are read with: the first byte of a fuzz input picks one.
fn specs() -> Vec<serde_json::Value> {
    let spec = |data_schema: serde_json::Value, input_format: serde_json::Value| {
        json!({"type": "kafka", "spec": {
            "dataSchema": data_schema,
            "ioConfig": {"topic": "t", "inputFormat": input_format},
            "tuningConfig": {"type": "kafka"}}})
    };
    let posts = |format: &str| {
        json!({"dataSource": "posts",
            "timestampSpec": {"column": "time", "format": format},
            "dimensionsSpec": {"dimensions": ["username", {"type": "long", "name": "views"},
                {"type": "double", "name": "score"}, "edited"]},
            "granularitySpec": {"segmentGranularity": "hour", "queryGranularity": "none", "rollup": false}})
    };
    vec![
        spec(posts("iso"), json!({"type": "json"})),
        spec(
            json!({"dataSource": "nested",
                "timestampSpec": {"column": "ts", "format": "auto", "missingValue": "2025-01-01T00:00:00Z"},
                "dimensionsSpec": {"dimensions": ["user", "first"]},
                "metricsSpec": [{"type": "count", "name": "count"},
                    {"type": "longSum", "name": "total", "fieldName": "n"},
                    {"type": "doubleMax", "name": "top", "expression": "n * 1.5"},
                    {"type": "stringLast", "name": "last_user", "fieldName": "user"}],
                "granularitySpec": {"segmentGranularity": "day", "queryGranularity": "minute", "rollup": true},
                "transformSpec": {
                    "transforms": [{"type": "expression", "name": "user", "expression": "upper(concat(user, '-', n))"}],
                    "filter": {"type": "or", "fields": [
                        {"type": "selector", "dimension": "user", "value": "ANN-1"},
                        {"type": "bound", "dimension": "n", "lower": "2", "ordering": "numeric"},
                        {"type": "like", "dimension": "first", "pattern": "a%"}]}}}),
            json!({"type": "json", "flattenSpec": {"useFieldDiscovery": true, "fields": [
                {"type": "path", "name": "first", "expr": "$.items[0].name"},
                {"type": "path", "name": "n", "expr": "$.stats.n"}]}}),
        ),
        spec(
            posts("millis"),
            json!({"type": "csv", "columns": ["time", "username", "views", "score", "edited"]}),
        ),
        spec(
            posts("posix"),
            json!({"type": "tsv", "columns": ["time", "username", "views", "score", "edited"], "skipHeaderRows": 1}),
        ),
        spec(
            posts("yyyy-MM-dd HH:mm:ss"),
            json!({"type": "kafka", "valueFormat": {"type": "json"}, "keyFormat": {"type": "json"}}),
        ),
        spec(posts("nano"), json!({"type": "json"})),
    ]
}

/// The spec `specs()[choice]` (modulo their number).
fn spec(choice: usize) -> SupervisorSpec {
    let specs = specs();
    let text = specs[choice % specs.len()].to_string();
    SupervisorSpec::from_json(text.as_bytes()).expect("the fuzz specs are valid")
}

/// The kafka record a fuzzed value is read as: the value is its key too.
fn meta(value: &[u8]) -> RecordMeta<'_> {
    const HEADERS: &[(&str, Option<&[u8]>)] = &[("h", Some(b"header"))];
    RecordMeta {
        topic: "t",
        timestamp: 1_735_689_600_000,
        key: Some(value),
        headers: HEADERS,
    }
}

/// Ingests records with the spec `specs()[choice]` into chunk indexes, as a task does.
fn ingest(choice: usize, records: &[&[u8]]) -> Vec<ChunkIndex> {
    let spec = spec(choice);
    let schema = &spec.spec.data_schema;
    let reader = RowReader::new(&spec.spec.io_config.input_format).expect("a reader");
    let transformer = RowTransformer::new(schema, &spec.spec.io_config).expect("a transformer");
    let mut indexes: Vec<ChunkIndex> = Vec::new();
    for value in records {
        let meta = meta(value);
        for row in reader.read(value, &meta).unwrap_or_default() {
            if let Outcome::Row(row) = transformer.apply(row, meta.timestamp) {
                let (start, end) = bucket(row.time, &schema.granularity_spec.segment_granularity);
                match indexes.iter_mut().find(|i| i.interval() == (start, end)) {
                    Some(index) => index.add(row),
                    None => {
                        let mut index = ChunkIndex::new(start, end, schema);
                        index.add(row);
                        indexes.push(index);
                    }
                }
            }
        }
    }
    indexes
}

/// Reads `data` (after its first byte, which picks a spec) as one record: input format,
/// timestamp, transforms, filter, then into a chunk index and out as columns.
pub fn druid_record(data: &[u8]) {
    let Some((&choice, value)) = data.split_first() else {
        return;
    };
    members_agree(choice as usize, value);
    for mut index in ingest(choice as usize, &[value]) {
        index.batch().expect("rows make columns");
    }
}

/// Where rows of the spec `specs()[choice]` need only some members, the member reader reads
/// them from `value` as serde alone does (flat records are read from their bytes): the same
/// values, or the same error.
fn members_agree(choice: usize, value: &[u8]) {
    let spec = spec(choice);
    let io_config = &spec.spec.io_config;
    let transformer =
        RowTransformer::new(&spec.spec.data_schema, io_config).expect("a transformer");
    if let Some(members) = transformer.member_reader(&io_config.input_format) {
        let meta = meta(value);
        assert_eq!(
            members.read(value, &meta),
            members.read_parsed(value, &meta)
        );
    }
}

/// Realtime chunks of `count` tutorial-like posts over three hours, to run queries on.
pub fn sample_posts(count: usize) -> Vec<RealtimeChunk> {
    let names = ["willow", "mia", "leon", "gus"];
    let records: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            json!({"time": format!("2025-01-01T{:02}:{:02}:00Z", i % 3, i % 60),
                "username": names[i % names.len()], "views": i * 37 % 1000,
                "score": i as f64 / 4.0, "edited": if i % 3 == 0 { "True" } else { "False" }})
            .to_string()
            .into_bytes()
        })
        .collect();
    let records: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    ingest(0, &records)
        .into_iter()
        .map(|mut index| {
            let (start, end) = index.interval();
            RealtimeChunk {
                start,
                end,
                schema: index.schema().clone(),
                batch: index.batch().expect("rows make columns"),
            }
        })
        .collect()
}

/// Reads `data` as a supervisor spec; one that is accepted must build its reader and
/// transformer (the spec check promises that).
pub fn supervisor_spec(data: &[u8]) {
    if let Ok(spec) = SupervisorSpec::from_json(data) {
        RowReader::new(&spec.spec.io_config.input_format).expect("an accepted spec reads");
        RowTransformer::new(&spec.spec.data_schema, &spec.spec.io_config)
            .expect("an accepted spec transforms");
    }
}

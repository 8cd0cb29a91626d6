//! KSML definitions end to end on the embedded log: every stateless operation and sink, the
//! producer rules, error handling and restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use millrace_ksml::config::{DefinitionSource, Handler, RunnerConfig};
use millrace_ksml::load::load_definitions;
use millrace_log::{EmbeddedLog, EmbeddedLogConfig, Header, Log, Record};
use millrace_stream::runner::{RunCounters, RunError, RunOptions, RunSummary, run};
use serde_json::{Value as Json, json};

mod stateful;
mod tables;

/// A data directory with a log, and the folder definitions are written to.
struct Env {
    dir: tempfile::TempDir,
    log: Arc<EmbeddedLog>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(
            EmbeddedLog::open(&dir.path().join("data"), EmbeddedLogConfig::default()).unwrap(),
        );
        Env { dir, log }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Appends one record to partition 0 of a new one-partition topic.
    fn produce_record(&self, topic: &str, record: Record) {
        self.log.create_topic(topic, 1).unwrap();
        self.log.append(topic, 0, vec![record]).unwrap();
    }

    /// Appends string-keyed records with values as given (JSON text or plain text).
    fn produce(&self, topic: &str, partitions: u32, records: &[(Option<&str>, &str)]) {
        self.log.create_topic(topic, partitions).unwrap();
        for (key, value) in records {
            let partition = match key {
                Some(k) => millrace_log::murmur2_partition(k.as_bytes(), partitions),
                None => 0,
            };
            self.log
                .append(
                    topic,
                    partition,
                    vec![Record {
                        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                        value: Some(Bytes::copy_from_slice(value.as_bytes())),
                        timestamp: 1_000,
                        headers: vec![],
                    }],
                )
                .unwrap();
        }
    }

    fn run_with(&self, files: &[&Path], config: RunnerConfig) -> Result<RunSummary, RunError> {
        self.run_counted(files, config, Arc::default())
    }

    /// Runs definition files until idle, counting into `counters`.
    fn run_counted(
        &self,
        files: &[&Path],
        config: RunnerConfig,
        counters: Arc<RunCounters>,
    ) -> Result<RunSummary, RunError> {
        let mut config = config;
        for file in files {
            config.definitions.push((
                file.file_stem().unwrap().to_string_lossy().into(),
                DefinitionSource::File(file.to_path_buf()),
            ));
        }
        let loaded = load_definitions(&config.definitions, false);
        let errors: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(!loaded.has_errors(), "definitions must load: {errors:#?}");
        let mut options = RunOptions::new(true, Arc::new(AtomicBool::new(false)));
        options.state_dir = Some(self.path("state"));
        options.counters = counters;
        run(self.log.clone(), &loaded.definitions, config, options)
    }

    fn run(&self, yaml: &str) -> RunSummary {
        let file = self.write("app.yaml", yaml);
        self.run_with(&[&file], RunnerConfig::default()).unwrap()
    }

    /// All records of a topic, partition by partition.
    fn records(&self, topic: &str) -> Vec<(u32, Record)> {
        let partitions = self.log.partition_count(topic).unwrap().unwrap_or(0);
        let mut out = Vec::new();
        for p in 0..partitions {
            for r in self.log.read(topic, p, 0, usize::MAX).unwrap().records {
                out.push((p, r.record));
            }
        }
        out
    }

    /// (key, value) of a topic as text, values parsed as JSON.
    fn pairs(&self, topic: &str) -> Vec<(Option<String>, Json)> {
        self.records(topic)
            .into_iter()
            .map(|(_, r)| {
                let key = r.key.map(|k| String::from_utf8_lossy(&k).into_owned());
                let value = r
                    .value
                    .map(|v| {
                        serde_json::from_slice(&v)
                            .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&v).into()))
                    })
                    .unwrap_or(Json::Null);
                (key, value)
            })
            .collect()
    }
}

const STREAMS: &str = "
streams:
  input:
    topic: input
    keyType: string
    valueType: json
  output:
    topic: output
    keyType: string
    valueType: json
";

fn events(env: &Env) {
    env.produce(
        "input",
        1,
        &[
            (Some("a"), r#"{"n": 1, "kind": "keep"}"#),
            (Some("b"), r#"{"n": 2, "kind": "drop"}"#),
            (Some("c"), r#"{"n": 3, "kind": "keep"}"#),
        ],
    );
}

#[test]
fn filter_and_filter_not() {
    let env = Env::new();
    events(&env);
    env.run(&format!(
        "{STREAMS}
  dropped:
    topic: dropped
    keyType: string
    valueType: json
pipelines:
  keep:
    from: input
    via:
      - type: filter
        if:
          expression: value['kind'] == 'keep'
    to: output
  drop:
    from: input
    via:
      - type: filterNot
        if:
          expression: value['kind'] == 'keep'
    to: dropped
"
    ));
    let kept: Vec<_> = env
        .pairs("output")
        .into_iter()
        .map(|(k, _)| k.unwrap())
        .collect();
    assert_eq!(kept, ["a", "c"]);
    assert_eq!(env.pairs("dropped")[0].1, json!({"n": 2, "kind": "drop"}));
    // Filtered records pass through as the bytes they came in as.
    assert_eq!(
        env.records("output")[0].1.value.as_deref(),
        Some(&br#"{"n": 1, "kind": "keep"}"#[..])
    );
}

#[test]
fn value_key_and_pair_mappers() {
    let env = Env::new();
    events(&env);
    env.run(&format!(
        "{STREAMS}
functions:
  double:
    type: valueTransformer
    code: |
      out = dict(value)
      out['n'] = value['n'] * 2
    expression: out
    resultType: json
pipelines:
  values:
    from: input
    via:
      - type: mapValues
        mapper: double
      - type: selectKey
        mapper:
          expression: key.upper() + str(value['n'])
          resultType: string
      - type: map
        mapper:
          expression: \"(key + '!', {{'was': value['n']}})\"
          resultType: (string, json)
    to: output
"
    ));
    assert_eq!(
        env.pairs("output"),
        vec![
            (Some("A2!".into()), json!({"was": 2})),
            (Some("B4!".into()), json!({"was": 4})),
            (Some("C6!".into()), json!({"was": 6})),
        ]
    );
}

#[test]
fn flat_maps_emit_each_item() {
    let env = Env::new();
    env.produce("input", 1, &[(Some("k"), r#"{"items": ["x", "y"]}"#)]);
    env.run(&format!(
        "{STREAMS}
  single:
    topic: single
    keyType: string
    valueType: string
pipelines:
  pairs:
    from: input
    via:
      - type: flatMap
        mapper:
          expression: '[(key + str(i), {{\"item\": item}}) for i, item in enumerate(value[\"items\"])]'
          resultType: '[(string, json)]'
    to: output
  values:
    from: input
    via:
      - type: flatMapValues
        mapper:
          expression: value['items']
          resultType: '[string]'
    to: single
"
    ));
    assert_eq!(
        env.pairs("output"),
        vec![
            (Some("k0".into()), json!({"item": "x"})),
            (Some("k1".into()), json!({"item": "y"})),
        ]
    );
    let singles: Vec<_> = env
        .records("single")
        .into_iter()
        .map(|(_, r)| r.value.unwrap())
        .collect();
    assert_eq!(singles, vec![Bytes::from("x"), Bytes::from("y")]);
}

#[test]
fn metadata_headers_and_timestamps() {
    let env = Env::new();
    env.produce_record(
        "input",
        Record {
            key: Some(Bytes::from("k")),
            value: Some(Bytes::from("{}")),
            timestamp: 5_000,
            headers: vec![Header {
                key: "source".into(),
                value: Some(Bytes::from("sensor")),
            }],
        },
    );
    env.run(&format!(
        "{STREAMS}
pipelines:
  meta:
    from: input
    via:
      - type: transformMetadata
        mapper:
          code: |
            headers = metadata['headers'] + [{{'key': 'seen', 'value': metadata['headers'][0]['value'] + '-ok'}}]
          expression: '{{\"timestamp\": metadata[\"timestamp\"] + 1, \"headers\": headers}}'
    to: output
"
    ));
    let (_, record) = env.records("output").remove(0);
    assert_eq!(record.timestamp, 5_001);
    assert_eq!(
        record.headers,
        vec![
            Header {
                key: "source".into(),
                value: Some(Bytes::from("sensor"))
            },
            Header {
                key: "seen".into(),
                value: Some(Bytes::from("sensor-ok"))
            },
        ]
    );
}

#[test]
fn conversions_between_types() {
    let env = Env::new();
    env.produce_record(
        "numbers",
        Record {
            key: Some(Bytes::from("7")),
            value: Some(Bytes::from(r#"{"v": 1}"#)),
            timestamp: 0,
            headers: vec![],
        },
    );
    env.run(
        "
streams:
  numbers:
    topic: numbers
    keyType: string
    valueType: json
pipelines:
  convert:
    from: numbers
    via:
      - type: convertKey
        into: long
      - type: convertValue
        into: string
    to:
      topic: converted
  both:
    from: numbers
    via:
      - type: convertKeyValue
        into: (long, string)
    to:
      topic: converted_both
",
    );
    for topic in ["converted", "converted_both"] {
        let (_, record) = env.records(topic).remove(0);
        assert_eq!(
            record.key.as_deref(),
            Some(&7i64.to_be_bytes()[..]),
            "{topic}"
        );
        assert_eq!(record.value.as_deref(), Some(&br#"{"v":1}"#[..]), "{topic}");
    }
}

#[test]
fn branch_takes_the_first_match_and_the_default() {
    let env = Env::new();
    env.produce(
        "input",
        1,
        &[
            (Some("a"), r#"{"n": 5}"#),
            (Some("b"), r#"{"n": 50}"#),
            (Some("c"), r#"{"n": 500}"#),
        ],
    );
    env.run(&format!(
        "{STREAMS}
pipelines:
  route:
    from: input
    branch:
      - if:
          expression: value['n'] > 10
        to:
          topic: big
      - if:
          expression: value['n'] > 100
        to:
          topic: never
      - via:
          - type: mapValues
            mapper:
              expression: '{{\"small\": value[\"n\"]}}'
              resultType: json
        to: output
"
    ));
    let big: Vec<_> = env
        .pairs("big")
        .into_iter()
        .map(|(k, _)| k.unwrap())
        .collect();
    assert_eq!(big, ["b", "c"]);
    assert!(env.pairs("never").is_empty());
    assert_eq!(
        env.pairs("output"),
        vec![(Some("a".into()), json!({"small": 5}))]
    );
}

#[test]
fn as_merge_peek_and_for_each() {
    let env = Env::new();
    events(&env);
    env.produce("other", 1, &[(Some("z"), r#"{"n": 9, "kind": "other"}"#)]);
    let seen = env.path("seen.txt");
    env.run(&format!(
        "{STREAMS}
  other:
    topic: other
    keyType: string
    valueType: json
functions:
  remember:
    type: forEach
    globalCode: |
      SEEN = open({seen:?}, 'a')
    code: |
      SEEN.write(key + '\\n')
      SEEN.flush()
pipelines:
  first:
    from: input
    via:
      - type: filter
        if:
          expression: value['kind'] == 'keep'
    as: kept
  second:
    from: kept
    via:
      - type: merge
        stream: other
      - type: peek
        forEach: remember
    to: output
  third:
    from: other
    forEach: remember
"
    ));
    let mut keys: Vec<_> = env
        .pairs("output")
        .into_iter()
        .map(|(k, _)| k.unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ["a", "c", "z"]);
    let mut seen: Vec<String> = std::fs::read_to_string(seen)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        ["a", "c", "z", "z"],
        "peek saw three, forEach saw one"
    );
}

#[test]
fn print_topic_name_extractor_and_partitioner() {
    let env = Env::new();
    events(&env);
    env.log.create_topic("spread", 4).unwrap();
    let printed = env.path("printed.txt");
    env.run(&format!(
        "{STREAMS}
pipelines:
  printing:
    from: input
    print:
      filename: {printed:?}
      label: seen
  printing_mapped:
    from: input
    print:
      filename: {printed:?}
      mapper:
        expression: key + '=' + str(value['n'])
  routing:
    from: input
    toTopicNameExtractor:
      topicNameExtractor:
        expression: \"'routed_' + value['kind'] + '_' + recordContext['topic']\"
  partitioned:
    from: input
    to:
      topic: spread
      partitioner:
        expression: value['n']
"
    ));
    let lines = std::fs::read_to_string(printed).unwrap();
    assert!(
        lines.contains(r#"[seen]: a, {"n":1,"kind":"keep"}"#),
        "{lines}"
    );
    assert!(lines.contains("]: b=2"), "{lines}");
    assert_eq!(env.pairs("routed_keep_input").len(), 2);
    assert_eq!(env.pairs("routed_drop_input").len(), 1);
    let partitions: Vec<u32> = env.records("spread").into_iter().map(|(p, _)| p).collect();
    assert_eq!(partitions, [1, 2, 3]);
}

#[test]
fn repartition_goes_through_an_internal_topic() {
    let env = Env::new();
    events(&env);
    let mut config = RunnerConfig::default();
    config.kafka.insert("application.id".into(), "app".into());
    let file = env.write(
        "app.yaml",
        &format!(
            "{STREAMS}
pipelines:
  rekey:
    from: input
    via:
      - type: selectKey
        mapper:
          expression: value['kind']
          resultType: string
      - type: repartition
        name: by_kind
        numberOfPartitions: 3
      - type: mapValues
        mapper:
          expression: '{{\"n\": value[\"n\"], \"key\": key}}'
          resultType: json
    to: output
"
        ),
    );
    env.run_with(&[&file], config).unwrap();
    let internal = env.records("app-by_kind-repartition");
    assert_eq!(
        env.log.partition_count("app-by_kind-repartition").unwrap(),
        Some(3)
    );
    for (partition, record) in &internal {
        let key = record.key.as_deref().unwrap();
        assert_eq!(*partition, millrace_log::murmur2_partition(key, 3));
    }
    let mut out = env.pairs("output");
    out.sort_by_key(|(_, v)| v["n"].as_i64());
    assert_eq!(
        out[1],
        (Some("drop".into()), json!({"n": 2, "key": "drop"}))
    );
    assert_eq!(out.len(), 3);
}

#[test]
fn timestamp_extractor_sets_record_time() {
    let env = Env::new();
    env.produce("input", 1, &[(Some("a"), r#"{"at": 123456}"#)]);
    env.run(
        "
streams:
  input:
    topic: input
    keyType: string
    valueType: json
    timestampExtractor:
      expression: record['value']['at']
pipelines:
  copy:
    from: input
    to:
      topic: output
",
    );
    assert_eq!(env.records("output")[0].1.timestamp, 123456);
}

/// Records with the given timestamps, keyed `k`, whose values are their timestamps.
fn timed(timestamps: &[i64]) -> Vec<Record> {
    timestamps
        .iter()
        .map(|t| Record {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from(t.to_string())),
            timestamp: *t,
            headers: vec![],
        })
        .collect()
}

#[test]
fn previous_timestamp_is_the_partition_time_across_batches() {
    let env = Env::new();
    // More records than one batch holds, so the partition time must outlive a batch.
    let count = 2_500;
    env.log.create_topic("input", 1).unwrap();
    env.log.append("input", 0, timed(&vec![7; count])).unwrap();
    env.run(
        "
streams:
  input:
    topic: input
    keyType: string
    valueType: string
    timestampExtractor:
      expression: previousTimestamp + 1
pipelines:
  copy:
    from: input
    to:
      topic: output
",
    );
    let stamps: Vec<i64> = env
        .records("output")
        .iter()
        .map(|(_, r)| r.timestamp)
        .collect();
    assert_eq!(stamps, (0..count as i64).collect::<Vec<_>>());
}

#[test]
fn merged_topics_are_one_task_per_partition_read_in_time_order() {
    let env = Env::new();
    env.log.create_topic("odd", 1).unwrap();
    env.log.create_topic("even", 3).unwrap();
    env.log.append("odd", 0, timed(&[1, 3, 5, 7])).unwrap();
    env.log.append("even", 0, timed(&[2, 4, 6])).unwrap();
    env.log.append("even", 2, timed(&[10, 8])).unwrap();
    env.run(
        "
streams:
  odd:
    topic: odd
    keyType: string
    valueType: string
  even:
    topic: even
    keyType: string
    valueType: string
pipelines:
  both:
    from: odd
    via:
      - type: merge
        stream: even
    to:
      topic: output
      keyType: string
      valueType: string
",
    );
    // Task 0_0 reads odd-0 and even-0 together, lowest timestamp first; task 0_2 reads even-2
    // alone, in offset order. Every output record goes to the only partition of `output`.
    let values: Vec<String> = env
        .records("output")
        .iter()
        .map(|(_, r)| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned())
        .collect();
    let task_0: Vec<&str> = values
        .iter()
        .map(String::as_str)
        .filter(|v| !["10", "8"].contains(v))
        .collect();
    assert_eq!(task_0, ["1", "2", "3", "4", "5", "6", "7"], "{values:?}");
    let task_2: Vec<&str> = values
        .iter()
        .map(String::as_str)
        .filter(|v| ["10", "8"].contains(v))
        .collect();
    assert_eq!(task_2, ["10", "8"]);
}

#[test]
fn producer_rules() {
    let env = Env::new();
    env.run(
        "
functions:
  counter:
    type: generator
    globalCode: |
      n = 0
    code: |
      global n
      n += 1
    expression: \"(str(n), {'n': n})\"
    resultType: (string, json)
  pairs:
    type: generator
    globalCode: |
      batch = 0
    code: |
      global batch
      batch += 1
    expression: '[(str(batch), {\"part\": 1}), (str(batch), {\"part\": 2})]'
    resultType: '[(string, json)]'
producers:
  once:
    generator:
      expression: \"('only', {'one': True})\"
      resultType: (string, json)
    to:
      topic: once
      keyType: string
      valueType: json
  counted:
    generator: counter
    count: 7
    batchSize: 3
    condition:
      expression: value['n'] % 2 == 1
    to:
      topic: counted
      keyType: string
      valueType: json
  stopped:
    generator:
      globalCode: |
        m = 0
      code: |
        global m
        m += 1
      expression: \"(str(m), {'m': m})\"
      resultType: (string, json)
    interval: 1ms
    until:
      expression: value['m'] == 4
    to:
      topic: stopped
      keyType: string
      valueType: json
  listed:
    generator: pairs
    count: 3
    to:
      topic: listed
      keyType: string
      valueType: json
",
    );
    assert_eq!(
        env.pairs("once"),
        vec![(Some("only".into()), json!({"one": true}))]
    );
    let counted: Vec<i64> = env
        .pairs("counted")
        .iter()
        .map(|(_, v)| v["n"].as_i64().unwrap())
        .collect();
    assert_eq!(
        counted,
        [1, 3, 5, 7, 9, 11, 13],
        "count 7 of the odd ones (condition retries)"
    );
    let stopped: Vec<i64> = env
        .pairs("stopped")
        .iter()
        .map(|(_, v)| v["m"].as_i64().unwrap())
        .collect();
    assert_eq!(
        stopped,
        [1, 2, 3, 4],
        "the message that meets 'until' is sent, then the producer stops"
    );
    let listed: Vec<Json> = env.pairs("listed").into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        listed,
        [json!({"part": 1}), json!({"part": 2}), json!({"part": 1})]
    );
}

const FAILING: &str = "
streams:
  input:
    topic: input
    keyType: string
    valueType: json
functions:
  invert:
    type: valueTransformer
    expression: '{\"inv\": 1 / value[\"n\"]}'
    resultType: json
pipelines:
  inverting:
    from: input
    via:
      - type: mapValues
        mapper: invert
    to:
      topic: output
";

#[test]
fn stop_on_fail_keeps_earlier_results_and_retries_the_failing_record() {
    let env = Env::new();
    env.produce(
        "input",
        1,
        &[
            (Some("a"), r#"{"n": 2}"#),
            (Some("b"), r#"{"n": 0}"#),
            (Some("c"), r#"{"n": 4}"#),
        ],
    );
    let file = env.write("app.yaml", FAILING);
    let err = env.run_with(&[&file], RunnerConfig::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("ZeroDivisionError: division by zero"),
        "{message}"
    );
    assert!(message.contains("function 'invert'"), "{message}");
    assert!(message.contains("offset=1"), "{message}");
    assert_eq!(
        env.pairs("output"),
        vec![(Some("a".into()), json!({"inv": 0.5}))]
    );
    assert_eq!(env.log.committed("millrace", "input", 0).unwrap(), Some(1));
    // A second run starts at the failing record again.
    assert!(env.run_with(&[&file], RunnerConfig::default()).is_err());
    assert_eq!(env.pairs("output").len(), 1, "nothing is produced twice");
}

#[test]
fn continue_on_fail_skips_bad_records_and_bad_bytes() {
    let env = Env::new();
    env.produce(
        "input",
        1,
        &[
            (Some("a"), r#"{"n": 2}"#),
            (Some("b"), r#"{"n": 0}"#),
            (Some("x"), "{not json"),
            (Some("c"), r#"{"n": 4}"#),
        ],
    );
    let file = env.write("app.yaml", FAILING);
    let mut config = RunnerConfig::default();
    config.error_handling.process.handler = Handler::ContinueOnFail;
    config.error_handling.consume.handler = Handler::ContinueOnFail;
    let summary = env.run_with(&[&file], config).unwrap();
    assert_eq!(summary.records_processed, 4);
    assert_eq!(summary.records_written, 2);
    assert_eq!(summary.messages_produced, 0);
    let keys: Vec<_> = env
        .pairs("output")
        .into_iter()
        .map(|(k, _)| k.unwrap())
        .collect();
    assert_eq!(keys, ["a", "c"]);
}

#[test]
fn a_restart_continues_after_committed_offsets() {
    let env = Env::new();
    env.produce(
        "input",
        2,
        &[(Some("a"), r#"{"n": 1}"#), (Some("b"), r#"{"n": 2}"#)],
    );
    let file = env.write(
        "app.yaml",
        "
streams:
  input:
    topic: input
    keyType: string
    valueType: json
pipelines:
  copy:
    from: input
    to:
      topic: output
",
    );
    env.run_with(&[&file], RunnerConfig::default()).unwrap();
    env.produce("input", 2, &[(Some("c"), r#"{"n": 3}"#)]);
    let summary = env.run_with(&[&file], RunnerConfig::default()).unwrap();
    assert_eq!(summary.records_processed, 1);
    let mut keys: Vec<_> = env
        .pairs("output")
        .into_iter()
        .map(|(k, _)| k.unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ["a", "b", "c"]);
}

#[test]
fn several_threads_process_every_partition() {
    let env = Env::new();
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    let records: Vec<(Option<&str>, &str)> = keys
        .iter()
        .map(|k| (Some(k.as_str()), r#"{"n": 1}"#))
        .collect();
    env.produce("input", 4, &records);
    let file = env.write(
        "app.yaml",
        &format!(
            "{STREAMS}
pipelines:
  copy:
    from: input
    via:
      - type: mapValues
        mapper:
          expression: '{{\"key\": key}}'
          resultType: json
    to: output
"
        ),
    );
    let mut config = RunnerConfig::default();
    config.kafka.insert("num.stream.threads".into(), "3".into());
    env.run_with(&[&file], config).unwrap();
    let out = env.pairs("output");
    assert_eq!(out.len(), 200);
    assert!(out.iter().all(|(k, v)| v["key"].as_str() == k.as_deref()));
}

/// A pipeline with no operations between a `json` stream and a `json` sink.
const COPY_JSON: &str = "
streams:
  input:
    topic: input
    keyType: string
    valueType: json
  output:
    topic: output
    keyType: string
    valueType: json
pipelines:
  copy:
    from: input
    to: output
";

#[test]
fn bytes_copied_unchanged_are_checked_against_the_declared_type() {
    let env = Env::new();
    env.produce(
        "input",
        1,
        &[
            (Some("a"), r#"{"n": 1}"#),
            (Some("x"), "{not json"),
            (Some("b"), r#"[2]"#),
        ],
    );
    let file = env.write("app.yaml", COPY_JSON);
    let message = env
        .run_with(&[&file], RunnerConfig::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("Deserialization error"), "{message}");
    assert!(message.contains("offset=1"), "{message}");
    assert!(message.contains("invalid JSON"), "{message}");
    assert_eq!(
        env.pairs("output"),
        vec![(Some("a".into()), json!({"n": 1}))]
    );

    let mut config = RunnerConfig::default();
    config.error_handling.consume.handler = Handler::ContinueOnFail;
    let summary = env.run_with(&[&file], config).unwrap();
    assert_eq!((summary.records_processed, summary.records_written), (2, 1));
    let keys: Vec<_> = env
        .pairs("output")
        .into_iter()
        .map(|(k, _)| k.unwrap())
        .collect();
    assert_eq!(keys, ["a", "b"]);
}

#[test]
fn stopping_interrupts_a_function_that_never_returns() {
    let env = Env::new();
    env.produce(
        "input",
        1,
        &[
            (Some("a"), r#"{"n": 1}"#),
            (Some("b"), r#"{"n": 2}"#),
            (Some("c"), r#"{"n": 3}"#),
        ],
    );
    // The function leaves a marker file when it gets stuck.
    let marker = env.path("stuck");
    let file = env.write(
        "app.yaml",
        &format!(
            "{STREAMS}
functions:
  stuck_on_two:
    type: valueTransformer
    code: |
      if value['n'] == 2:
        open({marker:?}, 'w').close()
      while value['n'] == 2:
        pass
    expression: value
pipelines:
  copy:
    from: input
    via:
      - type: mapValues
        mapper: stuck_on_two
    to: output
"
        ),
    );
    let config = {
        let mut config = RunnerConfig::default();
        config
            .definitions
            .push(("app".into(), DefinitionSource::File(file.to_path_buf())));
        config
    };
    let loaded = load_definitions(&config.definitions, false);
    assert!(!loaded.has_errors());
    let stop = Arc::new(AtomicBool::new(false));
    let options = RunOptions {
        slow_call_warning: std::time::Duration::from_millis(100),
        ..RunOptions::new(false, stop.clone())
    };
    let log = env.log.clone();
    let running = std::thread::spawn(move || run(log, &loaded.definitions, config, options));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the function gets stuck"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let stopping = std::time::Instant::now();
    while !running.is_finished() {
        assert!(
            stopping.elapsed() < std::time::Duration::from_secs(10),
            "the run stops although its function never returns"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let summary = running.join().unwrap().unwrap();
    assert_eq!(summary.records_processed, 1);
    assert_eq!(
        env.pairs("output"),
        vec![(Some("a".into()), json!({"n": 1}))]
    );
    assert_eq!(
        env.log.committed("millrace", "input", 0).unwrap(),
        Some(1),
        "the interrupted record is read again by the next run"
    );
}

/// Appends JSON values with timestamps to partition 0 of a one-partition topic.
fn append_json(env: &Env, topic: &str, records: &[(&str, Json, i64)]) {
    env.log.ensure_topic(topic).unwrap();
    let records = records
        .iter()
        .map(|(k, v, t)| Record {
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: (!v.is_null()).then(|| Bytes::from(v.to_string())),
            timestamp: *t,
            headers: vec![],
        })
        .collect();
    env.log.append(topic, 0, records).unwrap();
}

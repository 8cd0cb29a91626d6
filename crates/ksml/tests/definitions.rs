//! Loading KSML definitions: the diagnostics of bad definitions, each with its place.

use millrace_ksml::config::DefinitionSource;
use millrace_ksml::load::load_definitions;

/// The diagnostics of a definition, as printed.
fn problems(yaml: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, yaml).unwrap();
    let loaded = load_definitions(
        &[("bad".into(), DefinitionSource::File(file.clone()))],
        false,
    );
    let prefix = format!("{}:", file.display());
    loaded
        .diagnostics
        .iter()
        .map(|d| d.to_string().replace(&prefix, "bad.yaml:"))
        .collect()
}

/// Fails unless every expected diagnostic was reported.
fn assert_reported(found: &[String], expected: &[&str]) {
    for e in expected {
        assert!(found.iter().any(|f| f == e), "missing {e:?} in {found:#?}");
    }
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let found = problems("streams:\n  a: [1, 2\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("bad.yaml:3:1: "), "{found:?}");
}

#[test]
fn semantic_errors_list_every_problem_with_its_place() {
    let found = problems(
        "streams:
  input:
    topic: input
    keyType: string
functions:
  pred:
    type: reducer
    expression: value1
pipelines:
  p:
    from: input
    via:
      - type: filtr
        if: pred
      - type: filter
        if: pred
      - type: mapValues
        mapper: nowhere
      - type: aggregate
        initializer:
          expression: 0
    to: output
  q:
    from: nothing
    cacheSizeBytes: 5
producers:
  r:
    generator:
      expression: \"('k', 1)\"
    to:
      topic: out
      keyType: strng
",
    );
    let expected = [
        "bad.yaml:3:5: stream 'input' is missing required field 'valueType'",
        "bad.yaml:13:15: unknown operation type 'filtr'",
        "bad.yaml:16:13: function 'pred' is a reducer, but a predicate is expected here",
        "bad.yaml:18:17: unknown function 'nowhere'",
        "bad.yaml:19:9: operation 'aggregate' needs a grouped stream (groupByKey or groupBy before it), but follows a stream",
        "bad.yaml:19:9: operation 'aggregate' needs 'aggregator' to add a value of a grouped stream",
        "bad.yaml:24:11: 'nothing' is not a stream, table, globalTable or pipeline output",
        "bad.yaml:25:5: warning: unknown key 'cacheSizeBytes' in pipeline 'q'",
        "bad.yaml:32:16: invalid type 'strng': unknown type 'strng'",
    ];
    assert_reported(&found, &expected);
}

#[test]
fn python_syntax_errors_point_at_the_yaml_line() {
    let found = problems(
        "functions:
  broken:
    type: predicate
    code: |
      x = 1
      if x
        return True
pipelines: {}
",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("bad.yaml:6:1: Python syntax error in function 'broken'"),
        "{found:?}"
    );
}

#[test]
fn unsupported_notations_and_global_tables_say_so() {
    let found = problems(
        "streams:
  sensors:
    topic: sensors
    keyType: string
    valueType: avro:SensorData
globalTables:
  users:
    topic: users
    keyType: string
    valueType: json
pipelines:
  a:
    from: sensors
    to:
      topic: out
  b:
    from: users
    to:
      topic: out
",
    );
    assert!(
        found.contains(&"bad.yaml:3:5: the avro notation is not supported yet".to_string())
            || found
                .iter()
                .any(|f| f.ends_with("the avro notation is not supported yet")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.contains("pipelines reading a globalTable ('users') are not supported yet")),
        "{found:#?}"
    );
}

#[test]
fn strict_turns_unknown_keys_into_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.yaml");
    std::fs::write(
        &file,
        "streams:\n  s:\n    topic: t\n    keyType: string\n    valueType: json\n    extra: 1\n",
    )
    .unwrap();
    let sources = [("x".to_string(), DefinitionSource::File(file))];
    assert!(!load_definitions(&sources, false).has_errors());
    assert!(load_definitions(&sources, true).has_errors());
}

#[test]
fn producer_stores_are_refused_and_store_fields_not_acted_on_are_named() {
    let found = problems(
        "streams:
  s:
    topic: s
    keyType: string
    valueType: long
stores:
  windows:
    type: session
    timestamped: true
    keyType: string
    valueType: long
  counts:
    type: keyValue
    keyType: string
    valueType: long
  history:
    type: keyValue
    versioned: true
    historyRetention: 1h
    keyType: string
    valueType: long
functions:
  uses_window:
    type: forEach
    stores: [windows]
    code: pass
  generate:
    type: generator
    stores: [counts]
    expression: \"('k', 1)\"
producers:
  p:
    generator: generate
    to:
      topic: out
      keyType: string
      valueType: long
pipelines:
  q:
    from: s
    via:
      - type: groupByKey
      - type: count
        store: history
      - type: toStream
    to: out
",
    );
    // Kafka Streams has no timestamped session stores; an operation's store keeps the
    // latest value, not versions.
    let expected = [
        "bad.yaml:8:5: warning: store 'windows': 'timestamped' is not acted on yet",
        "bad.yaml:17:5: warning: store 'history': 'versioned' is not acted on yet",
        "bad.yaml:17:5: warning: store 'history': 'historyRetention' is not acted on yet",
        "bad.yaml:29:14: function 'generate' of a producer uses state stores: stores belong to the tasks that run pipelines, so only pipeline functions can use them",
    ];
    assert_reported(&found, &expected);
}

#[test]
fn stateful_operations_must_follow_the_right_stage() {
    let found = problems(
        "streams:
  s:
    topic: s
    keyType: string
    valueType: long
pipelines:
  ends_grouped:
    from: s
    via:
      - type: groupByKey
    to: out
  table_needs_to_stream:
    from: s
    via:
      - type: groupByKey
      - type: count
      - type: peek
        forEach:
          expression: None
    to: out
  windows:
    from: s
    via:
      - type: groupByKey
      - type: windowByTime
        windowType: hopping
        duration: 1m
        advanceBy: 2m
      - type: count
      - type: toStream
      - type: join
        stream: s
    to: out
",
    );
    let expected = [
        "bad.yaml:8:5: the pipeline ends on a grouped stream: aggregate it (count, reduce, aggregate) first",
        "bad.yaml:17:9: operation 'peek' does not apply to a table (KSML's tables take filter, filterNot, mapValues, suppress, groupBy, joins and toStream): put toStream before it",
        "bad.yaml:25:9: 'advanceBy' must be more than zero and at most 'duration'",
        "bad.yaml:31:9: operation 'join' needs 'valueJoiner' to join the values",
    ];
    assert_reported(&found, &expected);
}

#[test]
fn suppress_settings_are_checked() {
    let found = problems(
        "streams:
  s:
    topic: s
    keyType: string
    valueType: long
pipelines:
  not_windowed:
    from: s
    via:
      - type: groupByKey
      - type: count
      - type: suppress
        until: windowCloses
      - type: toStream
    to: out
  bad_buffer:
    from: s
    via:
      - type: groupByKey
      - type: windowByTime
        windowType: tumbling
        duration: 1m
      - type: count
      - type: suppress
        until: windowCloses
        maxRecords: lots
        bufferFullStrategy: emitEarlyWhenFull
      - type: toStream
    to: out
",
    );
    let expected = [
        "bad.yaml:12:9: operation 'suppress' needs a windowed table (suppress until windowCloses), but follows a table",
        "bad.yaml:24:9: 'maxRecords' must be a whole number above zero, found 'lots'",
        "bad.yaml:24:9: suppress until windowCloses emits each window once, so its buffer cannot emit early: use bufferFullStrategy shutdownWhenFull",
    ];
    assert_reported(&found, &expected);
}

#[test]
fn what_ksml_accepts_from_its_own_examples_passes() {
    let found = problems(
        "streams:
  input:
    topic: input
    keyType: string
    valueType: json
  windowed:
    topic: windowed
    keyType: json:windowed(string)
    valueType: long
functions:
  rekey:
    type: keyValueMapper
    parameters:
      - name: value
        type: object
    expression: (value['id'], value)
    resultType: (string, json)
  make_one:
    code: |
      return ('k', {'id': 'k'})
producers:
  p:
    generator: make_one
    to: input
pipelines:
  by_id:
    from: input
    via:
      - type: map
        mapper: rekey
    to:
      topic: out
",
    );
    assert!(
        found.iter().all(|f| f.contains("warning:")),
        "a keyValueMapper in map, a function without type as generator, type object and \
         json:windowed(string) are all KSML: {found:#?}"
    );
}

#[test]
fn grouped_tables_need_adder_and_subtractor_and_cogroup_is_aggregated_once() {
    let found = problems(
        "tables:
  t:
    topic: t
    keyType: string
    valueType: long
streams:
  s:
    topic: s
    keyType: string
    valueType: long
pipelines:
  grouped_table:
    from: t
    via:
      - type: groupBy
        mapper:
          expression: (key, value)
          resultType: (string, long)
      - type: reduce
        reducer:
          expression: value1 + value2
      - type: toStream
    to: out
  cogrouped:
    from: s
    via:
      - type: groupByKey
      - type: cogroup
        aggregator:
          expression: aggregatedValue + value
      - type: cogroup
        aggregator:
          expression: aggregatedValue + value
    to: out
  counted_cogroup:
    from: s
    via:
      - type: groupByKey
      - type: cogroup
        aggregator:
          expression: aggregatedValue + value
      - type: count
    to: out
",
    );
    let expected = [
        "bad.yaml:19:9: operation 'reduce' needs 'adder' to add a new value to a grouped table's aggregate",
        "bad.yaml:19:9: operation 'reduce' needs 'subtractor' to take an old value out of a grouped table's aggregate",
        "bad.yaml:31:9: cogroup of a cogrouped stream is not supported (KSML refuses it too): one cogroup per grouped stream",
        "bad.yaml:42:9: operation 'count' needs a grouped stream (a cogrouped stream is aggregated with aggregate), but follows a cogrouped stream",
    ];
    assert_reported(&found, &expected);
}

#[test]
fn snippets_and_stores_are_read_as_ksml_reads_them() {
    let found = problems(
        "streams:
  s:
    topic: s
    keyType: string
    valueType: json
stores:
  untyped:
    type: keyValue
functions:
  start:
    type: initializer
    expression: {\"total\": 0}
    resultType: json
  listed:
    type: valueTransformer
    stores: [untyped]
    expression: [value, key]
pipelines:
  p:
    from: s
    via:
      - type: mapValues
        mapper: listed
    to: out
",
    );
    // A store without types is accepted (they are optional in KSML); an expression written
    // as a YAML mapping is no expression to KSML, and one written as a list is its text.
    let expected = [
        "bad.yaml:12:17: warning: 'expression' is a YAML mapping, which KSML reads as no expression (the function returns None): quote it to return this dict",
    ];
    assert_reported(&found, &expected);
    assert_eq!(found.len(), 1, "{found:?}");
}

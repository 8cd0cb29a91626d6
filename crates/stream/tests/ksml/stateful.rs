//! State: stores used by Python functions, changelogs and restores, and the stateful
//! operations (grouping, count, reduce, aggregate, windows).

use super::*;

/// A running count per key kept by a Python function in a keyValue store; `{options}` adds
/// store fields.
fn counting_definition(options: &str) -> String {
    format!(
        "
streams:
  input:
    topic: input
    keyType: string
    valueType: string
stores:
  counts:
    type: keyValue
    keyType: string
    valueType: long
    {options}
functions:
  count:
    type: valueTransformer
    stores: [counts]
    code: |
      if value == 'fail':
        counts.put(key, 1000)
        raise ValueError('failing on purpose')
      n = (counts.get(key) or 0) + 1
      counts.put(key, n)
    expression: n
    resultType: long
pipelines:
  p:
    from: input
    via:
      - type: mapValues
        mapper: count
    to:
      topic: output
      keyType: string
      valueType: long
"
    )
}

/// (key, count) of the counting definition's output.
fn counts(env: &Env) -> Vec<(String, i64)> {
    env.records("output")
        .into_iter()
        .map(|(_, r)| {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let value = i64::from_be_bytes(r.value.unwrap().as_ref().try_into().unwrap());
            (key, value)
        })
        .collect()
}

fn append_values(env: &Env, values: &[(&str, &str)]) {
    env.log.ensure_topic("input").unwrap();
    let records = values
        .iter()
        .map(|(k, v)| Record {
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            timestamp: 1_000,
            headers: vec![],
        })
        .collect();
    env.log.append("input", 0, records).unwrap();
}

#[test]
fn an_in_memory_store_is_restored_from_its_changelog_on_restart() {
    let env = Env::new();
    let yaml = counting_definition("logging: true");
    append_values(&env, &[("a", "x"), ("b", "x"), ("a", "x")]);
    env.run(&yaml);
    assert_eq!(
        counts(&env),
        [("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]
    );
    let changelog = "millrace-counts-changelog";
    let config = env.log.topic_config(changelog).unwrap().unwrap();
    assert_eq!(config, millrace_log::TopicConfig::compacted());
    append_values(&env, &[("a", "x"), ("b", "x")]);
    env.run(&yaml);
    assert_eq!(&counts(&env)[3..], [("a".into(), 3), ("b".into(), 2)]);
}

#[test]
fn a_persistent_store_keeps_its_entries_without_a_changelog() {
    let env = Env::new();
    let yaml = counting_definition("persistent: true");
    append_values(&env, &[("a", "x"), ("a", "x")]);
    env.run(&yaml);
    append_values(&env, &[("a", "x")]);
    env.run(&yaml);
    assert_eq!(counts(&env).last(), Some(&("a".into(), 3)));
    assert_eq!(
        env.log
            .partition_count("millrace-counts-changelog")
            .unwrap(),
        None
    );
}

#[test]
fn an_in_memory_store_without_changelog_starts_empty() {
    let env = Env::new();
    let yaml = counting_definition("persistent: false");
    append_values(&env, &[("a", "x")]);
    env.run(&yaml);
    append_values(&env, &[("a", "x")]);
    env.run(&yaml);
    assert_eq!(counts(&env), [("a".into(), 1), ("a".into(), 1)]);
}

#[test]
fn a_runs_counters_show_failed_records_store_entries_and_python_functions() {
    use std::sync::atomic::Ordering;
    let env = Env::new();
    let yaml = counting_definition("persistent: false");
    append_values(
        &env,
        &[
            ("a", "x"),
            ("b", "x"),
            ("a", "fail"),
            ("c", "x"),
            ("a", "x"),
        ],
    );
    let file = env.write("app.yaml", &yaml);
    let mut config = RunnerConfig::default();
    config.error_handling.process.handler = Handler::ContinueOnFail;
    let counters = Arc::new(RunCounters::default());
    env.run_counted(&[&file], config, counters.clone()).unwrap();
    assert_eq!(counters.processed.load(Ordering::Relaxed), 5);
    assert_eq!(counters.failed.load(Ordering::Relaxed), 1);
    assert_eq!(counters.written.load(Ordering::Relaxed), 4);
    let sizes = counters.store_sizes();
    assert_eq!(sizes.get("counts"), Some(&3), "{sizes:?}");
    let functions = counters
        .python
        .get()
        .expect("the run's functions")
        .busy_seconds();
    assert!(
        functions.iter().any(|(name, _)| name.contains("'count'")),
        "{functions:?}"
    );
}

#[test]
fn a_record_stopping_the_run_leaves_no_store_writes() {
    let env = Env::new();
    let yaml = counting_definition("logging: true\n    persistent: true");
    append_values(&env, &[("a", "x"), ("a", "fail")]);
    let file = env.write("app.yaml", &yaml);
    let stopped = env.run_with(&[&file], RunnerConfig::default());
    assert!(matches!(stopped, Err(RunError::Stopped(_))), "{stopped:?}");
    // Run again with a function that no longer fails: the failing record's put of 1000 was
    // undone, so the count goes on from 1.
    let fixed = yaml.replace(
        "      if value == 'fail':\n        counts.put(key, 1000)\n        raise ValueError('failing on purpose')\n",
        "",
    );
    assert_ne!(fixed, yaml);
    let file = env.write("app.yaml", &fixed);
    append_values(&env, &[("a", "x")]);
    env.run_with(&[&file], RunnerConfig::default()).unwrap();
    assert_eq!(
        counts(&env),
        [("a".into(), 1), ("a".into(), 2), ("a".into(), 3)]
    );
}

/// Appends (key, value, timestamp) records to partition 0 of `input`.
fn append_timed(env: &Env, records: &[(&str, &str, i64)]) {
    env.log.ensure_topic("input").unwrap();
    let records = records
        .iter()
        .map(|(k, v, t)| Record {
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            timestamp: *t,
            headers: vec![],
        })
        .collect();
    env.log.append("input", 0, records).unwrap();
}

/// A pipeline from a string/string `input` stream through `via` to `output` with `value_type`
/// values and string keys.
fn stateful_pipeline(via: &str, value_type: &str) -> String {
    format!(
        "
streams:
  input:
    topic: input
    keyType: string
    valueType: string
pipelines:
  p:
    from: input
    via:
{via}
    to:
      topic: output
      keyType: string
      valueType: {value_type}
"
    )
}

/// (key, long value) pairs of `output`.
fn long_pairs(env: &Env) -> Vec<(String, i64)> {
    counts(env)
}

#[test]
fn count_with_caching_emits_the_latest_count_per_key_at_commit() {
    let env = Env::new();
    append_timed(
        &env,
        &[
            ("a", "x", 1),
            ("b", "x", 2),
            ("a", "x", 3),
            ("c", "x", 4),
            ("a", "x", 5),
        ],
    );
    let yaml = stateful_pipeline(
        "      - type: groupByKey\n      - type: count\n      - type: toStream",
        "long",
    );
    env.run(&yaml);
    assert_eq!(
        long_pairs(&env),
        [("a".into(), 3), ("b".into(), 1), ("c".into(), 1)]
    );
    // The default store is persistent, cached and logged, named after the operation.
    let changelog = "millrace-p_via_step2_count-changelog";
    assert_eq!(env.log.partition_count(changelog).unwrap(), Some(1));
    // A second run counts on from the store.
    append_timed(&env, &[("b", "x", 6)]);
    env.run(&yaml);
    assert_eq!(long_pairs(&env).last(), Some(&("b".into(), 2)));

    // No cache space turns caching off, as in Kafka Streams: every update goes on.
    let uncached = Env::new();
    append_timed(&uncached, &[("a", "x", 1), ("b", "x", 2), ("a", "x", 3)]);
    let mut config = RunnerConfig::default();
    config
        .kafka
        .insert("cache.max.bytes.buffering".into(), "0".into());
    let file = uncached.write("app.yaml", &yaml);
    uncached.run_with(&[&file], config).unwrap();
    assert_eq!(
        long_pairs(&uncached),
        [("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]
    );
}

#[test]
fn count_without_caching_emits_every_update_and_restores_from_its_changelog() {
    let env = Env::new();
    append_timed(&env, &[("a", "x", 1), ("b", "x", 2), ("a", "x", 3)]);
    let yaml = stateful_pipeline(
        "      - type: groupByKey
      - type: count
        store:
          name: counts
          type: keyValue
          caching: false
          logging: true
      - type: toStream",
        "long",
    );
    env.run(&yaml);
    assert_eq!(
        long_pairs(&env),
        [("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]
    );
    append_timed(&env, &[("a", "x", 4)]);
    env.run(&yaml);
    assert_eq!(long_pairs(&env).last(), Some(&("a".into(), 3)));
}

#[test]
fn group_by_a_new_key_goes_through_a_repartition_topic() {
    let env = Env::new();
    append_timed(
        &env,
        &[
            ("1", "red", 1),
            ("2", "blue", 2),
            ("3", "red", 3),
            ("4", "red", 4),
        ],
    );
    let yaml = stateful_pipeline(
        "      - type: groupBy
        name: by_colour
        mapper:
          expression: value
          resultType: string
      - type: count
        store:
          type: keyValue
          caching: false
      - type: toStream",
        "long",
    );
    env.run(&yaml);
    assert_eq!(
        env.log
            .partition_count("millrace-by_colour-repartition")
            .unwrap(),
        Some(1)
    );
    let final_counts: std::collections::BTreeMap<String, i64> =
        long_pairs(&env).into_iter().collect();
    assert_eq!(
        final_counts,
        [("blue".to_string(), 1), ("red".to_string(), 3)].into()
    );
}

#[test]
fn reduce_and_aggregate_combine_values_per_key() {
    let env = Env::new();
    append_timed(&env, &[("a", "5", 1), ("b", "1", 2), ("a", "7", 3)]);
    let reduce = stateful_pipeline(
        "      - type: convertValue
        into: long
      - type: groupByKey
      - type: reduce
        reducer:
          expression: value1 + value2
        store:
          type: keyValue
          caching: false
      - type: toStream",
        "long",
    );
    env.run(&reduce);
    assert_eq!(
        long_pairs(&env),
        [("a".into(), 5), ("b".into(), 1), ("a".into(), 12)]
    );

    let env = Env::new();
    append_timed(&env, &[("a", "5", 1), ("b", "1", 2), ("a", "7", 3)]);
    let aggregate = stateful_pipeline(
        "      - type: groupByKey
      - type: aggregate
        initializer:
          expression: \"{'count': 0, 'total': 0}\"
          resultType: json
        aggregator:
          expression: \"{'count': aggregatedValue['count'] + 1, 'total': aggregatedValue['total'] + int(value)}\"
          resultType: json
      - type: toStream",
        "json",
    );
    env.run(&aggregate);
    assert_eq!(
        env.pairs("output"),
        [
            (Some("a".into()), json!({"count": 2, "total": 12})),
            (Some("b".into()), json!({"count": 1, "total": 1})),
        ]
    );
}

/// A windowed count whose toStream names each window `key@start`.
fn windowed_count(window: &str) -> String {
    stateful_pipeline(
        &format!(
            "      - type: groupByKey
      - type: windowByTime
{window}
      - type: count
        store:
          type: window
          caching: false
      - type: toStream
        mapper:
          expression: key['key'] + '@' + str(key['start'] // 1000) + '-' + str(key['end'] // 1000)
          resultType: string"
        ),
        "long",
    )
}

#[test]
fn tumbling_windows_count_per_window_and_drop_records_after_grace() {
    let env = Env::new();
    append_timed(
        &env,
        &[
            ("a", "x", 0),
            ("a", "x", 30_000),
            ("a", "x", 61_000),
            // Window [0, 60) closed at 60 s plus 5 s of grace; stream time is 66 s.
            ("b", "x", 66_000),
            ("a", "x", 10_000),
            ("a", "x", 62_000),
        ],
    );
    let yaml = windowed_count(
        "        windowType: tumbling
        duration: 1m
        grace: 5s",
    );
    let file = env.write("app.yaml", &yaml);
    let summary = env.run_with(&[&file], RunnerConfig::default()).unwrap();
    assert_eq!(
        long_pairs(&env),
        [
            ("a@0-60".into(), 1),
            ("a@0-60".into(), 2),
            ("a@60-120".into(), 1),
            ("b@60-120".into(), 1),
            ("a@60-120".into(), 2),
        ]
    );
    assert_eq!(summary.late_records_dropped, 1);
}

#[test]
fn stream_time_survives_a_restart_so_late_records_stay_late() {
    let env = Env::new();
    append_timed(&env, &[("a", "x", 10_000), ("a", "x", 130_000)]);
    let yaml = windowed_count(
        "        windowType: tumbling
        duration: 1m",
    );
    env.run(&yaml);
    // After the restart, window [0, 60 s) is still closed: stream time (130 s) was kept with
    // the committed offset, as Kafka Streams keeps it.
    append_timed(&env, &[("a", "x", 20_000)]);
    let file = env.write("app.yaml", &yaml);
    let summary = env.run_with(&[&file], RunnerConfig::default()).unwrap();
    assert_eq!(summary.late_records_dropped, 1);
    assert_eq!(
        long_pairs(&env),
        [("a@0-60".into(), 1), ("a@120-180".into(), 1)]
    );
}

#[test]
fn hopping_windows_count_a_record_in_each_window_it_falls_in() {
    let env = Env::new();
    append_timed(&env, &[("a", "x", 45_000), ("a", "x", 70_000)]);
    let yaml = windowed_count(
        "        windowType: hopping
        duration: 1m
        advanceBy: 30s",
    );
    env.run(&yaml);
    assert_eq!(
        long_pairs(&env),
        [
            ("a@0-60".into(), 1),
            ("a@30-90".into(), 1),
            ("a@30-90".into(), 2),
            ("a@60-120".into(), 1),
        ]
    );
}

#[test]
fn sliding_windows_end_and_start_at_records_of_the_key() {
    let env = Env::new();
    append_timed(
        &env,
        &[
            ("a", "x", 1_000),
            ("a", "x", 5_000),
            ("a", "x", 20_000),
            // Out of order, within grace: windows still open are worked out again.
            ("a", "x", 12_000),
            // Every window of a record at 3 s has closed (stream time 20 s minus 5 s grace).
            ("a", "x", 3_000),
        ],
    );
    let yaml = windowed_count(
        "        windowType: sliding
        timeDifference: 10s
        grace: 5s",
    );
    let file = env.write("app.yaml", &yaml);
    let summary = env.run_with(&[&file], RunnerConfig::default()).unwrap();
    assert_eq!(
        long_pairs(&env),
        [
            // Records before the time difference share the window [0, 10 s].
            ("a@0-10".into(), 1),
            ("a@0-10".into(), 2),
            // The window just after the record at 1 s, holding the one at 5 s.
            ("a@1-11".into(), 1),
            ("a@10-20".into(), 1),
            // 12 s: [2, 12] has closed; the window after 5 s, the one ending at 20 s and the
            // new one after 12 s take it in.
            ("a@5-15".into(), 1),
            ("a@10-20".into(), 2),
            ("a@12-22".into(), 1),
        ]
    );
    assert_eq!(summary.late_records_dropped, 1);
}

#[test]
fn window_stores_delete_windows_past_their_retention() {
    let env = Env::new();
    let minutes: Vec<(&str, &str, i64)> = (0..=10).map(|m| ("a", "x", m * 60_000)).collect();
    append_timed(&env, &minutes);
    let yaml = stateful_pipeline(
        "      - type: groupByKey
      - type: windowByTime
        windowType: tumbling
        duration: 1m
      - type: count
        store:
          name: per_minute
          type: window
          retention: 2m
          caching: false
          logging: true
      - type: toStream
        mapper:
          expression: key['key']
          resultType: string",
        "long",
    );
    env.run(&yaml);
    assert_eq!(long_pairs(&env).len(), 11, "one result per window");
    // The changelog's last word on each window: windows that started before stream time
    // (10 min) minus the retention (2 min) are deleted.
    let mut latest = std::collections::BTreeMap::new();
    for (_, record) in env.records("millrace-per_minute-changelog") {
        let key = record.key.unwrap();
        let start = i64::from_be_bytes(key[key.len() - 12..key.len() - 4].try_into().unwrap());
        latest.insert(start / 60_000, record.value.is_some());
    }
    let kept: Vec<i64> = latest
        .iter()
        .filter(|(_, kept)| **kept)
        .map(|(m, _)| *m)
        .collect();
    assert_eq!(kept, [8, 9, 10]);
    assert_eq!(latest.len(), 11);
}

#[test]
fn suppress_until_window_closes_emits_each_window_once_across_restarts() {
    let env = Env::new();
    append_timed(
        &env,
        &[
            ("a", "x", 0),
            ("a", "x", 30_000),
            ("b", "x", 40_000),
            ("a", "x", 61_000),
            ("a", "x", 70_000),
        ],
    );
    let yaml = stateful_pipeline(
        "      - type: groupByKey
      - type: windowByTime
        windowType: tumbling
        duration: 1m
      - type: count
        store:
          type: window
          caching: false
      - type: suppress
        until: windowCloses
      - type: toStream
        mapper:
          expression: key['key'] + '@' + str(key['start'] // 1000)
          resultType: string",
        "long",
    );
    env.run(&yaml);
    // Window [60 s, 120 s) is still open at stream time 70 s.
    assert_eq!(long_pairs(&env), [("a@0".into(), 2), ("b@0".into(), 1)]);
    // The held update survives the restart (the buffer is logged) and goes once its window
    // closes.
    append_timed(&env, &[("c", "x", 125_000)]);
    env.run(&yaml);
    assert_eq!(
        long_pairs(&env),
        [("a@0".into(), 2), ("b@0".into(), 1), ("a@60".into(), 2)]
    );
}

#[test]
fn suppress_until_time_limit_emits_the_latest_update_after_the_limit() {
    let env = Env::new();
    append_timed(
        &env,
        &[
            ("a", "x", 0),
            ("a", "x", 5_000),
            ("b", "x", 8_000),
            ("c", "x", 12_000),
        ],
    );
    let yaml = stateful_pipeline(
        "      - type: groupByKey
      - type: count
        store:
          type: keyValue
          caching: false
      - type: suppress
        until: timeLimit
        duration: 10s
      - type: toStream",
        "long",
    );
    env.run(&yaml);
    assert_eq!(long_pairs(&env), [("a".into(), 2)]);
}

#[test]
fn a_full_suppress_buffer_emits_early_or_stops_the_run() {
    let records: Vec<(String, i64)> = (0..5).map(|i| (format!("k{i}"), i)).collect();
    let input: Vec<(&str, &str, i64)> =
        records.iter().map(|(k, t)| (k.as_str(), "x", *t)).collect();
    let definition = |strategy: &str| {
        stateful_pipeline(
            &format!(
                "      - type: groupByKey
      - type: count
        store:
          type: keyValue
          caching: false
      - type: suppress
        until: timeLimit
        duration: 1h
        maxRecords: 2
        bufferFullStrategy: {strategy}
      - type: toStream"
            ),
            "long",
        )
    };
    let env = Env::new();
    append_timed(&env, &input);
    env.run(&definition("emitEarlyWhenFull"));
    // Each third key pushes the first held one out.
    assert_eq!(
        long_pairs(&env),
        [("k0".into(), 1), ("k1".into(), 1), ("k2".into(), 1)]
    );
    let env = Env::new();
    append_timed(&env, &input);
    let file = env.write("app.yaml", &definition("shutdownWhenFull"));
    let stopped = env.run_with(&[&file], RunnerConfig::default());
    assert!(
        matches!(&stopped, Err(RunError::Stopped(m)) if m.contains("the buffer is full")),
        "{stopped:?}"
    );
}

/// Three updates of the `users` table: u1 Ann, u2 Bob, u1 Anna.
fn append_user_updates(env: &Env) {
    append_json(
        env,
        "users",
        &[
            ("u1", json!({"name": "Ann"}), 1),
            ("u2", json!({"name": "Bob"}), 2),
            ("u1", json!({"name": "Anna"}), 3),
        ],
    );
}

const USERS_AND_CLICKS: &str = "
tables:
  users:
    topic: users
    keyType: string
    valueType: json
streams:
  clicks:
    topic: clicks
    keyType: string
    valueType: json
";

#[test]
fn a_table_read_from_a_topic_passes_on_the_latest_value_per_key() {
    let env = Env::new();
    append_user_updates(&env);
    env.run(&format!(
        "{USERS_AND_CLICKS}
pipelines:
  p:
    from: users
    via:
      - type: toStream
    to:
      topic: output
      keyType: string
      valueType: json
"
    ));
    assert_eq!(
        env.pairs("output"),
        [
            (Some("u1".into()), json!({"name": "Anna"})),
            (Some("u2".into()), json!({"name": "Bob"})),
        ]
    );
}

#[test]
fn stream_table_joins_match_the_latest_table_value() {
    let env = Env::new();
    append_json(
        &env,
        "users",
        &[
            ("u1", json!({"name": "Ann"}), 1),
            ("u1", json!({"name": "Anna"}), 5),
        ],
    );
    append_json(
        &env,
        "clicks",
        &[
            ("u1", json!({"page": "/a"}), 2),
            ("u2", json!({"page": "/b"}), 3),
            ("u1", json!({"page": "/c"}), 6),
        ],
    );
    let joined = |kind: &str| {
        format!(
            "{USERS_AND_CLICKS}
pipelines:
  p:
    from: clicks
    via:
      - type: {kind}
        table: users
        valueJoiner:
          expression: \"{{'page': value1['page'], 'user': value2['name'] if value2 else None}}\"
          resultType: json
    to:
      topic: output
      keyType: string
      valueType: json
"
        )
    };
    env.run(&joined("join"));
    // Records are processed in timestamp order across the two topics.
    assert_eq!(
        env.pairs("output"),
        [
            (Some("u1".into()), json!({"page": "/a", "user": "Ann"})),
            (Some("u1".into()), json!({"page": "/c", "user": "Anna"})),
        ]
    );
    let env2 = Env::new();
    append_json(&env2, "users", &[("u1", json!({"name": "Ann"}), 1)]);
    append_json(&env2, "clicks", &[("u2", json!({"page": "/b"}), 3)]);
    env2.run(&joined("leftJoin"));
    assert_eq!(
        env2.pairs("output"),
        [(Some("u2".into()), json!({"page": "/b", "user": null}))]
    );
}

#[test]
fn joining_topics_that_are_not_copartitioned_is_refused() {
    let env = Env::new();
    env.log.create_topic("users", 2).unwrap();
    env.log.create_topic("clicks", 1).unwrap();
    let file = env.write(
        "app.yaml",
        &format!(
            "{USERS_AND_CLICKS}
pipelines:
  p:
    from: clicks
    via:
      - type: join
        name: enrich
        table: users
        valueJoiner:
          expression: value1
          resultType: json
    to: output
"
        ),
    );
    let refused = env.run_with(&[&file], RunnerConfig::default()).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "join 'enrich': the stream has 1 partition(s) but topic 'users' has 2; joined topics \
         must be co-partitioned (the same partition count)"
    );
}

#[test]
fn to_table_keeps_the_latest_value_and_deletes_on_null() {
    let env = Env::new();
    append_json(
        &env,
        "input",
        &[
            ("a", json!(1), 1),
            ("b", json!(2), 2),
            ("a", json!(3), 3),
            ("b", Json::Null, 4),
        ],
    );
    env.run(
        "
streams:
  input:
    topic: input
    keyType: string
    valueType: json
pipelines:
  p:
    from: input
    via:
      - type: toTable
        store:
          name: latest
          type: keyValue
          logging: true
      - type: toStream
    to:
      topic: output
      keyType: string
      valueType: json
",
    );
    // The store has no caching (an inline store's booleans default to false): every update
    // goes on, and a null value deletes the key.
    assert_eq!(
        env.pairs("output"),
        [
            (Some("a".into()), json!(1)),
            (Some("b".into()), json!(2)),
            (Some("a".into()), json!(3)),
            (Some("b".into()), Json::Null)
        ]
    );
    let latest: Vec<(u32, Record)> = env.records("millrace-latest-changelog");
    let last_b = latest
        .iter()
        .rev()
        .find(|(_, r)| r.key.as_deref() == Some(b"b"));
    assert_eq!(
        last_b.map(|(_, r)| r.value.is_none()),
        Some(true),
        "b deleted"
    );
}

#[test]
fn session_windows_merge_records_within_the_gap() {
    let env = Env::new();
    append_timed(
        &env,
        &[
            ("a", "x", 0),
            ("a", "x", 20_000),
            // Starts a new session: more than 30 s after the last.
            ("a", "x", 60_000),
            // Bridges both sessions into one [0, 60 s].
            ("a", "x", 40_000),
        ],
    );
    let yaml = stateful_pipeline(
        "      - type: groupByKey
      - type: windowBySession
        inactivityGap: 30s
        grace: 1m
      - type: count
        store:
          type: session
          caching: false
      - type: toStream
        mapper:
          expression: key['key'] + '@' + str(key['start'] // 1000) + '-' + str(key['end'] // 1000)
          resultType: string",
        "long",
    );
    env.run(&yaml);
    let pairs: Vec<(String, Option<i64>)> = env
        .records("output")
        .into_iter()
        .map(|(_, r)| {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let value = r
                .value
                .map(|v| i64::from_be_bytes(v.as_ref().try_into().unwrap()));
            (key, value)
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("a@0-0".into(), Some(1)),
            ("a@0-0".into(), None),
            ("a@0-20".into(), Some(2)),
            ("a@60-60".into(), Some(1)),
            ("a@0-20".into(), None),
            ("a@60-60".into(), None),
            ("a@0-60".into(), Some(4)),
        ]
    );
}

#[test]
fn session_aggregates_merge_with_the_merger() {
    let env = Env::new();
    append_timed(
        &env,
        &[("a", "1", 0), ("a", "2", 100_000), ("a", "4", 50_000)],
    );
    let yaml = stateful_pipeline(
        "      - type: groupByKey
      - type: windowBySession
        inactivityGap: 1m
      - type: aggregate
        initializer:
          expression: 0
          resultType: long
        aggregator:
          expression: aggregatedValue + int(value)
          resultType: long
        merger:
          expression: value1 + value2
          resultType: long
      - type: toStream
        mapper:
          expression: str(key['start'] // 1000) + '-' + str(key['end'] // 1000)
          resultType: string",
        "long",
    );
    env.run(&yaml);
    // Cached: at the commit, only the session left standing.
    assert_eq!(long_pairs(&env), [("0-100".into(), 7)]);
}

#[test]
fn damaged_persistent_state_is_rebuilt_from_changelogs_or_stops_the_run() {
    let env = Env::new();
    let logged = counting_definition("persistent: true\n    logging: true");
    append_values(&env, &[("a", "x"), ("a", "x")]);
    env.run(&logged);
    let state = env.path("state").join("millrace");
    std::fs::write(state.join("version"), b"damaged").unwrap();
    append_values(&env, &[("a", "x")]);
    env.run(&logged);
    assert_eq!(counts(&env).last(), Some(&("a".into(), 3)), "rebuilt");

    let env = Env::new();
    let unlogged = counting_definition("persistent: true");
    append_values(&env, &[("a", "x")]);
    env.run(&unlogged);
    let state = env.path("state").join("millrace");
    std::fs::write(state.join("version"), b"damaged").unwrap();
    let file = env.write("app.yaml", &unlogged);
    let stopped = env.run_with(&[&file], RunnerConfig::default()).unwrap_err();
    assert!(
        stopped
            .to_string()
            .contains("the persistent stores counts have no changelog to rebuild them from"),
        "{stopped}"
    );
}

#[test]
fn stream_global_table_joins_look_up_a_key_the_mapper_picks() {
    let env = Env::new();
    // The global table spans two partitions; the stream has one.
    env.log.create_topic("products", 2).unwrap();
    for (partition, id, name) in [(0, "p1", "pen"), (1, "p2", "ink")] {
        let record = Record {
            key: Some(Bytes::copy_from_slice(id.as_bytes())),
            value: Some(Bytes::from(json!({"name": name}).to_string())),
            timestamp: 1,
            headers: vec![],
        };
        env.log.append("products", partition, vec![record]).unwrap();
    }
    append_json(
        &env,
        "orders",
        &[
            ("o1", json!({"product": "p2"}), 10),
            ("o2", json!({"product": "p9"}), 11),
        ],
    );
    let joined = |kind: &str| {
        format!(
            "
globalTables:
  products:
    topic: products
    keyType: string
    valueType: json
streams:
  orders:
    topic: orders
    keyType: string
    valueType: json
pipelines:
  p:
    from: orders
    via:
      - type: {kind}
        globalTable: products
        mapper:
          expression: value['product']
          resultType: string
        valueJoiner:
          expression: \"{{'product': value2['name'] if value2 else None}}\"
          resultType: json
    to:
      topic: output
      keyType: string
      valueType: json
"
        )
    };
    env.run(&joined("join"));
    assert_eq!(
        env.pairs("output"),
        [(Some("o1".into()), json!({"product": "ink"}))]
    );
    let env2 = Env::new();
    env2.log.create_topic("products", 1).unwrap();
    append_json(&env2, "orders", &[("o2", json!({"product": "p9"}), 11)]);
    env2.run(&joined("leftJoin"));
    assert_eq!(
        env2.pairs("output"),
        [(Some("o2".into()), json!({"product": null}))]
    );
}

#[test]
fn stream_stream_joins_match_records_within_the_time_difference() {
    let joined = |kind: &str| {
        let env = Env::new();
        append_json(
            &env,
            "views",
            &[
                ("u1", json!("v1"), 0),
                ("u2", json!("v3"), 1_000),
                ("u1", json!("v2"), 30_000),
                ("u3", json!("v4"), 200_000),
            ],
        );
        append_json(
            &env,
            "clicks",
            &[
                ("u1", json!("c1"), 5_000),
                ("u2", json!("c3"), 9_000),
                ("u1", json!("c2"), 100_000),
            ],
        );
        env.run(&format!(
            "
streams:
  views:
    topic: views
    keyType: string
    valueType: json
  clicks:
    topic: clicks
    keyType: string
    valueType: json
pipelines:
  p:
    from: views
    via:
      - type: {kind}
        stream: clicks
        timeDifference: 10s
        valueJoiner:
          expression: \"{{'view': value1, 'click': value2}}\"
          resultType: json
    to:
      topic: output
      keyType: string
      valueType: json
"
        ));
        env.records("output")
            .into_iter()
            .map(|(_, r)| {
                let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                let value: Json = serde_json::from_slice(&r.value.unwrap()).unwrap();
                (key, value, r.timestamp)
            })
            .collect::<Vec<_>>()
    };
    let row = |key: &str, view: Option<&str>, click: Option<&str>, time: i64| {
        (key.to_string(), json!({"view": view, "click": click}), time)
    };
    // Each pair once, whichever side arrives second, at the later record's time; value1 is
    // always the view.
    let pairs = [
        row("u1", Some("v1"), Some("c1"), 5_000),
        row("u2", Some("v3"), Some("c3"), 9_000),
    ];
    assert_eq!(joined("join"), pairs);
    // Records that met no match are joined with None once their window has closed (stream
    // time past their time plus the time difference), at their own time; v4's window is
    // still open at the end.
    let unmatched_view = row("u1", Some("v2"), None, 30_000);
    let unmatched_click = row("u1", None, Some("c2"), 100_000);
    assert_eq!(
        joined("leftJoin"),
        [pairs[0].clone(), pairs[1].clone(), unmatched_view.clone()]
    );
    assert_eq!(
        joined("outerJoin"),
        [
            pairs[0].clone(),
            pairs[1].clone(),
            unmatched_view,
            unmatched_click
        ]
    );
}

#[test]
fn cached_tables_flush_upstream_first_so_nothing_is_lost_between_them() {
    let env = Env::new();
    append_user_updates(&env);
    // The table and the count both cache; the count sees the table's flushed updates.
    env.run(&format!(
        "{USERS_AND_CLICKS}
pipelines:
  p:
    from: users
    via:
      - type: toStream
      - type: groupByKey
      - type: count
      - type: toStream
    to:
      topic: output
      keyType: string
      valueType: long
"
    ));
    assert_eq!(long_pairs(&env), [("u1".into(), 1), ("u2".into(), 1)]);
}

#[test]
fn python_functions_use_window_stores() {
    let env = Env::new();
    append_timed(
        &env,
        &[("a", "x", 5_000), ("a", "x", 65_000), ("a", "x", 70_000)],
    );
    let yaml = "
streams:
  input:
    topic: input
    keyType: string
    valueType: string
stores:
  per_minute:
    type: window
    keyType: string
    valueType: long
    windowSize: 1m
    retention: 1h
functions:
  count_in_window:
    type: valueTransformer
    stores: [per_minute]
    code: |
      start = 60000 * (record_time // 60000)
      n = (per_minute.fetch(key, start) or 0) + 1
      per_minute.put(key, n, start)
      windows = [(kv.key, kv.value) for kv in per_minute.fetch(key, 0, 3600000)]
      every = [(kv.key['start'], kv.key['end'], kv.value) for kv in per_minute.fetchAll(0, 3600000)]
    expression: str(windows) + ' ' + str(every)
    resultType: string
pipelines:
  p:
    from: input
    via:
      # Functions of one file share globals: the record's time for the next function.
      - type: transformMetadata
        mapper:
          code: |
            global record_time
            record_time = metadata['timestamp']
          expression: metadata
      - type: mapValues
        mapper: count_in_window
    to:
      topic: output
      keyType: string
      valueType: string
";
    env.run(yaml);
    let values: Vec<String> = env
        .records("output")
        .into_iter()
        .map(|(_, r)| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(
        values.last().unwrap(),
        "[(0, 1), (60000, 2)] [(0, 60000, 1), (60000, 120000, 2)]"
    );
}

#[test]
fn python_functions_use_timestamped_versioned_and_session_stores() {
    let env = Env::new();
    append_timed(
        &env,
        &[("a", "x", 1_000), ("a", "x", 2_000), ("a", "x", 5_000)],
    );
    let yaml = "
streams:
  input:
    topic: input
    keyType: string
    valueType: string
stores:
  stamped:
    type: keyValue
    timestamped: true
    keyType: string
    valueType: long
  versions:
    type: keyValue
    versioned: true
    historyRetention: 1h
    keyType: string
    valueType: long
  sessions:
    type: session
    keyType: string
    valueType: long
functions:
  use_stores:
    type: valueTransformer
    stores: [stamped, versions, sessions]
    code: |
      t = record_time
      before = stamped.get(key)
      stamped.put(key, (before['value'] if before else 0) + 1, t)
      out = [stamped.get(key), versions.put(key, t, t)]
      sessions.put({'key': key, 'start': t, 'end': t}, t // 1000)
      if t == 5000:
        out += [versions.get(key, 1500), versions.get(key), versions.put(key, 3, 3000)]
        out += [versions.delete(key, 6000), versions.get(key), versions.get(key, 5500)]
        out += [[(kv['key']['start'], kv['value']) for kv in sessions.findSessions(key, 1500, 4000)]]
        out += [sessions.fetchSession(key, 1000, 1000)]
        sessions.remove({'key': key, 'start': 1000, 'end': 1000})
        out += [[kv.key['end'] for kv in sessions.fetch(key)]]
        out += [[kv.key['end'] for kv in sessions.backwardFetch(key)]]
        out += [versions.put(key, 1, t - 7200000)]
    expression: str(out)
    resultType: string
pipelines:
  p:
    from: input
    via:
      - type: transformMetadata
        mapper:
          code: |
            global record_time
            record_time = metadata['timestamp']
          expression: metadata
      - type: mapValues
        mapper: use_stores
    to:
      topic: output
      keyType: string
      valueType: string
";
    env.run(yaml);
    let values: Vec<String> = env
        .records("output")
        .into_iter()
        .map(|(_, r)| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(values[0], "[{'value': 1, 'timestamp': 1000}, -1]");
    // A version older than the history kept (1 h behind the latest) is not put.
    assert_eq!(
        values[2],
        "[{'value': 3, 'timestamp': 5000}, -1, \
         {'value': 1000, 'timestamp': 1000, 'validTo': 2000}, \
         {'value': 5000, 'timestamp': 5000}, 5000, \
         {'value': 5000, 'timestamp': 5000}, None, \
         {'value': 5000, 'timestamp': 5000, 'validTo': 6000}, \
         [(2000, 2)], 1, [2000, 5000], [5000, 2000], -9223372036854775808]"
    );
}

#[test]
fn sliding_windows_keep_records_of_one_time_apart_across_restarts() {
    let env = Env::new();
    let yaml = windowed_count(
        "        windowType: sliding
        timeDifference: 10s
        grace: 1m",
    );
    append_timed(&env, &[("a", "x", 20_000)]);
    env.run(&yaml);
    // A record of the same key and time after a restart is a second record, not the first
    // one again (sequence numbers start over with each run).
    append_timed(&env, &[("a", "x", 20_000)]);
    env.run(&yaml);
    assert_eq!(
        long_pairs(&env),
        [("a@10-20".into(), 1), ("a@10-20".into(), 2)]
    );
}

/// Left-joins `left` with `right` (10 s apart at most, `grace`), records given as
/// (stream, key, value, time); returns (key, value1, value2) of the results in order.
fn left_join_results(grace: &str, records: &[(&str, &str, &str, i64)]) -> Vec<(String, Json)> {
    let env = Env::new();
    for (topic, key, value, time) in records {
        append_json(&env, topic, &[(key, json!(value), *time)]);
    }
    env.run(&format!(
        "
streams:
  left:
    topic: left
    keyType: string
    valueType: json
  right:
    topic: right
    keyType: string
    valueType: json
pipelines:
  p:
    from: left
    via:
      - type: leftJoin
        stream: right
        timeDifference: 10s
        grace: {grace}
        valueJoiner:
          expression: \"[value1, value2]\"
          resultType: json
    to:
      topic: output
      keyType: string
      valueType: json
"
    ));
    env.pairs("output")
        .into_iter()
        .map(|(k, v)| (k.unwrap(), v))
        .collect()
}

#[test]
fn unmatched_stream_join_records_go_before_later_joins_and_at_once_when_out_of_order() {
    // L1 waits; R at 15 s closes its window (0 + 10 < 15): (L1, None) goes first, then the
    // join of L3 with R, as Kafka Streams emits them.
    let results = left_join_results(
        "0s",
        &[
            ("left", "k", "L1", 0),
            ("left", "k", "L3", 10_000),
            ("right", "k", "R", 15_000),
        ],
    );
    assert_eq!(
        results,
        [
            ("k".to_string(), json!(["L1", null])),
            ("k".to_string(), json!(["L3", "R"])),
        ]
    );
    // Stream time is 120 s when L at 105 s comes (within grace, 5 s): its window has passed,
    // so it is joined with None at once instead of waiting.
    let results = left_join_results(
        "5s",
        &[("left", "other", "X", 120_000), ("left", "k", "L", 105_000)],
    );
    assert_eq!(results, [("k".to_string(), json!(["L", null]))]);
}

//! Several `millrace run` processes sharing one application on a Kafka cluster: the group
//! splits the partitions, a killed process's partitions move to the survivor with their state
//! (restored from the changelog), and a process with no local state gets it back from Kafka.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use millrace_kafka::{KafkaLog, KafkaSettings};
use millrace_log::{Log, Record, murmur2_partition};
use serde_json::Value as Json;

use super::{millrace, run_ok, start_run};

/// Counts events per key in a persistent, logged store, and says which process (by pid)
/// handled each event. Each event takes a couple of milliseconds, so that a run lasts long
/// enough to be killed half-way.
const COUNTING: &str = "
streams:
  events:
    topic: events
    keyType: string
    valueType: string
  counts:
    topic: counts
    keyType: string
    valueType: long
  owners:
    topic: owners
    keyType: string
    valueType: string
stores:
  event_counts:
    type: keyValue
    persistent: true
    logging: true
functions:
  slowly:
    type: forEach
    globalCode: import time
    code: time.sleep(0.002)
  process_id:
    type: valueTransformer
    globalCode: import os
    expression: str(os.getpid())
    resultType: string
pipelines:
  count_events:
    from: events
    via:
      - type: peek
        forEach: slowly
      - type: groupByKey
      - type: count
        store: event_counts
      - type: toStream
    to: counts
  owner:
    from: events
    via:
      - type: mapValues
        mapper: process_id
    to: owners
";

const KEYS: usize = 40;
const PER_KEY: i64 = 300;

/// A topic command on the cluster.
fn topic(servers: &str, args: &[&str]) -> Command {
    let mut command = millrace();
    command
        .arg("topic")
        .args(args)
        .args(["--bootstrap-servers", servers]);
    command
}

/// Sends string records to a 4-partition topic, keyed by `key{k}` and partitioned as Kafka
/// does, one record per batch: tansu loses the rest of a batch when a read starts inside it
/// (as a task taken over from a committed offset does), and reports a partition's end as the
/// first offset of its last batch plus one.
fn produce(servers: &str, topic_name: &str, records: &[(String, String)]) {
    let settings = KafkaSettings::new(vec![
        ("bootstrap.servers".into(), servers.into()),
        ("batch.num.messages".into(), "1".into()),
    ]);
    let log = KafkaLog::connect(settings).unwrap();
    for (key, value) in records {
        let record = Record {
            key: Some(key.clone().into()),
            value: Some(value.clone().into()),
            timestamp: 1_700_000_000_000,
            headers: Vec::new(),
        };
        let partition = murmur2_partition(key.as_bytes(), 4);
        log.append(topic_name, partition, vec![record]).unwrap();
    }
}

/// The latest value per key of a topic.
fn latest(servers: &str, topic_name: &str, value_type: &str) -> Vec<(String, Json)> {
    let output = run_ok(&mut topic(
        servers,
        &[
            "consume",
            topic_name,
            "--from-beginning",
            "--value-type",
            value_type,
        ],
    ));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Json>(line).unwrap())
        .filter_map(|r| Some((r["key"].as_str()?.to_string(), r["value"].clone())))
        .collect()
}

/// The latest count of every key.
fn counts(servers: &str) -> BTreeMap<String, i64> {
    latest(servers, "counts", "long")
        .into_iter()
        .filter_map(|(key, value)| Some((key, value.as_i64()?)))
        .collect()
}

/// Waits until `done` holds, checking every second; panics with the processes' logs after
/// `limit`.
fn wait_for(limit: Duration, logs: &[&Path], what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            let logs: Vec<String> = logs
                .iter()
                .map(|l| std::fs::read_to_string(l).unwrap_or_default())
                .collect();
            panic!(
                "{what} did not happen in {limit:?}; logs:\n{}",
                logs.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn two_runs_share_partitions_and_the_survivor_of_a_kill_takes_over_with_its_state() {
    let broker = millrace_kafka::test_broker::TestBroker::start();
    let servers = broker.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("counting.yaml"), COUNTING).unwrap();
    let config = dir.join("runner.yaml");
    std::fs::write(
        &config,
        format!(
            "kafka:\n  application.id: counting\n  bootstrap.servers: {servers}\n  \
             consumer.session.timeout.ms: 6000\n  consumer.heartbeat.interval.ms: 1000\n  \
             producer.batch.num.messages: 1\n  commit.interval.ms: 500\n\
             ksml:\n  definitions:\n    counting: counting.yaml\n"
        ),
    )
    .unwrap();
    for name in ["events", "counts", "owners"] {
        run_ok(&mut topic(&servers, &["create", name, "--partitions", "4"]));
    }
    let events: Vec<(String, String)> = (0..PER_KEY)
        .flat_map(|n| (0..KEYS).map(move |k| (format!("key{k}"), n.to_string())))
        .collect();
    produce(&servers, "events", &events);

    let (log_a, log_b) = (dir.join("a.log"), dir.join("b.log"));
    let mut a = start_run(&config, &dir.join("a"), &log_a, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    let mut b = start_run(&config, &dir.join("b"), &log_b, &[]);
    let (pid_a, pid_b) = (a.id().to_string(), b.id().to_string());
    let logs = [log_a.as_path(), log_b.as_path()];

    // B takes a share of the partitions and commits some of its work, then dies.
    let handled_by = |pid: &str| -> BTreeSet<String> {
        latest(&servers, "owners", "string")
            .into_iter()
            .filter(|(_, owner)| owner == pid)
            .map(|(key, _)| key)
            .collect()
    };
    wait_for(Duration::from_secs(90), &logs, "B handling events", || {
        !handled_by(&pid_b).is_empty()
    });
    b.kill().unwrap();
    b.wait().unwrap();
    let keys_of_b = handled_by(&pid_b);

    // A takes over B's partitions, restores their counts and finishes every event.
    wait_for(
        Duration::from_secs(120),
        &logs,
        "every event counted",
        || {
            let counts = counts(&servers);
            counts.len() == KEYS && counts.values().all(|&n| n >= PER_KEY)
        },
    );
    let last_owner: BTreeMap<String, Json> =
        latest(&servers, "owners", "string").into_iter().collect();
    let taken_over = keys_of_b
        .iter()
        .filter(|key| last_owner[*key] == Json::String(pid_a.clone()))
        .count();
    assert!(taken_over > 0, "A handled none of B's keys after the kill");
    // Stopped with Ctrl-C, A commits everything it processed.
    let interrupted = Command::new("kill")
        .args(["-INT", &pid_a])
        .status()
        .unwrap();
    assert!(interrupted.success());
    assert!(a.wait().unwrap().success());
    let log = std::fs::read_to_string(&log_a).unwrap();
    assert!(log.contains("partitions assigned"), "{log}");
    let before = counts(&servers);

    // A process with an empty state directory gets the counts back from the changelog: one
    // more event per key counts on from them.
    let more: Vec<(String, String)> = (0..KEYS)
        .map(|k| (format!("key{k}"), "last".to_string()))
        .collect();
    produce(&servers, "events", &more);
    let log_c = dir.join("c.log");
    let mut c = start_run(&config, &dir.join("c"), &log_c, &[]);
    let expected: BTreeMap<String, i64> = before.iter().map(|(k, n)| (k.clone(), n + 1)).collect();
    wait_for(
        Duration::from_secs(90),
        &[&log_c],
        "the last events counted",
        || counts(&servers) == expected,
    );
    c.kill().unwrap();
    c.wait().unwrap();
}

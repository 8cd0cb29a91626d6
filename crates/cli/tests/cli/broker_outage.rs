//! `millrace run` on a Kafka cluster that stops answering for a while: producers and tasks
//! try again (up to `task.timeout.ms`) and lose nothing; a cluster silent for longer stops
//! the run with an error naming what made no progress.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use millrace_kafka::test_broker::TestBroker;
use serde_json::Value as Json;

use super::{millrace, produce_longs, run_ok, start_run};

/// A producer sending numbered ticks, and a pipeline copying events slowly (a millisecond
/// each), so that both are at work when the broker freezes.
const DEFINITION: &str = "
streams:
  events:
    topic: events
    keyType: string
    valueType: long
  copied:
    topic: copied
    keyType: string
    valueType: long
functions:
  next_tick:
    type: generator
    globalCode: sequence = 0
    code: |
      global sequence
      sequence += 1
    expression: (str(sequence), sequence)
    resultType: (string, long)
  slowly:
    type: forEach
    globalCode: import time
    code: time.sleep(0.001)
producers:
  ticks_producer:
    generator: next_tick
    interval: 50ms
    count: 200
    to:
      topic: ticks
      keyType: string
      valueType: long
pipelines:
  copy_events:
    from: events
    via:
      - type: peek
        forEach: slowly
    to: copied
";

const EVENTS: i64 = 5000;

/// A broker, a folder, and in it the definition and a runner config on the broker with these
/// extra properties.
fn setup(properties: &str) -> (TestBroker, tempfile::TempDir, PathBuf) {
    let broker = TestBroker::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("outage.yaml"), DEFINITION).unwrap();
    let config = dir.path().join("runner.yaml");
    std::fs::write(
        &config,
        format!(
            "kafka:\n  application.id: outage\n  bootstrap.servers: {}\n  \
             commit.interval.ms: 100\n{properties}\
             ksml:\n  definitions:\n    outage: outage.yaml\n",
            broker.bootstrap_servers()
        ),
    )
    .unwrap();
    (broker, dir, config)
}

/// Waits for a process to end; panics with its log after `limit`.
fn wait_with_limit(child: &mut Child, limit: Duration, log: &Path) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!(
                "the run did not end in {limit:?}; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The values of a topic of longs.
fn values(servers: &str, topic: &str) -> BTreeSet<i64> {
    let output = run_ok(millrace().args([
        "topic",
        "consume",
        topic,
        "--from-beginning",
        "--value-type",
        "long",
        "--bootstrap-servers",
        servers,
    ]));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<Json>(line).unwrap()["value"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_run_rides_out_a_broker_that_stops_answering_without_losing_records() {
    // Sends time out after 2 s, well within the pause below.
    let (broker, dir, config) =
        setup("  producer.message.timeout.ms: 2000\n  task.timeout.ms: 120000\n");
    let (servers, dir) = (broker.bootstrap_servers(), dir.path());
    let target = ["--bootstrap-servers", servers.as_str()];
    for topic in ["events", "copied", "ticks"] {
        run_ok(millrace().args(["topic", "create", topic]).args(target));
    }
    let lines: String = (1..=EVENTS).map(|n| format!("e{n}:{n}\n")).collect();
    produce_longs(&target, "events", &lines);

    let log = dir.join("run.log");
    let mut run = start_run(&config, &dir.join("data"), &log, &["--until-idle"]);
    std::thread::sleep(Duration::from_millis(1500));
    broker.pause();
    std::thread::sleep(Duration::from_secs(8));
    broker.resume();
    let status = wait_with_limit(&mut run, Duration::from_secs(180), &log);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the run failed: {log}");
    // Both the producer and the task met the silent cluster, and tried again.
    assert!(
        log.contains("producer 'ticks_producer': Kafka") && log.contains("trying again"),
        "{log}"
    );
    assert!(log.contains("task 0_0: Kafka"), "{log}");
    // At least once: every record made it, however many times.
    assert_eq!(values(&servers, "ticks"), (1..=200).collect());
    assert_eq!(values(&servers, "copied"), (1..=EVENTS).collect());
}

#[test]
fn a_run_stops_once_the_broker_is_silent_for_longer_than_task_timeout() {
    let (broker, dir, config) =
        setup("  producer.message.timeout.ms: 1000\n  task.timeout.ms: 3000\n");
    let dir = dir.path();
    let log = dir.join("run.log");
    let mut run = start_run(&config, &dir.join("data"), &log, &["--until-idle"]);
    std::thread::sleep(Duration::from_millis(1500));
    broker.pause();
    let status = wait_with_limit(&mut run, Duration::from_secs(120), &log);
    broker.resume();
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(
            "producer 'ticks_producer' did not make progress within 3000 ms (task.timeout.ms)"
        ),
        "{log}"
    );
}

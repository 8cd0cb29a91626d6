//! The seed's KSML examples, stateful ones included, run unchanged on a Kafka cluster and
//! give what they give on the embedded log from the same input records.

use std::collections::BTreeSet;
use std::path::Path;

use bytes::Bytes;
use millrace_kafka::{KafkaLog, KafkaSettings};
use millrace_log::{EmbeddedLog, EmbeddedLogConfig, Log};

use super::{examples, millrace, run_ok};

const PRODUCERS: [&str; 5] = [
    "producer-high-volume.yaml",
    "producer-user-metrics.yaml",
    "producer-user-profiles.yaml",
    "producer-mixed-events.yaml",
    "producer-binary-data.yaml",
];

const PROCESSORS: [&str; 6] = [
    "processor-efficient-processing.yaml",
    "processor-optimized-state.yaml",
    "processor-activity-windows.yaml",
    "processor-activity-joins.yaml",
    "processor-pipeline-optimization.yaml",
    "processor-serialization-optimization.yaml",
];

/// Records of one partition, as (key, value).
type Partition = Vec<(Option<Bytes>, Option<Bytes>)>;

/// Every record of a topic, by partition.
fn read_topic(log: &dyn Log, topic: &str) -> Vec<Partition> {
    let partitions = log.partition_count(topic).unwrap().unwrap();
    (0..partitions)
        .map(|partition| {
            let mut records = Vec::new();
            let mut offset = log.offset_range(topic, partition).unwrap().0;
            loop {
                let generation = log.append_generation();
                let fetched = log.read(topic, partition, offset, 1000).unwrap();
                records.extend(
                    fetched
                        .records
                        .iter()
                        .map(|r| (r.record.key.clone(), r.record.value.clone())),
                );
                if fetched.caught_up() {
                    break records;
                }
                if fetched.records.is_empty() {
                    log.wait_for_append(generation, std::time::Duration::from_millis(50));
                }
                offset = fetched.next_offset;
            }
        })
        .collect()
}

fn topic_names(log: &dyn Log) -> BTreeSet<String> {
    log.topics().unwrap().into_iter().map(|t| t.name).collect()
}

/// Writes a runner config of the processors with these `kafka:` lines, then runs it until
/// idle. Caching is off: with it, what a table emits depends on when commits happen (as in
/// Kafka Streams), which differs between runs.
fn run_processors(config: &Path, kafka_lines: &str, data: &Path) {
    let definitions: String = PROCESSORS
        .iter()
        .enumerate()
        .map(|(n, file)| format!("    p{n}: {}\n", examples().join(file).display()))
        .collect();
    let text = format!(
        "kafka:\n  application.id: examples\n  cache.max.bytes.buffering: 0\n{kafka_lines}ksml:\n  definitions:\n{definitions}"
    );
    std::fs::write(config, text).unwrap();
    run_ok(
        millrace()
            .args(["run", "--until-idle", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data),
    );
}

#[test]
fn the_examples_give_the_embedded_results_on_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let (embedded, kafka_state) = (dir.path().join("embedded"), dir.path().join("kafka"));

    // The producers fill the embedded log once; the same records go to the cluster.
    let mut produce = millrace();
    produce
        .args(["run", "--until-idle", "--data-dir"])
        .arg(&embedded);
    for producer in PRODUCERS {
        produce.arg(examples().join(producer));
    }
    run_ok(&mut produce);
    let broker = millrace_kafka::test_broker::TestBroker::start();
    let servers = broker.bootstrap_servers();
    // One record per batch: tansu loses the rest of a batch when a read starts inside it, and
    // reports a partition's end as the first offset of its last batch plus one.
    let kafka = KafkaLog::connect(KafkaSettings::new(vec![
        ("bootstrap.servers".into(), servers.clone()),
        ("batch.num.messages".into(), "1".into()),
    ]))
    .unwrap();
    let inputs = {
        let log = EmbeddedLog::open(&embedded, EmbeddedLogConfig::default()).unwrap();
        let inputs = topic_names(&log);
        for topic in &inputs {
            let partitions = log.partition_count(topic).unwrap().unwrap();
            kafka.create_topic(topic, partitions).unwrap();
            for partition in 0..partitions {
                let (start, end) = log.offset_range(topic, partition).unwrap();
                let records = log.read(topic, partition, start, 1_000_000).unwrap();
                assert_eq!(records.records.len() as u64, end - start);
                let records = records.records.into_iter().map(|r| r.record).collect();
                kafka.append(topic, partition, records).unwrap();
            }
        }
        inputs
    };
    assert!(inputs.len() >= 5, "{inputs:?}");

    run_processors(&dir.path().join("embedded.yaml"), "", &embedded);
    let kafka_lines = format!("  bootstrap.servers: {servers}\n  producer.batch.num.messages: 1\n");
    run_processors(&dir.path().join("kafka.yaml"), &kafka_lines, &kafka_state);

    let log = EmbeddedLog::open(&embedded, EmbeddedLogConfig::default()).unwrap();
    let outputs: Vec<String> = topic_names(&log)
        .into_iter()
        .filter(|t| !inputs.contains(t) && !t.starts_with("examples-"))
        .collect();
    assert!(outputs.len() >= 8, "{outputs:?}");
    for topic in &outputs {
        let on_embedded = read_topic(&log, topic);
        let on_kafka = read_topic(&kafka, topic);
        assert!(
            on_embedded.iter().any(|p| !p.is_empty()),
            "{topic} is empty"
        );
        assert!(on_kafka == on_embedded, "{topic} differs on Kafka");
    }
}

//! The Kafka log against a real Kafka-protocol broker (tansu, started by
//! `scripts/kafka-broker` on a free loopback port for each test).

use std::time::{Duration, Instant};

use bytes::Bytes;
use millrace_kafka::test_broker::TestBroker;
use millrace_kafka::{KafkaLog, KafkaSettings};
use millrace_log::{Append, CommittedOffset, Fetched, Header, Log, LogError, Record};

/// A test broker, and logs on it.
struct Broker(TestBroker);

impl Broker {
    fn start() -> Broker {
        Broker(TestBroker::start())
    }

    fn settings(&self) -> KafkaSettings {
        KafkaSettings::new(vec![
            ("bootstrap.servers".into(), self.0.bootstrap_servers()),
            // tansu 0.6.0 answers a fetch from inside a record batch with the batches after
            // it (Kafka answers with the batch holding the offset): one record per batch keeps
            // every offset readable.
            ("producer.batch.num.messages".into(), "1".into()),
        ])
    }

    fn log(&self) -> KafkaLog {
        KafkaLog::connect(self.settings()).unwrap()
    }
}

fn record(i: u64) -> Record {
    Record {
        key: Some(Bytes::from(format!("k{i}"))),
        value: (i % 5 != 4).then(|| Bytes::from(format!("v{i}"))),
        timestamp: 1_700_000_000_000 + i as i64,
        headers: vec![Header {
            key: "n".into(),
            value: Some(Bytes::from(i.to_string())),
        }],
    }
}

/// Reads a partition from `offset` until `count` records came (records arrive from the
/// broker in the background), waiting for appends in between.
fn read_all(log: &KafkaLog, topic: &str, partition: u32, offset: u64, count: usize) -> Fetched {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut all = Fetched {
        next_offset: offset,
        ..Fetched::default()
    };
    while all.records.len() < count {
        assert!(
            Instant::now() < deadline,
            "read {} of {count}",
            all.records.len()
        );
        let generation = log.append_generation();
        let fetched = log.read(topic, partition, all.next_offset, 1000).unwrap();
        if fetched.records.is_empty() {
            log.wait_for_append(generation, Duration::from_millis(200));
        }
        all.records.extend(fetched.records);
        all.next_offset = fetched.next_offset;
        all.end_offset = fetched.end_offset;
    }
    all
}

#[test]
fn topics_appends_and_reads() {
    let broker = Broker::start();
    let log = broker.log();
    assert!(log.create_topic("events", 3).unwrap());
    assert!(!log.create_topic("events", 3).unwrap(), "it exists already");
    assert_eq!(log.partition_count("events").unwrap(), Some(3));
    assert_eq!(log.partition_count("missing").unwrap(), None);
    let topics = log.topics().unwrap();
    assert!(
        topics
            .iter()
            .any(|t| t.name == "events" && t.partitions == 3)
    );

    let records: Vec<Record> = (0..10).map(record).collect();
    assert_eq!(log.append("events", 1, records.clone()).unwrap(), 0);
    assert_eq!(log.append("events", 1, vec![record(10)]).unwrap(), 10);
    let read = read_all(&log, "events", 1, 0, 11);
    let got: Vec<Record> = read.records.iter().map(|r| r.record.clone()).collect();
    let mut expected = records;
    expected.push(record(10));
    assert_eq!(got, expected);
    assert_eq!(read.records[3].offset, 3);
    assert_eq!(read.next_offset, 11);
    assert_eq!(log.offset_range("events", 1).unwrap(), (0, 11));
    assert_eq!(log.offset_range("events", 2).unwrap(), (0, 0));
    // Reading again from an earlier offset moves the reader back.
    let again = read_all(&log, "events", 1, 7, 4);
    let offsets: Vec<u64> = again.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [7, 8, 9, 10]);
    assert!(again.caught_up());
    // A missing topic is created with the default partition count.
    assert_eq!(log.ensure_topic("created").unwrap(), 1);
    // Topic configs go with the topic, and read back.
    let compacted = millrace_log::TopicConfig::compacted();
    assert!(
        log.create_topic_with_config("changelog", 1, &compacted)
            .unwrap()
    );
    assert_eq!(log.topic_config("changelog").unwrap(), Some(compacted));
    assert_eq!(log.topic_config("missing").unwrap(), None);
}

#[test]
fn group_offsets_are_committed_and_read_back() {
    let broker = Broker::start();
    let log = broker.log();
    log.create_topic("in", 2).unwrap();
    assert_eq!(log.committed("app", "in", 0).unwrap(), None);
    let offsets = [
        CommittedOffset {
            topic: "in".into(),
            partition: 0,
            offset: 5,
            metadata: "partitionTime=42".into(),
        },
        CommittedOffset {
            topic: "in".into(),
            partition: 1,
            offset: 2,
            metadata: String::new(),
        },
    ];
    log.commit("app", &offsets).unwrap();
    assert_eq!(log.committed("app", "in", 0).unwrap(), Some(5));
    // The metadata goes with the commit; tansu 0.6.0 answers every offset fetch with empty
    // metadata (Kafka keeps it), so only that it reads back is checked here.
    assert!(log.committed_metadata("app", "in", 0).unwrap().is_some());
    assert_eq!(log.committed("app", "in", 1).unwrap(), Some(2));
    assert_eq!(log.committed("other", "in", 0).unwrap(), None);
    // Appending and committing: outputs first, then the offsets.
    log.create_topic("out", 1).unwrap();
    let appends = vec![Append {
        topic: "out".into(),
        partition: 0,
        records: vec![record(1), record(2)],
    }];
    let moved = [CommittedOffset {
        offset: 7,
        ..offsets[0].clone()
    }];
    assert_eq!(log.append_and_commit(appends, "app", &moved).unwrap(), [0]);
    assert_eq!(log.committed("app", "in", 0).unwrap(), Some(7));
    assert_eq!(read_all(&log, "out", 0, 0, 2).records.len(), 2);
}

#[test]
fn an_unreachable_cluster_or_a_bad_property_is_a_clear_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = KafkaSettings::new(vec![(
        "bootstrap.servers".into(),
        format!("127.0.0.1:{closed}"),
    )]);
    settings.timeout = Duration::from_secs(2);
    let started = Instant::now();
    let error = KafkaLog::connect(settings.clone())
        .err()
        .expect("no cluster there");
    assert!(matches!(error, LogError::Unavailable { .. }), "{error}");
    assert!(
        error.to_string().contains("the cluster did not answer"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    settings
        .properties
        .push(("no.such.property".into(), "1".into()));
    let error = KafkaLog::connect(settings)
        .err()
        .expect("an unknown property");
    assert!(error.to_string().contains("no.such.property"), "{error}");
}

#[test]
fn java_client_settings_are_told_apart_from_librdkafka_ones() {
    let given = [
        ("bootstrap.servers", "kafka:9092"),
        ("producer.linger.ms", "100"),
        ("producer.buffer.memory", "33554432"),
        ("consumer.max.poll.records", "500"),
        ("consumer.session.timeout.ms", "45000"),
    ];
    let (known, unknown) = KafkaSettings::librdkafka_properties(
        given.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap();
    let known: Vec<&str> = known.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        known,
        [
            "bootstrap.servers",
            "producer.linger.ms",
            "consumer.session.timeout.ms"
        ]
    );
    assert_eq!(
        unknown,
        ["producer.buffer.memory", "consumer.max.poll.records"]
    );
    // A value this build refuses is an error, not a setting quietly dropped.
    let refused = KafkaSettings::librdkafka_properties([(
        "security.protocol".to_string(),
        "no-such-protocol".to_string(),
    )])
    .unwrap_err();
    assert!(refused.contains("security.protocol"), "{refused}");
}

/// tansu answers commit metadata empty; librdkafka's in-process mock cluster keeps it, so
/// the metadata's round trip through the Kafka log is checked there.
#[test]
fn commit_metadata_goes_to_the_cluster_and_back() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("in", 1, 1).unwrap();
    let log = KafkaLog::connect(KafkaSettings::new(vec![(
        "bootstrap.servers".into(),
        cluster.bootstrap_servers(),
    )]))
    .unwrap();
    let offsets = [CommittedOffset {
        topic: "in".into(),
        partition: 0,
        offset: 5,
        metadata: "partitionTime=42".into(),
    }];
    log.commit("app", &offsets).unwrap();
    assert_eq!(log.committed("app", "in", 0).unwrap(), Some(5));
    assert_eq!(
        log.committed_metadata("app", "in", 0).unwrap().as_deref(),
        Some("partitionTime=42")
    );
}

/// tansu has no transactions, so the transactional flow runs against librdkafka's mock
/// cluster: appends and offsets commit together, a transaction whose offsets the group
/// refuses is aborted (and reported so), and the next one goes through. The mock checks
/// transactional offsets without keeping them, and writes no transaction markers (aborted
/// records stay readable), so neither is checked here.
#[test]
fn transactions_commit_appends_with_offsets_or_nothing() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("in", 1, 1).unwrap();
    cluster.create_topic("out", 1, 1).unwrap();
    let mut settings = KafkaSettings::new(vec![(
        "bootstrap.servers".into(),
        cluster.bootstrap_servers(),
    )]);
    settings.transactional_id = Some("app-1".into());
    let log = KafkaLog::connect(settings).unwrap();
    let offsets = |offset| {
        [CommittedOffset {
            topic: "in".into(),
            partition: 0,
            offset,
            metadata: String::new(),
        }]
    };
    let append = |from: u64| {
        vec![Append {
            topic: "out".into(),
            partition: 0,
            records: (from..from + 3).map(record).collect(),
        }]
    };

    let firsts = log
        .append_and_commit(append(0), "app", &offsets(3))
        .unwrap();
    assert_eq!(firsts, [0]);

    // The group refuses the offsets: the transaction aborts, its records stay unread.
    cluster.request_errors(
        RDKafkaApiKey::TxnOffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION],
    );
    let refused = log.append_and_commit(append(100), "app", &offsets(6));
    assert!(
        matches!(refused, Err(LogError::TransactionAborted { .. })),
        "{refused:?}"
    );

    cluster.clear_request_errors(RDKafkaApiKey::TxnOffsetCommit);
    log.append_and_commit(append(3), "app", &offsets(6))
        .unwrap();
    // A plain append is a transaction of its own.
    log.append("out", 0, vec![record(6)]).unwrap();

    let read: Vec<Record> = read_all(&log, "out", 0, 0, 10)
        .records
        .into_iter()
        .map(|r| r.record)
        .filter(|r| !append(100)[0].records.contains(r))
        .collect();
    assert_eq!(read, (0..7).map(record).collect::<Vec<_>>());
}

#[test]
fn an_append_larger_than_the_producer_queue_waits_for_room() {
    let broker = Broker::start();
    let mut settings = broker.settings();
    settings
        .properties
        .push(("producer.queue.buffering.max.messages".into(), "10".into()));
    let log = KafkaLog::connect(settings).unwrap();
    log.create_topic("big", 1).unwrap();
    let records: Vec<Record> = (0..100).map(record).collect();
    assert_eq!(log.append("big", 0, records.clone()).unwrap(), 0);
    let read = read_all(&log, "big", 0, 0, 100);
    let got: Vec<Record> = read.records.into_iter().map(|r| r.record).collect();
    assert_eq!(got, records);
}

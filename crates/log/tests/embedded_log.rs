//! The embedded log against real files: appends and reads, offsets, atomic append-and-commit,
//! crash recovery, the data directory lock, retention, topic configs and compaction.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use millrace_log::{
    Append, CommittedOffset, EmbeddedLog, EmbeddedLogConfig, Header, Log, LogError, Record,
    TopicConfig,
};

fn record(i: u64) -> Record {
    Record {
        key: Some(Bytes::from(format!("key-{i}"))),
        value: Some(Bytes::from(format!("value-{i}"))),
        timestamp: 1_700_000_000_000 + i as i64,
        headers: vec![Header {
            key: "n".into(),
            value: Some(Bytes::from(i.to_string())),
        }],
    }
}

fn open(dir: &std::path::Path) -> EmbeddedLog {
    EmbeddedLog::open(dir, EmbeddedLogConfig::default()).unwrap()
}

fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn appends_read_back_in_order_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        assert!(log.create_topic("events", 3).unwrap());
        assert!(!log.create_topic("events", 5).unwrap(), "exists already");
        assert_eq!(
            log.append("events", 1, (0..10).map(record).collect())
                .unwrap(),
            0
        );
        assert_eq!(
            log.append("events", 1, (10..25).map(record).collect())
                .unwrap(),
            10
        );
        assert_eq!(log.append("events", 0, vec![record(99)]).unwrap(), 0);
    }
    let log = open(dir.path());
    assert_eq!(log.partition_count("events").unwrap(), Some(3));
    assert_eq!(log.offset_range("events", 1).unwrap(), (0, 25));
    let fetched = log.read("events", 1, 7, 100).unwrap();
    assert_eq!((fetched.next_offset, fetched.end_offset), (25, 25));
    assert!(fetched.caught_up());
    let read = fetched.records;
    assert_eq!(read.len(), 18);
    for (i, stored) in read.iter().enumerate() {
        assert_eq!(stored.offset, 7 + i as u64);
        assert_eq!(stored.record, record(7 + i as u64));
    }
    let partial = log.read("events", 1, 3, 4).unwrap();
    assert_eq!((partial.records.len(), partial.next_offset), (4, 7));
    assert!(!partial.caught_up());
    let empty = log.read("events", 2, 0, 10).unwrap();
    assert!(empty.records.is_empty() && empty.caught_up());
    assert!(matches!(
        log.read("events", 3, 0, 1),
        Err(LogError::UnknownPartition { partitions: 3, .. })
    ));
    assert!(matches!(
        log.read("nope", 0, 0, 1),
        Err(LogError::UnknownTopic(_))
    ));
    assert!(matches!(
        log.create_topic("bad name", 1),
        Err(LogError::InvalidTopicName(_))
    ));
}

#[test]
fn appending_to_a_missing_topic_creates_it_with_one_partition() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append("auto", 0, vec![record(1)]).unwrap();
    assert_eq!(log.partition_count("auto").unwrap(), Some(1));
    assert!(log.append("auto2", 1, vec![record(1)]).is_err());
    assert_eq!(
        log.partition_count("auto2").unwrap(),
        None,
        "a failed append must not leave a topic behind"
    );
    assert_eq!(log.ensure_topic("auto3").unwrap(), 1);
}

#[test]
fn append_and_commit_is_one_step() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.create_topic("in", 1).unwrap();
        log.create_topic("out", 2).unwrap();
        log.append("in", 0, (0..5).map(record).collect()).unwrap();
        let bases = log
            .append_and_commit(
                vec![
                    Append {
                        topic: "out".into(),
                        partition: 0,
                        records: vec![record(1), record(2)],
                    },
                    Append {
                        topic: "out".into(),
                        partition: 0,
                        records: vec![record(3)],
                    },
                ],
                "app",
                &[CommittedOffset {
                    topic: "in".into(),
                    partition: 0,
                    offset: 5,
                    metadata: String::new(),
                }],
            )
            .unwrap();
        assert_eq!(bases, [0, 2], "the offset of each append's first record");
        assert_eq!(log.committed("app", "in", 0).unwrap(), Some(5));
        assert_eq!(log.committed("other", "in", 0).unwrap(), None);
    }
    let log = open(dir.path());
    assert_eq!(log.committed("app", "in", 0).unwrap(), Some(5));
    let out = log.read("out", 0, 0, 10).unwrap().records;
    assert_eq!(
        out.iter().map(|r| r.record.clone()).collect::<Vec<_>>(),
        vec![record(1), record(2), record(3)]
    );
}

#[test]
fn a_torn_tail_is_truncated_and_earlier_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.create_topic("t", 1).unwrap();
        for i in 0..20 {
            log.append("t", 0, vec![record(i)]).unwrap();
        }
    }
    let segment = segment_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&segment).unwrap().len();
    // Cut the last entry in half, as a crash in the middle of a write would.
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    {
        let log = open(dir.path());
        assert_eq!(log.offset_range("t", 0).unwrap(), (0, 19));
        assert_eq!(
            log.read("t", 0, 18, 5).unwrap().records[0].record,
            record(18)
        );
        assert_eq!(log.append("t", 0, vec![record(100)]).unwrap(), 19);
    }
    // Garbage after the last entry (a checksum mismatch) is cut away too.
    OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9])
        .unwrap();
    let log = open(dir.path());
    assert_eq!(log.offset_range("t", 0).unwrap(), (0, 20));
    assert_eq!(
        log.read("t", 0, 19, 1).unwrap().records[0].record,
        record(100)
    );
}

#[test]
fn a_second_owner_is_refused_with_the_owner_named() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    let err = match EmbeddedLog::open(dir.path(), EmbeddedLogConfig::default()) {
        Err(e) => e,
        Ok(_) => panic!("a second open of a locked data directory must fail"),
    };
    let message = err.to_string();
    assert!(
        message.contains("in use by another millrace process"),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
}

/// A deleted topic is gone with its settings and committed offsets, also after a reopen
/// (segments rolled past the deletion included); made again, it starts empty at offset 0.
#[test]
fn a_deleted_topic_stays_deleted_and_can_be_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedLogConfig {
        segment_bytes: 4096,
        ..EmbeddedLogConfig::default()
    };
    let compacted = TopicConfig::from_properties([("cleanup.policy", "compact")]).unwrap();
    {
        let log = EmbeddedLog::open(dir.path(), config.clone()).unwrap();
        log.create_topic_with_config("t", 2, &compacted).unwrap();
        log.create_topic("kept", 1).unwrap();
        log.append_and_commit(
            vec![Append {
                topic: "t".into(),
                partition: 1,
                records: (0..5).map(record).collect(),
            }],
            "g",
            &[CommittedOffset {
                topic: "t".into(),
                partition: 1,
                offset: 5,
                metadata: String::new(),
            }],
        )
        .unwrap();
        assert!(log.delete_topic("t").unwrap());
        assert!(!log.delete_topic("t").unwrap());
        assert!(matches!(
            log.read("t", 1, 0, 10),
            Err(LogError::UnknownTopic(_))
        ));
        // Enough appends elsewhere to roll segments past the deletion.
        for i in 0..200 {
            log.append("kept", 0, vec![record(i)]).unwrap();
        }
    }
    let log = EmbeddedLog::open(dir.path(), config).unwrap();
    assert_eq!(log.partition_count("t").unwrap(), None);
    assert_eq!(log.committed("g", "t", 1).unwrap(), None);
    assert_eq!(log.offset_range("kept", 0).unwrap().1, 200);
    assert!(log.create_topic("t", 1).unwrap());
    assert_eq!(log.topic_config("t").unwrap(), Some(TopicConfig::default()));
    assert_eq!(log.append("t", 0, vec![record(9)]).unwrap(), 0);
    assert_eq!(log.read("t", 0, 0, 10).unwrap().records.len(), 1);
}

#[test]
fn retention_deletes_old_segments_but_keeps_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedLogConfig {
        segment_bytes: 4096,
        retention_bytes: Some(16 * 1024),
        ..EmbeddedLogConfig::default()
    };
    {
        let log = EmbeddedLog::open(dir.path(), config.clone()).unwrap();
        log.create_topic("t", 1).unwrap();
        log.commit(
            "g",
            &[CommittedOffset {
                topic: "t".into(),
                partition: 0,
                offset: 3,
                metadata: "partitionTime=42".into(),
            }],
        )
        .unwrap();
        for i in 0..2000 {
            log.append("t", 0, vec![record(i)]).unwrap();
        }
        let (start, end) = log.offset_range("t", 0).unwrap();
        assert_eq!(end, 2000);
        assert!(start > 0, "old records must be gone");
        assert!(segment_files(dir.path()).len() <= 6);
        let first = log.read("t", 0, 0, 1).unwrap().records;
        assert_eq!(first[0].offset, start, "reads continue at the start");
    }
    let log = EmbeddedLog::open(dir.path(), config).unwrap();
    assert_eq!(log.offset_range("t", 0).unwrap().1, 2000);
    assert_eq!(log.committed("g", "t", 0).unwrap(), Some(3));
    assert_eq!(
        log.committed_metadata("g", "t", 0).unwrap().as_deref(),
        Some("partitionTime=42"),
        "commit metadata survives the deletion of the segment it was written in"
    );
    assert_eq!(log.append("t", 0, vec![record(1)]).unwrap(), 2000);
}

#[test]
fn waiting_readers_wake_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(open(dir.path()));
    log.create_topic("t", 1).unwrap();
    let generation = log.append_generation();
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            log.append("t", 0, vec![record(1)]).unwrap();
        })
    };
    let started = std::time::Instant::now();
    log.wait_for_append(generation, Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "woken by the append"
    );
    assert_ne!(log.append_generation(), generation);
    writer.join().unwrap();
}

#[test]
fn wake_waiters_ends_waits_without_an_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(open(dir.path()));
    log.create_topic("t", 1).unwrap();
    let generation = log.append_generation();
    let (woken, wakes) = std::sync::mpsc::channel();
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            // Longer than any test runs: only the wake can end it.
            log.wait_for_append(generation, Duration::from_secs(24 * 3600));
            woken.send(()).unwrap();
        })
    };
    log.wake_waiters();
    assert!(
        wakes.recv_timeout(Duration::from_secs(60)).is_ok(),
        "the waiting reader was not woken"
    );
    assert_ne!(log.append_generation(), generation);
    assert_eq!(
        log.offset_range("t", 0).unwrap(),
        (0, 0),
        "nothing appended"
    );
    reader.join().unwrap();
}

/// Child half of the kill -9 test: appends forever, printing each acknowledged offset.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var("MILLRACE_CRASH_CHILD_DIR") else {
        return;
    };
    let log = open(std::path::Path::new(&dir));
    log.create_topic("t", 1).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let offset = log.append("t", 0, vec![record(i)]).unwrap();
        writeln!(out, "acked {offset}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill_minus_nine_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MILLRACE_CRASH_CHILD_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut last_acked = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("acked ") {
            let n: u64 = n.parse().unwrap();
            last_acked = Some(n);
            if n >= 3000 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let last_acked = last_acked.expect("the child acknowledged appends");
    let log = open(dir.path());
    let (_, end) = log.offset_range("t", 0).unwrap();
    assert!(end > last_acked, "offset {last_acked} was acknowledged");
    let read = log.read("t", 0, 0, end as usize).unwrap().records;
    assert_eq!(read.len() as u64, end);
    for stored in &read {
        assert_eq!(stored.record, record(stored.offset));
    }
}

#[test]
fn kafka_properties_configure_the_log() {
    let config = EmbeddedLogConfig::default()
        .with_properties([
            ("num.partitions", "3"),
            ("log.retention.bytes", "1000000"),
            ("log.retention.ms", "-1"),
            ("log.segment.bytes", "65536"),
            ("log.flush.interval.messages", "1"),
            ("application.id", "ignored"),
        ])
        .unwrap();
    assert_eq!(config.default_partitions, 3);
    assert_eq!(config.retention_bytes, Some(1_000_000));
    assert_eq!(config.retention, None);
    assert_eq!(config.segment_bytes, 65536);
    assert!(config.sync_writes);
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), config).unwrap();
    assert_eq!(log.ensure_topic("auto").unwrap(), 3);
    let err = EmbeddedLogConfig::default()
        .with_properties([("num.partitions", "many")])
        .unwrap_err();
    assert_eq!(err, "num.partitions must be a whole number, found 'many'");
    let err = EmbeddedLogConfig::default()
        .with_properties([("num.partitions", "-1")])
        .unwrap_err();
    assert_eq!(
        err,
        "num.partitions: a topic has 1 to 10000 partitions, not -1"
    );
}

#[test]
fn journals_damaged_into_huge_counts_are_refused_not_allocated() {
    // Found by fuzzing: an entry claiming 4 billion records reserved 64 GB and aborted.
    let found = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/seeds/journal/found-huge-record-count.bin"),
    )
    .unwrap();
    millrace_log::fuzz::open_damaged_journal(&found);

    // A topic of 4 billion partitions, written by hand with a valid checksum.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("log")).unwrap();
    let mut payload = 1u32.to_le_bytes().to_vec(); // one operation
    payload.push(1); // create a topic
    payload.extend_from_slice(&1u16.to_le_bytes());
    payload.push(b't');
    payload.extend_from_slice(&u32::MAX.to_le_bytes()); // partitions
    payload.extend_from_slice(&0u32.to_le_bytes()); // no next offsets
    let mut entry = (payload.len() as u32).to_le_bytes().to_vec();
    entry.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    entry.extend_from_slice(&payload);
    std::fs::write(
        dir.path().join("log").join(format!("{:020}.log", 0)),
        &entry,
    )
    .unwrap();
    let error = EmbeddedLog::open(dir.path(), EmbeddedLogConfig::default())
        .err()
        .expect("a clear error, not an allocation of 4 billion partitions");
    assert!(
        error
            .to_string()
            .ends_with("at byte 8: too many partitions"),
        "{error}"
    );

    let other = tempfile::tempdir().unwrap();
    let log = open(other.path());
    let error = log.create_topic("huge", 4_000_000_000).unwrap_err();
    assert_eq!(
        error.to_string(),
        "a topic has 1 to 10000 partitions, not 4000000000"
    );
    assert!(log.create_topic("none", 0).is_err());
    assert!(
        log.create_topic("most", millrace_log::MAX_PARTITIONS)
            .unwrap()
    );
}

/// A log whose closed segments are all past retention at once: small segments, no time kept.
fn short_lived(dir: &std::path::Path) -> EmbeddedLog {
    let config = EmbeddedLogConfig {
        segment_bytes: 4096,
        retention: Some(Duration::ZERO),
        ..EmbeddedLogConfig::default()
    };
    EmbeddedLog::open(dir, config).unwrap()
}

/// A record of now (tombstones age by their timestamp too).
fn keyed(key: &str, value: Option<String>) -> Record {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    Record {
        key: Some(Bytes::from(key.to_string())),
        value: value.map(Bytes::from),
        timestamp: now,
        headers: vec![],
    }
}

/// Every record of a partition as (offset, key, value).
fn contents(log: &EmbeddedLog, topic: &str) -> Vec<(u64, String, Option<String>)> {
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    log.read(topic, 0, 0, usize::MAX)
        .unwrap()
        .records
        .into_iter()
        .map(|r| {
            let key = r.record.key.as_ref().map(text).unwrap_or_default();
            (r.offset, key, r.record.value.as_ref().map(text))
        })
        .collect()
}

#[test]
fn compacted_topics_keep_the_latest_record_of_each_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let compacted = TopicConfig::compacted();
    let mut expected_latest = std::collections::BTreeMap::new();
    {
        let log = short_lived(dir.path());
        assert!(
            log.create_topic_with_config("store-changelog", 1, &compacted)
                .unwrap()
        );
        log.create_topic("events", 1).unwrap();
        // Ten keys rewritten over and over; k9 is deleted (a tombstone) halfway.
        for i in 0..3000u64 {
            let (key, value) = match i {
                1500 => ("k9".to_string(), None),
                i if i > 1500 => (format!("k{}", i % 9), Some(format!("v{i}"))),
                i => (format!("k{}", i % 10), Some(format!("v{i}"))),
            };
            let offset = log
                .append("store-changelog", 0, vec![keyed(&key, value.clone())])
                .unwrap();
            expected_latest.insert(key, (offset, value));
            log.append("events", 0, vec![record(i)]).unwrap();
        }
        assert!(
            log.offset_range("events", 0).unwrap().0 > 0,
            "events expire"
        );
    }
    let log = short_lived(dir.path());
    assert_eq!(
        log.topic_config("store-changelog").unwrap(),
        Some(compacted)
    );
    assert_eq!(
        log.topic_config("events").unwrap(),
        Some(TopicConfig::default())
    );
    let records = contents(&log, "store-changelog");
    assert!(
        records.len() < 1000,
        "superseded records must be gone, found {}",
        records.len()
    );
    assert!(
        records.windows(2).all(|w| w[0].0 < w[1].0),
        "offsets ascend"
    );
    let mut last_seen = std::collections::BTreeMap::new();
    for (offset, key, value) in records {
        last_seen.insert(key, (offset, value));
    }
    // The tombstone is younger than delete.retention.ms (a day), so it is still there.
    assert_eq!(last_seen, expected_latest);
    assert_eq!(log.offset_range("store-changelog", 0).unwrap().1, 3000);
    let refused = log.append("store-changelog", 0, vec![Record::default()]);
    assert!(
        matches!(refused, Err(LogError::KeylessRecord(_))),
        "{refused:?}"
    );
}

#[test]
fn tombstones_go_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let log = short_lived(dir.path());
    let config =
        TopicConfig::from_properties([("cleanup.policy", "compact"), ("delete.retention.ms", "0")])
            .unwrap();
    log.create_topic_with_config("c", 1, &config).unwrap();
    log.append("c", 0, vec![keyed("gone", Some("x".into()))])
        .unwrap();
    log.append("c", 0, vec![keyed("gone", None)]).unwrap();
    for i in 0..2000u64 {
        log.append("c", 0, vec![keyed("other", Some(format!("v{i}")))])
            .unwrap();
    }
    let records = contents(&log, "c");
    assert!(
        records.iter().all(|(_, key, _)| key == "other"),
        "{:?}",
        &records[..3]
    );
    assert_eq!(records.last().unwrap().2.as_deref(), Some("v1999"));
}

#[test]
fn a_topic_retention_outlives_the_log_default() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = short_lived(dir.path());
        let forever = TopicConfig::from_properties([("retention.ms", "-1")]).unwrap();
        log.create_topic_with_config("kept", 1, &forever).unwrap();
        log.create_topic("dropped", 1).unwrap();
        for i in 0..1000 {
            log.append("kept", 0, vec![record(i)]).unwrap();
            log.append("dropped", 0, vec![record(i)]).unwrap();
        }
        assert_eq!(log.offset_range("kept", 0).unwrap(), (0, 1000));
        assert!(log.offset_range("dropped", 0).unwrap().0 > 0);
    }
    let log = short_lived(dir.path());
    assert_eq!(log.offset_range("kept", 0).unwrap(), (0, 1000));
    assert_eq!(
        log.read("kept", 0, 0, 1).unwrap().records[0].record,
        record(0)
    );
    let (start, _) = log.offset_range("dropped", 0).unwrap();
    assert!(start > 0, "expired records stay expired after a restart");
    assert_eq!(
        log.read("dropped", 0, 0, 1).unwrap().records[0].offset,
        start
    );
}

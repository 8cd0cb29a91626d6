//! The SQLite catalog: exactly-once publishing, segment flags, offsets, supervisors, tasks.

use std::sync::Arc;

use millrace_catalog::*;
use serde_json::json;

fn segment(ds: &str, start: i64, partition: u32) -> SegmentRecord {
    let descriptor = SegmentDescriptor {
        data_source: ds.into(),
        interval: format!("{start}/{}", start + 3_600_000),
        version: "2024-05-01T00:00:00.000Z".into(),
        load_spec: LoadSpec {
            kind: "local".into(),
            path: format!("segments/{ds}/{start}_{partition}.parquet"),
        },
        dimensions: "username".into(),
        metrics: "count".into(),
        shard_spec: ShardSpec::Numbered {
            partition_num: partition,
            partitions: 0,
        },
        last_compaction_state: None,
        binary_version: 9,
        size: 100,
        identifier: format!("{ds}_{start}_{partition}"),
        num_rows: 10,
        columns: json!({}),
    };
    SegmentRecord::of(descriptor, (start, start + 3_600_000))
}

fn offsets(pairs: &[(u32, u64)]) -> PartitionOffsets {
    pairs
        .iter()
        .map(|&(p, o)| (TopicPartition::new("social", p), o))
        .collect()
}

fn advance(start: &[(u32, u64)], end: &[(u32, u64)]) -> OffsetAdvance {
    OffsetAdvance {
        stream: "social".into(),
        start: offsets(start),
        end: offsets(end),
    }
}

fn open(dir: &tempfile::TempDir) -> SqliteCatalog {
    SqliteCatalog::open(&dir.path().join("catalog.db")).unwrap()
}

#[test]
fn publishing_checks_the_start_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(&dir);
    assert_eq!(
        catalog
            .publish(
                "ds",
                &[segment("ds", 0, 0)],
                Some(&advance(&[(0, 0), (1, 0)], &[(0, 5), (1, 7)]))
            )
            .unwrap(),
        PublishOutcome::Published
    );
    assert_eq!(
        catalog.offsets("ds").unwrap().unwrap().partitions,
        offsets(&[(0, 5), (1, 7)])
    );
    // A task that started from the old offsets (a duplicate after a crash) publishes nothing.
    let stale = catalog
        .publish(
            "ds",
            &[segment("ds", 0, 1)],
            Some(&advance(&[(0, 0)], &[(0, 5)])),
        )
        .unwrap();
    assert!(
        matches!(stale, PublishOutcome::OffsetsMoved { stored } if stored.partitions[&TopicPartition::new("social", 0)] == 5)
    );
    assert_eq!(
        catalog.segments("ds", true).unwrap().len(),
        1,
        "the refused segment is not there"
    );
    assert_eq!(
        catalog
            .publish(
                "ds",
                &[segment("ds", 0, 1)],
                Some(&advance(&[(0, 5)], &[(0, 9)]))
            )
            .unwrap(),
        PublishOutcome::Published
    );
    assert_eq!(
        catalog.offsets("ds").unwrap().unwrap().partitions,
        offsets(&[(0, 9), (1, 7)])
    );
    drop(catalog);
    let reopened = open(&dir);
    assert_eq!(reopened.segments("ds", true).unwrap().len(), 2);
    // The descriptor comes back whole.
    assert_eq!(
        reopened.segments("ds", true).unwrap()[1].descriptor,
        segment("ds", 0, 1).descriptor
    );
}

#[test]
fn of_two_racing_publishes_from_the_same_start_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(open(&dir));
    catalog
        .set_offsets(
            "ds",
            Some(&StreamOffsets {
                stream: "social".into(),
                partitions: offsets(&[(0, 10)]),
            }),
        )
        .unwrap();
    let racers: Vec<_> = (0..2)
        .map(|i| {
            let catalog = catalog.clone();
            std::thread::spawn(move || {
                catalog
                    .publish(
                        "ds",
                        &[segment("ds", 0, i)],
                        Some(&advance(&[(0, 10)], &[(0, 20)])),
                    )
                    .unwrap()
            })
        })
        .collect();
    let outcomes: Vec<PublishOutcome> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == PublishOutcome::Published)
            .count(),
        1
    );
    assert_eq!(catalog.segments("ds", false).unwrap().len(), 1);
}

#[test]
fn marking_and_killing_segments() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(&dir);
    let hour = 3_600_000;
    let segments: Vec<SegmentRecord> = (0..4).map(|h| segment("ds", h * hour, 0)).collect();
    catalog.publish("ds", &segments, None).unwrap();
    catalog
        .publish("other", &[segment("other", 0, 0)], None)
        .unwrap();
    assert_eq!(catalog.datasources().unwrap(), ["ds", "other"]);
    assert_eq!(
        catalog
            .mark_unused("ds", &SegmentSelection::Interval(hour, 3 * hour))
            .unwrap(),
        2
    );
    assert_eq!(catalog.segments("ds", true).unwrap().len(), 2);
    assert_eq!(
        catalog
            .mark_used("ds", &SegmentSelection::Ids(vec![segments[1].id.clone()]))
            .unwrap(),
        1
    );
    assert_eq!(
        catalog.mark_unused("ds", &SegmentSelection::All).unwrap(),
        3
    );
    assert_eq!(
        catalog
            .mark_unused("nothing", &SegmentSelection::All)
            .unwrap(),
        0
    );
    assert_eq!(catalog.datasources().unwrap(), ["other"]);
    let killed = catalog.delete_unused("ds", (0, 2 * hour)).unwrap();
    assert_eq!(killed.len(), 2);
    assert_eq!(catalog.segments("ds", false).unwrap().len(), 2);
}

#[test]
fn a_replacement_publishes_only_over_the_used_segments_it_expects() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(&dir);
    let hour = 3_600_000;
    let inputs: Vec<SegmentRecord> = (0..2).map(|p| segment("ds", 0, p)).collect();
    catalog.publish("ds", &inputs, None).unwrap();
    catalog
        .publish("ds", &[segment("ds", hour, 0)], None)
        .unwrap();
    let mut compacted = segment("ds", 0, 7);
    compacted.version = "2024-06-01T00:00:00.000Z".into();
    let replacement = Replacement {
        segments: vec![compacted.clone()],
        intervals: vec![(0, hour)],
        expected_used: inputs.iter().map(|s| s.id.clone()).collect(),
        retire: vec![inputs[1].id.clone()],
    };
    // A segment appended to the hour meanwhile: refused, nothing written.
    let appended = segment("ds", 0, 2);
    catalog
        .publish("ds", std::slice::from_ref(&appended), None)
        .unwrap();
    assert_eq!(
        catalog.replace("ds", &replacement).unwrap(),
        ReplaceOutcome::Changed {
            appeared: vec![appended.id.clone()],
            gone: vec![]
        }
    );
    assert_eq!(catalog.segments("ds", true).unwrap().len(), 4);
    catalog
        .mark_unused(
            "ds",
            &SegmentSelection::Ids(vec![appended.id.clone(), inputs[0].id.clone()]),
        )
        .unwrap();
    assert_eq!(
        catalog.replace("ds", &replacement).unwrap(),
        ReplaceOutcome::Changed {
            appeared: vec![],
            gone: vec![inputs[0].id.clone()]
        }
    );
    catalog
        .mark_used("ds", &SegmentSelection::Ids(vec![inputs[0].id.clone()]))
        .unwrap();
    assert_eq!(
        catalog.replace("ds", &replacement).unwrap(),
        ReplaceOutcome::Published
    );
    let used: Vec<String> = catalog
        .segments("ds", true)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        used,
        vec![
            inputs[0].id.clone(),
            compacted.id.clone(),
            segment("ds", hour, 0).id
        ],
        "the retired input is unused, the other stays (overshadowed)"
    );
}

#[test]
fn supervisors_and_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open(&dir);
    let supervisor = SupervisorRecord {
        id: "ds".into(),
        spec: json!({"type": "kafka"}),
        suspended: false,
        created: 1,
    };
    catalog.put_supervisor(&supervisor).unwrap();
    catalog
        .put_supervisor(&SupervisorRecord {
            suspended: true,
            ..supervisor.clone()
        })
        .unwrap();
    assert_eq!(
        catalog.supervisors().unwrap(),
        vec![SupervisorRecord {
            suspended: true,
            ..supervisor
        }]
    );
    assert!(catalog.delete_supervisor("ds").unwrap());
    assert!(!catalog.delete_supervisor("ds").unwrap());
    let task = TaskRecord {
        id: "index_kafka_ds_abc".into(),
        datasource: "ds".into(),
        kind: TaskKind::IndexKafka,
        status: TaskStatus::Running,
        created: 5,
        payload: json!({"groupId": "index_kafka_ds"}),
    };
    catalog.put_task(&task).unwrap();
    catalog
        .put_task(&TaskRecord {
            status: TaskStatus::Success,
            ..task.clone()
        })
        .unwrap();
    assert_eq!(
        catalog.task("index_kafka_ds_abc").unwrap().unwrap().status,
        TaskStatus::Success
    );
    assert_eq!(catalog.tasks().unwrap().len(), 1);
    assert_eq!(catalog.task("nope").unwrap(), None);
    catalog.set_offsets("ds", None).unwrap();
    assert_eq!(catalog.offsets("ds").unwrap(), None);
}

#[test]
fn topic_partitions_are_written_as_druid_writes_them() {
    let partition = TopicPartition::new("events:eu", 3);
    assert_eq!(partition.to_string(), "events:eu:3");
    assert_eq!("events:eu:3".parse::<TopicPartition>(), Ok(partition));
    assert!("events".parse::<TopicPartition>().is_err());
    let stored = StreamOffsets {
        stream: "events.*".into(),
        partitions: [(TopicPartition::new("events_a", 0), 7)].into(),
    };
    let text = serde_json::to_string(&stored).unwrap();
    assert_eq!(
        text,
        r#"{"stream":"events.*","partitions":{"events_a:0":7}}"#
    );
    assert_eq!(
        serde_json::from_str::<StreamOffsets>(&text).unwrap(),
        stored
    );
}

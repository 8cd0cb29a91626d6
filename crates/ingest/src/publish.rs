//! A task's hand-off: its chunk indexes become Parquet segment files, and the segments and
//! the task's end offsets go into the catalog in one transaction that checks where the task
//! started. Segment ids, versions and `numbered` shard specs are formed as Druid forms them.

use std::path::PathBuf;

use millrace_catalog::{
    LoadSpec, OffsetAdvance, PartitionOffsets, PublishOutcome, SegmentDescriptor, SegmentRecord,
    ShardSpec,
};
use millrace_segments::columns::SegmentSchema;
use millrace_segments::time::{format_interval, format_iso};
use millrace_segments::timeline::SegmentPlace;
use serde_json::json;

use crate::visible::TaskIndexes;
use crate::{Context, IngestError, now_millis};

/// The version new segments of a chunk get when the chunk has none: the time, as ISO text.
fn new_version() -> String {
    format_iso(now_millis())
}

/// Where a chunk's next appended segment goes: the version the chunk's used segments have
/// (or a new one) and the partition number after the highest taken.
fn allocate(
    existing: &[SegmentRecord],
    datasource: &str,
    (start, end): (i64, i64),
    fresh_version: &str,
) -> SegmentPlace {
    let in_chunk = || {
        existing
            .iter()
            .filter(move |s| s.start == start && s.end == end)
    };
    let version = in_chunk()
        .filter(|s| s.used)
        .map(|s| s.version.clone())
        .max()
        .unwrap_or_else(|| fresh_version.to_string());
    let partition_num = in_chunk()
        .filter(|s| s.version == version)
        .map(|s| s.partition_num + 1)
        .max()
        .unwrap_or(0);
    SegmentPlace {
        datasource: datasource.to_string(),
        start,
        end,
        version,
        partition_num,
        core_partitions: 0,
    }
}

/// The catalog record of a segment file: where it is, its rows and columns, its shard spec
/// and, for a compacted one, how it was compacted.
pub(crate) fn record(
    place: &SegmentPlace,
    relative_path: &str,
    size: u64,
    num_rows: u64,
    schema: &SegmentSchema,
    shard_spec: ShardSpec,
    last_compaction_state: Option<serde_json::Value>,
) -> Result<SegmentRecord, IngestError> {
    let names = |names: Vec<&str>| names.join(",");
    let descriptor = SegmentDescriptor {
        data_source: place.datasource.clone(),
        interval: format_interval((place.start, place.end)),
        version: place.version.clone(),
        load_spec: LoadSpec {
            kind: "local".into(),
            path: relative_path.into(),
        },
        dimensions: names(schema.dimensions.iter().map(|(n, _)| n.as_str()).collect()),
        metrics: names(schema.metrics.iter().map(|(n, _)| n.as_str()).collect()),
        shard_spec,
        last_compaction_state,
        binary_version: 9,
        size,
        identifier: place.id(),
        num_rows,
        columns: serde_json::to_value(schema)?,
    };
    Ok(SegmentRecord::of(descriptor, (place.start, place.end)))
}

/// An appended segment's `numbered` shard spec: appended segments need no particular set to
/// be complete.
pub(crate) fn appended(partition_num: u32) -> ShardSpec {
    ShardSpec::Numbered {
        partition_num,
        partitions: 0,
    }
}

/// Writes the task's non-empty indexes as segments and publishes them with the offset
/// advance. When the stored offsets moved, nothing is published and the files are removed.
pub fn publish(
    context: &Context,
    datasource: &str,
    task_id: &str,
    indexes: &TaskIndexes,
    advance: &OffsetAdvance,
) -> Result<PublishOutcome, IngestError> {
    // One publish at a time, so two tasks never take the same partition number.
    let _allocation = context.publish_lock.lock().expect("publish lock");
    let mut existing = context.catalog.segments(datasource, false)?;
    let version = new_version();
    let directory = context.data_dir.join("segments").join(datasource);
    std::fs::create_dir_all(&directory)
        .map_err(|e| IngestError::Io(format!("creating {}", directory.display()), e))?;
    let mut records = Vec::new();
    let mut written: Vec<PathBuf> = Vec::new();
    let mut write_all = || -> Result<(), IngestError> {
        // The indexes are let go before the visible registry is locked to publish: queries
        // lock the two the other way round.
        let mut indexes = indexes.lock().expect("task indexes lock");
        for index in indexes.iter_mut().filter(|i| !i.is_empty()) {
            let place = allocate(&existing, datasource, index.interval(), &version);
            let file_name = format!("{}.parquet", place.id());
            let path = directory.join(&file_name);
            let size = index.write_segment(&path)?;
            written.push(path);
            let record = record(
                &place,
                &format!("segments/{datasource}/{file_name}"),
                size,
                index.len() as u64,
                index.schema(),
                appended(place.partition_num),
                None,
            )?;
            existing.push(record.clone());
            records.push(record);
        }
        Ok(())
    };
    let outcome = write_all().and_then(|()| {
        Ok(context
            .visible
            .publish(context.catalog.as_ref(), datasource, task_id, || {
                context.catalog.publish(datasource, &records, Some(advance))
            })?)
    });
    // Files of segments that were not published are nobody's: a retry writes new ones.
    if !matches!(outcome, Ok(PublishOutcome::Published)) {
        for path in written {
            let _ = std::fs::remove_file(path);
        }
    }
    outcome
}

/// Offsets as Druid shows them: partition to offset, the partition written as its number for
/// a single-topic stream and as `topic:partition` for a topicPattern.
pub fn offsets_json(stream: &str, offsets: &PartitionOffsets) -> serde_json::Value {
    offsets
        .iter()
        .map(|(p, o)| {
            let key = if p.topic == stream {
                p.partition.to_string()
            } else {
                p.to_string()
            };
            (key, json!(o))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(start: i64, version: &str, partition_num: u32, used: bool) -> SegmentRecord {
        let place = SegmentPlace {
            datasource: "d".into(),
            start,
            end: start + 10,
            version: version.into(),
            partition_num,
            core_partitions: 0,
        };
        let schema = SegmentSchema::default();
        SegmentRecord {
            used,
            ..record(
                &place,
                "segments/d/x.parquet",
                0,
                0,
                &schema,
                appended(partition_num),
                None,
            )
            .unwrap()
        }
    }

    #[test]
    fn offsets_show_partition_numbers_for_a_topic_and_topic_partitions_for_a_pattern() {
        use millrace_catalog::TopicPartition;
        let offsets: PartitionOffsets = [
            (TopicPartition::new("events", 0), 5),
            (TopicPartition::new("events", 1), 7),
        ]
        .into();
        assert_eq!(offsets_json("events", &offsets), json!({"0": 5, "1": 7}));
        assert_eq!(
            offsets_json("ev.*", &offsets),
            json!({"events:0": 5, "events:1": 7})
        );
    }

    #[test]
    fn appends_take_the_chunk_version_and_the_next_partition() {
        let existing = vec![
            segment(0, "v1", 0, true),
            segment(0, "v1", 1, true),
            segment(0, "v0", 7, false),
            segment(10, "v1", 0, true),
        ];
        let place = allocate(&existing, "d", (0, 10), "v9");
        assert_eq!((place.version.as_str(), place.partition_num), ("v1", 2));
        let fresh = allocate(&existing, "d", (20, 30), "v9");
        assert_eq!((fresh.version.as_str(), fresh.partition_num), ("v9", 0));
    }
}

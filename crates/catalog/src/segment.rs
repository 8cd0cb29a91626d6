//! What the catalog keeps of a published segment beyond its place: Druid's segment JSON
//! (`DataSegment`), typed, with its shard spec.

use serde::{Deserialize, Serialize};

/// How a segment's rows are split from the other segments of its time chunk and version:
/// Druid's `shardSpec`, with the field names Druid writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ShardSpec {
    /// Appended segments numbered in the order published; `partitions` of them make the
    /// chunk complete (0: the chunk needs none in particular, as streaming appends).
    #[serde(rename = "numbered", rename_all = "camelCase")]
    Numbered { partition_num: u32, partitions: u32 },
    /// Like numbered, with no core set.
    #[serde(rename = "linear", rename_all = "camelCase")]
    Linear { partition_num: u32 },
    /// Rows whose `dimension` value is in [start, end) (None: unbounded).
    #[serde(rename = "single", rename_all = "camelCase")]
    Single {
        dimension: String,
        start: Option<String>,
        end: Option<String>,
        partition_num: u32,
        num_core_partitions: u32,
    },
    /// Rows whose tuple of `dimensions` values is in [start, end) (None: unbounded; a None
    /// inside a tuple is a null value).
    #[serde(rename = "range", rename_all = "camelCase")]
    Range {
        dimensions: Vec<String>,
        start: Option<Vec<Option<String>>>,
        end: Option<Vec<Option<String>>>,
        partition_num: u32,
        num_core_partitions: u32,
    },
    /// Rows whose hash of `partitionDimensions` (all dimensions when empty) falls in bucket
    /// `bucketId` of `numBuckets`.
    #[serde(rename = "hashed", rename_all = "camelCase")]
    Hashed {
        partition_num: u32,
        partitions: u32,
        bucket_id: u32,
        num_buckets: u32,
        partition_dimensions: Vec<String>,
        /// `murmur3_32_abs`; None on segments of old Druid versions.
        #[serde(default)]
        partition_function: Option<String>,
    },
}

impl ShardSpec {
    /// The segment's number within its time chunk and version.
    pub fn partition_num(&self) -> u32 {
        match self {
            ShardSpec::Numbered { partition_num, .. }
            | ShardSpec::Linear { partition_num }
            | ShardSpec::Single { partition_num, .. }
            | ShardSpec::Range { partition_num, .. }
            | ShardSpec::Hashed { partition_num, .. } => *partition_num,
        }
    }

    /// How many partitions (numbered from 0) must all be published before the chunk's
    /// version is complete and may overshadow older ones; 0 when none in particular.
    pub fn core_partitions(&self) -> u32 {
        match self {
            ShardSpec::Numbered { partitions, .. } | ShardSpec::Hashed { partitions, .. } => {
                *partitions
            }
            ShardSpec::Linear { .. } => 0,
            ShardSpec::Single {
                num_core_partitions,
                ..
            }
            | ShardSpec::Range {
                num_core_partitions,
                ..
            } => *num_core_partitions,
        }
    }
}

/// Where a segment's file is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadSpec {
    /// `local`: a file under the data directory.
    #[serde(rename = "type")]
    pub kind: String,
    /// The file, relative to the data directory.
    pub path: String,
}

/// A published segment as Druid's APIs show it (`DataSegment`), plus what millrace needs to
/// read its file (`numRows`, `columns`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentDescriptor {
    pub data_source: String,
    /// `start/end`, ISO 8601.
    pub interval: String,
    pub version: String,
    pub load_spec: LoadSpec,
    /// Dimension names, comma-separated (as Druid writes them).
    pub dimensions: String,
    /// Metric names, comma-separated.
    pub metrics: String,
    pub shard_spec: ShardSpec,
    /// How the compaction that made the segment was configured (none for ingested ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_compaction_state: Option<serde_json::Value>,
    pub binary_version: u32,
    /// Bytes of the file.
    pub size: u64,
    pub identifier: String,
    pub num_rows: u64,
    /// The file's columns, as the segment writer describes them (the catalog does not read
    /// them).
    pub columns: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shard_specs_read_and_write_druids_json() {
        let specs = [
            (
                json!({"type": "numbered", "partitionNum": 2, "partitions": 0}),
                ShardSpec::Numbered {
                    partition_num: 2,
                    partitions: 0,
                },
            ),
            (
                json!({"type": "single", "dimension": "username", "start": null, "end": "m",
                       "partitionNum": 0, "numCorePartitions": 2}),
                ShardSpec::Single {
                    dimension: "username".into(),
                    start: None,
                    end: Some("m".into()),
                    partition_num: 0,
                    num_core_partitions: 2,
                },
            ),
            (
                json!({"type": "range", "dimensions": ["a", "b"], "start": ["x", null],
                       "end": null, "partitionNum": 1, "numCorePartitions": 2}),
                ShardSpec::Range {
                    dimensions: vec!["a".into(), "b".into()],
                    start: Some(vec![Some("x".into()), None]),
                    end: None,
                    partition_num: 1,
                    num_core_partitions: 2,
                },
            ),
            (
                json!({"type": "hashed", "partitionNum": 1, "partitions": 3, "bucketId": 1,
                       "numBuckets": 3, "partitionDimensions": ["username"],
                       "partitionFunction": "murmur3_32_abs"}),
                ShardSpec::Hashed {
                    partition_num: 1,
                    partitions: 3,
                    bucket_id: 1,
                    num_buckets: 3,
                    partition_dimensions: vec!["username".into()],
                    partition_function: Some("murmur3_32_abs".into()),
                },
            ),
        ];
        for (json, spec) in specs {
            assert_eq!(
                serde_json::from_value::<ShardSpec>(json.clone()).unwrap(),
                spec
            );
            assert_eq!(serde_json::to_value(&spec).unwrap(), json);
        }
        let linear = ShardSpec::Linear { partition_num: 4 };
        assert_eq!((linear.partition_num(), linear.core_partitions()), (4, 0));
    }
}

//! How compaction splits a time chunk's rows into segments: Druid's `partitionsSpec`
//! (`dynamic`, `hashed`, `single_dim`, `range`), and the split itself.
//!
//! Range boundaries come from the rows themselves: the rows' distinct partition key tuples
//! are counted and ordered, and cut where the key changes nearest to each multiple of the
//! target size, so every segment lands near the target unless one key value alone holds more
//! rows (which the split reports: a value is never split over two segments).

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use serde_json::Value as Json;

use crate::shard::{KeyTuple, ShardKeys, hash_bytes_bucket};
use crate::spec::SpecError;

/// Druid's default rows per segment.
pub const DEFAULT_ROWS_PER_SEGMENT: u64 = 5_000_000;

/// A partitionsSpec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionsSpec {
    /// Rows in time order, cut every `max_rows_per_segment` rows (`numbered` segments).
    Dynamic { max_rows_per_segment: u64 },
    /// Rows spread by the hash of their partition dimensions (all dimensions when empty).
    Hashed {
        num_shards: Option<u32>,
        target_rows_per_segment: u64,
        partition_dimensions: Vec<String>,
    },
    /// Rows split into ranges of their partition key tuple. `single_dim` (one dimension,
    /// written `partitionDimension`) and `range` differ only in how they are written.
    Range {
        partition_dimensions: Vec<String>,
        /// Rows wanted per segment.
        target_rows: u64,
        /// Rows a segment should not exceed: given, or half again the target.
        max_rows: u64,
        /// Written as `single_dim`.
        single_dim: bool,
    },
}

fn field_u64(
    object: &serde_json::Map<String, Json>,
    name: &str,
    path: &str,
) -> Result<Option<u64>, SpecError> {
    match object.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(SpecError {
                path: format!("{path}.{name}"),
                message: format!("must be a positive whole number, not {value}"),
            }),
        },
    }
}

fn field_names(
    object: &serde_json::Map<String, Json>,
    name: &str,
    path: &str,
) -> Result<Option<Vec<String>>, SpecError> {
    match object.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().map(str::to_string).ok_or_else(|| SpecError {
                    path: format!("{path}.{name}[{i}]"),
                    message: "must be a dimension name".into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(SpecError {
            path: format!("{path}.{name}"),
            message: "must be a list of dimension names".into(),
        }),
    }
}

impl PartitionsSpec {
    /// Reads a partitionsSpec; `path` names it in errors.
    pub fn from_json(spec: &Json, path: &str) -> Result<PartitionsSpec, SpecError> {
        let error = |field: &str, message: String| SpecError {
            path: if field.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{field}")
            },
            message,
        };
        let object = spec
            .as_object()
            .ok_or_else(|| error("", "must be an object".into()))?;
        let kind = object
            .get("type")
            .and_then(Json::as_str)
            .unwrap_or("dynamic");
        let target = field_u64(object, "targetRowsPerSegment", path)?;
        let max = field_u64(object, "maxRowsPerSegment", path)?;
        match kind {
            "dynamic" => Ok(PartitionsSpec::Dynamic {
                max_rows_per_segment: max.unwrap_or(DEFAULT_ROWS_PER_SEGMENT),
            }),
            "hashed" => {
                let num_shards = field_u64(object, "numShards", path)?;
                if num_shards.is_some() && (target.is_some() || max.is_some()) {
                    return Err(error(
                        "numShards",
                        "give numShards or targetRowsPerSegment, not both".into(),
                    ));
                }
                Ok(PartitionsSpec::Hashed {
                    num_shards: num_shards.map(|n| n.min(u64::from(u32::MAX)) as u32),
                    // maxRowsPerSegment is hashed partitioning's old name for the target.
                    target_rows_per_segment: target.or(max).unwrap_or(DEFAULT_ROWS_PER_SEGMENT),
                    partition_dimensions: field_names(object, "partitionDimensions", path)?
                        .unwrap_or_default(),
                })
            }
            "single_dim" | "range" => {
                let single_dim = kind == "single_dim";
                let dimensions = if single_dim {
                    let name = object
                        .get("partitionDimension")
                        .and_then(Json::as_str)
                        .ok_or_else(|| error("partitionDimension", "is missing".into()))?;
                    vec![name.to_string()]
                } else {
                    field_names(object, "partitionDimensions", path)?
                        .filter(|d| !d.is_empty())
                        .ok_or_else(|| {
                            error(
                                "partitionDimensions",
                                "must name at least one dimension".into(),
                            )
                        })?
                };
                let (target_rows, max_rows) = match (target, max) {
                    (Some(target), None) => (target, target.saturating_add(target / 2)),
                    (None, Some(max)) => (max, max),
                    _ => {
                        return Err(error(
                            "targetRowsPerSegment",
                            "exactly one of targetRowsPerSegment and maxRowsPerSegment must be given"
                                .into(),
                        ));
                    }
                };
                Ok(PartitionsSpec::Range {
                    partition_dimensions: dimensions,
                    target_rows,
                    max_rows,
                    single_dim,
                })
            }
            other => Err(error(
                "type",
                format!(
                    "unknown partitionsSpec type '{other}' (dynamic, hashed, single_dim or range)"
                ),
            )),
        }
    }

    /// Whether the spec needs perfect rollup (`forceGuaranteedRollup`): all but dynamic.
    pub fn needs_guaranteed_rollup(&self) -> bool {
        !matches!(self, PartitionsSpec::Dynamic { .. })
    }

    /// The dimensions it partitions by.
    pub fn dimensions(&self) -> &[String] {
        match self {
            PartitionsSpec::Dynamic { .. } => &[],
            PartitionsSpec::Hashed {
                partition_dimensions,
                ..
            }
            | PartitionsSpec::Range {
                partition_dimensions,
                ..
            } => partition_dimensions,
        }
    }

    /// The spec as Druid writes it back (in `lastCompactionState`).
    pub fn to_json(&self) -> Json {
        match self {
            PartitionsSpec::Dynamic {
                max_rows_per_segment,
            } => serde_json::json!({"type": "dynamic", "maxRowsPerSegment": max_rows_per_segment,
                                    "maxTotalRows": null}),
            PartitionsSpec::Hashed {
                num_shards,
                target_rows_per_segment,
                partition_dimensions,
            } => serde_json::json!({"type": "hashed", "numShards": num_shards,
                "targetRowsPerSegment": if num_shards.is_some() { None } else { Some(target_rows_per_segment) },
                "partitionDimensions": partition_dimensions, "partitionFunction": "murmur3_32_abs"}),
            PartitionsSpec::Range {
                partition_dimensions,
                target_rows,
                max_rows,
                single_dim,
            } => {
                if *single_dim {
                    serde_json::json!({"type": "single_dim", "partitionDimension": partition_dimensions[0],
                        "targetRowsPerSegment": target_rows, "maxRowsPerSegment": max_rows})
                } else {
                    serde_json::json!({"type": "range", "partitionDimensions": partition_dimensions,
                        "targetRowsPerSegment": target_rows, "maxRowsPerSegment": max_rows})
                }
            }
        }
    }
}

/// One segment of a split: which rows (indexes into the chunk's batch) and what its shard
/// spec says of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub rows: Vec<u32>,
    pub keys: ShardKeys,
}

/// A chunk's rows split into segments, with what the split could not do as asked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    pub pieces: Vec<Piece>,
    pub warnings: Vec<String>,
}

/// The values of the partition dimensions, as text (null stays null), one array per
/// dimension; an error names a dimension the rows lack or that is not a string.
fn key_columns(batch: &RecordBatch, dimensions: &[String]) -> Result<Vec<ArrayRef>, String> {
    dimensions
        .iter()
        .map(|name| {
            let column = batch.column_by_name(name).ok_or_else(|| {
                format!("partition dimension '{name}' is not a dimension of the rows")
            })?;
            cast(column, &DataType::Utf8).map_err(|e| format!("partition dimension '{name}': {e}"))
        })
        .collect()
}

fn key_at(columns: &[ArrayRef], row: usize) -> KeyTuple {
    columns
        .iter()
        .map(|c| {
            let strings = c.as_string::<i32>();
            (!strings.is_null(row)).then(|| strings.value(row).to_string())
        })
        .collect()
}

/// Splits a time chunk's rows (in time order) into segments as `spec` asks.
pub fn split(
    batch: &RecordBatch,
    spec: &PartitionsSpec,
    dimensions: &[String],
) -> Result<Split, String> {
    let rows = batch.num_rows();
    match spec {
        PartitionsSpec::Dynamic {
            max_rows_per_segment,
        } => {
            let size = (*max_rows_per_segment).clamp(1, u64::from(u32::MAX)) as usize;
            let pieces = (0..rows.max(1))
                .step_by(size)
                .map(|first| Piece {
                    rows: (first..(first + size).min(rows))
                        .map(|r| r as u32)
                        .collect(),
                    keys: ShardKeys::Any,
                })
                .collect();
            Ok(Split {
                pieces,
                warnings: vec![],
            })
        }
        PartitionsSpec::Hashed {
            num_shards,
            target_rows_per_segment,
            partition_dimensions,
        } => {
            let buckets = num_shards.unwrap_or_else(|| {
                rows.div_ceil((*target_rows_per_segment).max(1) as usize)
                    .max(1) as u32
            });
            let hashed_by = if partition_dimensions.is_empty() {
                dimensions.to_vec()
            } else {
                partition_dimensions.clone()
            };
            let columns = key_columns(batch, &hashed_by)?;
            let mut pieces: Vec<Piece> = (0..buckets)
                .map(|bucket| Piece {
                    rows: Vec::new(),
                    keys: ShardKeys::Hashed {
                        dimensions: partition_dimensions.clone(),
                        bucket,
                        buckets,
                    },
                })
                .collect();
            let time = batch.column(0);
            for row in 0..rows {
                let key = key_at(&columns, row);
                let bytes = if partition_dimensions.is_empty() {
                    all_dimensions_key(time, row, &hashed_by, &key)
                } else {
                    crate::shard::group_key_json(&key)
                };
                pieces[hash_bytes_bucket(&bytes, buckets) as usize]
                    .rows
                    .push(row as u32);
            }
            Ok(Split {
                pieces,
                warnings: vec![],
            })
        }
        PartitionsSpec::Range {
            partition_dimensions,
            target_rows,
            max_rows,
            ..
        } => range_split(batch, partition_dimensions, *target_rows, *max_rows),
    }
}

/// Druid's group key when no partition dimensions are given: the row's time and a map of
/// every non-null dimension to its values, `[time, {"d": ["v"]}]`.
fn all_dimensions_key(time: &ArrayRef, row: usize, names: &[String], key: &KeyTuple) -> Vec<u8> {
    let millis = time
        .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
        .value(row);
    let mut values: Vec<(&String, &String)> = names
        .iter()
        .zip(key)
        .filter_map(|(name, value)| value.as_ref().map(|v| (name, v)))
        .collect();
    values.sort();
    let map: serde_json::Map<String, Json> = values
        .into_iter()
        .map(|(name, value)| (name.clone(), Json::from(vec![value.clone()])))
        .collect();
    serde_json::to_vec(&(millis, map)).expect("a key is JSON")
}

/// Cuts the rows, ordered by key tuple, into about `rows / target` ranges at key changes.
fn range_split(
    batch: &RecordBatch,
    dimensions: &[String],
    target: u64,
    max: u64,
) -> Result<Split, String> {
    let rows = batch.num_rows();
    let columns = key_columns(batch, dimensions)?;
    // Key tuples in the row format (ordered as tuples, nulls first), counted per distinct
    // tuple: only the distinct tuples are sorted, not the rows.
    let converter = RowConverter::new(
        columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )
    .map_err(|e: ArrowError| e.to_string())?;
    let encoded = converter
        .convert_columns(&columns)
        .map_err(|e| e.to_string())?;
    // Per distinct tuple: its rows and one row holding it.
    let mut counts: HashMap<&[u8], (usize, usize)> = HashMap::new();
    for row in 0..rows {
        counts.entry(encoded.row(row).data()).or_insert((0, row)).0 += 1;
    }
    let mut distinct: Vec<(&[u8], usize, usize)> = counts
        .into_iter()
        .map(|(key, (count, row))| (key, count, row))
        .collect();
    distinct.sort_unstable_by(|a, b| a.0.cmp(b.0));
    // Where each distinct tuple's rows start among the rows ordered by tuple.
    let starts: Vec<usize> = distinct
        .iter()
        .scan(0, |at, (_, count, _)| {
            let start = *at;
            *at += count;
            Some(start)
        })
        .collect();
    // Near the target, and never so few that segments must exceed the maximum.
    let wanted = ((rows as f64 / target.max(1) as f64).round() as usize)
        .max(rows.div_ceil(max.max(1) as usize))
        .max(1);
    // Cuts, as indexes of the distinct tuple each range after the first starts with: the
    // key change nearest each multiple of rows / wanted.
    let mut cuts: Vec<usize> = Vec::new();
    for k in 1..wanted {
        let ideal = k * rows / wanted;
        let after = starts.partition_point(|&start| start < ideal);
        let nearest = [after.checked_sub(1), Some(after)]
            .into_iter()
            .flatten()
            .filter(|&d| d > 0 && d < distinct.len())
            .min_by_key(|&d| starts[d].abs_diff(ideal));
        if let Some(cut) = nearest
            && cuts.last().is_none_or(|&last| cut > last)
        {
            cuts.push(cut);
        }
    }
    let mut bounds = vec![0];
    bounds.extend(&cuts);
    bounds.push(distinct.len());
    // The range of each distinct tuple, then each row's range, in row order.
    let mut range_of: HashMap<&[u8], usize> = HashMap::with_capacity(distinct.len());
    for (range, window) in bounds.windows(2).enumerate() {
        for (key, _, _) in &distinct[window[0]..window[1]] {
            range_of.insert(key, range);
        }
    }
    let mut piece_rows: Vec<Vec<u32>> = vec![Vec::new(); bounds.len() - 1];
    for row in 0..rows {
        piece_rows[range_of[encoded.row(row).data()]].push(row as u32);
    }
    let mut split = Split::default();
    for (i, (window, rows_of)) in bounds.windows(2).zip(piece_rows).enumerate() {
        let (first, end) = (window[0], window[1]);
        let key_of = |d: usize| key_at(&columns, distinct[d].2);
        if (rows_of.len() as u64) > max
            && let Some(largest) = (first..end).max_by_key(|&d| distinct[d].1)
        {
            split.warnings.push(format!(
                "range partition {i} holds {} rows, more than maxRowsPerSegment {max}: the key {} alone has {} rows, and a key is never split",
                rows_of.len(),
                serde_json::to_string(&key_of(largest)).unwrap_or_default(),
                distinct[largest].1
            ));
        }
        split.pieces.push(Piece {
            rows: rows_of,
            keys: ShardKeys::Range {
                dimensions: dimensions.to_vec(),
                start: (first > 0).then(|| key_of(first)),
                end: (end < distinct.len()).then(|| key_of(end)),
            },
        });
    }
    Ok(split)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use serde_json::json;

    use super::*;

    fn batch(users: &[Option<&str>]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new(
                "__time",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("username", DataType::Utf8, true),
        ]);
        let times: Vec<i64> = (0..users.len() as i64).collect();
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")),
                Arc::new(StringArray::from(users.to_vec())),
            ],
        )
        .unwrap()
    }

    fn spec(json: Json) -> Result<PartitionsSpec, String> {
        PartitionsSpec::from_json(&json, "tuningConfig.partitionsSpec").map_err(|e| e.to_string())
    }

    #[test]
    fn specs_read_with_druids_names_defaults_and_errors() {
        assert_eq!(
            spec(json!({"type": "dynamic"})).unwrap(),
            PartitionsSpec::Dynamic {
                max_rows_per_segment: 5_000_000
            }
        );
        assert_eq!(
            spec(
                json!({"type": "single_dim", "partitionDimension": "username",
                        "targetRowsPerSegment": 100})
            )
            .unwrap(),
            PartitionsSpec::Range {
                partition_dimensions: vec!["username".into()],
                target_rows: 100,
                max_rows: 150,
                single_dim: true
            }
        );
        assert_eq!(
            spec(json!({"type": "range", "partitionDimensions": ["a"]})).unwrap_err(),
            "tuningConfig.partitionsSpec.targetRowsPerSegment: exactly one of targetRowsPerSegment and maxRowsPerSegment must be given"
        );
        assert_eq!(
            spec(json!({"type": "range", "partitionDimensions": [], "maxRowsPerSegment": 5}))
                .unwrap_err(),
            "tuningConfig.partitionsSpec.partitionDimensions: must name at least one dimension"
        );
        assert_eq!(
            spec(json!({"type": "hashed", "numShards": 2, "targetRowsPerSegment": 5})).unwrap_err(),
            "tuningConfig.partitionsSpec.numShards: give numShards or targetRowsPerSegment, not both"
        );
        assert_eq!(
            spec(json!({"type": "hashed", "numShards": -1})).unwrap_err(),
            "tuningConfig.partitionsSpec.numShards: must be a positive whole number, not -1"
        );
        assert!(
            spec(json!({"type": "bogus"}))
                .unwrap_err()
                .contains("unknown partitionsSpec type 'bogus'")
        );
    }

    #[test]
    fn range_cuts_land_at_key_changes_nearest_the_target() {
        // 8 users, 100 rows each, interleaved in time: 4 ranges of 2 users each.
        let names = [
            "willow", "mia", "leon", "milton", "miette", "gus", "jojo", "rocket",
        ];
        let users: Vec<Option<&str>> = (0..800).map(|i| Some(names[i % 8])).collect();
        let spec = spec(json!({"type": "range", "partitionDimensions": ["username"],
                               "targetRowsPerSegment": 200}))
        .unwrap();
        let split = split(&batch(&users), &spec, &[]).unwrap();
        assert!(split.warnings.is_empty());
        let sizes: Vec<usize> = split.pieces.iter().map(|p| p.rows.len()).collect();
        assert_eq!(sizes, vec![200, 200, 200, 200]);
        let bounds: Vec<(Option<KeyTuple>, Option<KeyTuple>)> = split
            .pieces
            .iter()
            .map(|p| match &p.keys {
                ShardKeys::Range { start, end, .. } => (start.clone(), end.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        let key = |s: &str| Some(vec![Some(s.to_string())]);
        assert_eq!(
            bounds,
            vec![
                (None, key("leon")),
                (key("leon"), key("miette")),
                (key("miette"), key("rocket")),
                (key("rocket"), None)
            ]
        );
        assert!(
            split.pieces[0].rows.windows(2).all(|w| w[0] < w[1]),
            "time order"
        );
    }

    #[test]
    fn a_key_too_big_to_split_is_reported_and_nulls_come_first() {
        let mut users: Vec<Option<&str>> = vec![Some("big"); 90];
        users.extend([None, Some("a"), Some("c")].iter().cycle().take(30));
        let spec = spec(json!({"type": "range", "partitionDimensions": ["username"],
                               "targetRowsPerSegment": 30}))
        .unwrap();
        let split = split(&batch(&users), &spec, &[]).unwrap();
        assert_eq!(split.warnings.len(), 1, "{:?}", split.warnings);
        assert!(split.warnings[0].contains(r#"the key ["big"] alone has 90 rows"#));
        let first = &split.pieces[0];
        assert_eq!(first.rows.len(), 20, "nulls and 'a'");
        let total: usize = split.pieces.iter().map(|p| p.rows.len()).sum();
        assert_eq!(total, 120);
    }

    #[test]
    fn hashed_rows_go_to_their_bucket_and_dynamic_cuts_by_count() {
        let users: Vec<Option<&str>> = (0..40)
            .map(|i| Some(["a", "b", "c", "d", "e"][i % 5]))
            .collect();
        let hashed =
            spec(json!({"type": "hashed", "numShards": 3, "partitionDimensions": ["username"]}))
                .unwrap();
        let split = split(&batch(&users), &hashed, &[]).unwrap();
        assert_eq!(split.pieces.len(), 3);
        for piece in &split.pieces {
            let ShardKeys::Hashed { bucket, .. } = piece.keys else {
                panic!()
            };
            for &row in &piece.rows {
                let key = vec![users[row as usize].map(str::to_string)];
                assert_eq!(crate::shard::hash_bucket(&key, 3), bucket);
            }
        }
        let dynamic = spec(json!({"type": "dynamic", "maxRowsPerSegment": 15})).unwrap();
        let sizes: Vec<usize> = super::split(&batch(&users), &dynamic, &[])
            .unwrap()
            .pieces
            .iter()
            .map(|p| p.rows.len())
            .collect();
        assert_eq!(sizes, vec![15, 15, 10]);
    }
}

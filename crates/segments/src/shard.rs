//! Which rows of its time chunk a secondary-partitioned segment holds, and whether a query's
//! filters can match any of them: `single`/`range` segments hold a range of partition-key
//! tuples, `hashed` ones a hash bucket. Hashing is Druid's (`murmur3_32_abs` over the JSON of
//! the group key), so bucket numbers mean the same as in Druid.

use std::collections::BTreeMap;

/// A partition key tuple: one value per partition dimension (None: null).
pub type KeyTuple = Vec<Option<String>>;

/// The rows a segment holds, as far as its shard spec says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardKeys {
    /// Any rows of the chunk (numbered and linear segments).
    Any,
    /// Rows whose tuple of `dimensions` values is in `[start, end)`; None is unbounded. Tuples
    /// compare value by value, a null value before every string.
    Range {
        dimensions: Vec<String>,
        start: Option<KeyTuple>,
        end: Option<KeyTuple>,
    },
    /// Rows whose group key over `dimensions` hashes to `bucket` of `buckets`.
    Hashed {
        dimensions: Vec<String>,
        bucket: u32,
        buckets: u32,
    },
}

/// What a query's filters allow of one column: some exact values, or a range (bounds
/// inclusive when the flag says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    Values(Vec<String>),
    Range {
        lower: Option<(String, bool)>,
        upper: Option<(String, bool)>,
    },
}

impl Allowed {
    /// Whether some value within `[low, high]` (`[low, high)` unless `high_inclusive`; None
    /// unbounded) is allowed.
    fn meets(&self, low: Option<&str>, high: Option<&str>, high_inclusive: bool) -> bool {
        let below_high = |v: &str, h: &str| if high_inclusive { v <= h } else { v < h };
        match self {
            Allowed::Values(values) => values.iter().any(|v| {
                low.is_none_or(|l| v.as_str() >= l) && high.is_none_or(|h| below_high(v, h))
            }),
            Allowed::Range { lower, upper } => {
                let lower_fits = |h: &str| {
                    lower.as_ref().is_none_or(|(l, inclusive)| {
                        if *inclusive && high_inclusive {
                            l.as_str() <= h
                        } else {
                            l.as_str() < h
                        }
                    })
                };
                let upper_fits = |l: &str| {
                    upper.as_ref().is_none_or(|(u, inclusive)| {
                        if *inclusive {
                            l <= u.as_str()
                        } else {
                            l < u.as_str()
                        }
                    })
                };
                high.is_none_or(lower_fits) && low.is_none_or(upper_fits)
            }
        }
    }
}

/// Per column, what the query's filters allow (columns without a constraint are absent). A
/// row the query matches has a non-null value allowed for every column named.
pub type Constraints = BTreeMap<String, Allowed>;

impl ShardKeys {
    /// Whether the segment may hold rows the constraints allow; false only when it cannot.
    pub fn may_hold(&self, constraints: &Constraints) -> bool {
        match self {
            ShardKeys::Any => true,
            ShardKeys::Range {
                dimensions,
                start,
                end,
            } => {
                // The leading dimension of every tuple in [start, end) lies in
                // [start[0], end[0]]; a null bound or a null first value is unbounded.
                let Some(leading) = dimensions.first() else {
                    return true;
                };
                let Some(allowed) = constraints.get(leading) else {
                    return true;
                };
                let first = |tuple: &Option<KeyTuple>| {
                    tuple.as_ref().and_then(|t| t.first().cloned().flatten())
                };
                // With one dimension the end is exclusive: a value equal to it is elsewhere.
                allowed.meets(
                    first(start).as_deref(),
                    first(end).as_deref(),
                    dimensions.len() > 1,
                )
            }
            ShardKeys::Hashed {
                dimensions,
                bucket,
                buckets,
            } => {
                if dimensions.is_empty() || *buckets == 0 {
                    return true;
                }
                let mut choices: Vec<&Vec<String>> = Vec::new();
                for dimension in dimensions {
                    match constraints.get(dimension) {
                        Some(Allowed::Values(values)) => choices.push(values),
                        _ => return true,
                    }
                }
                // Every combination of allowed values (a few: more than 64 keeps the segment).
                let combinations: usize = choices.iter().map(|c| c.len()).product();
                if combinations > 64 {
                    return true;
                }
                (0..combinations).any(|mut index| {
                    let key: KeyTuple = choices
                        .iter()
                        .map(|values| {
                            let value = values[index % values.len()].clone();
                            index /= values.len();
                            Some(value)
                        })
                        .collect();
                    hash_bucket(&key, *buckets) == *bucket
                })
            }
        }
    }
}

/// The bucket of a key tuple among `buckets`: Druid's `murmur3_32_abs` over the JSON of its
/// group key, a list of each dimension's values (`[["mia"]]`; a null is `[]`).
pub fn hash_bucket(key: &[Option<String>], buckets: u32) -> u32 {
    hash_bytes_bucket(&group_key_json(key), buckets)
}

/// `abs(murmur3_32(bytes) % buckets)`, with Java's remainder of a signed int.
pub fn hash_bytes_bucket(bytes: &[u8], buckets: u32) -> u32 {
    let hash = murmur3_32(bytes, 0) as i32;
    (hash % buckets.max(1) as i32).unsigned_abs()
}

/// The JSON Druid hashes for a key tuple.
pub fn group_key_json(key: &[Option<String>]) -> Vec<u8> {
    let lists: Vec<Vec<&str>> = key
        .iter()
        .map(|value| value.as_deref().into_iter().collect())
        .collect();
    serde_json::to_vec(&lists).expect("lists of strings are JSON")
}

/// MurmurHash3, x86 32-bit (as Guava's `murmur3_32` hashes bytes).
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let blocks = data.chunks_exact(4);
    let tail = blocks.remainder();
    for block in blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let mut k = 0u32;
    for (i, byte) in tail.iter().enumerate() {
        k ^= u32::from(*byte) << (8 * i);
    }
    if !tail.is_empty() {
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &[&str]) -> Allowed {
        Allowed::Values(v.iter().map(|s| s.to_string()).collect())
    }

    fn single(start: Option<&str>, end: Option<&str>) -> ShardKeys {
        ShardKeys::Range {
            dimensions: vec!["username".into()],
            start: start.map(|s| vec![Some(s.into())]),
            end: end.map(|e| vec![Some(e.into())]),
        }
    }

    fn only(column: &str, allowed: Allowed) -> Constraints {
        [(column.to_string(), allowed)].into()
    }

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        // Values of the reference implementation (and Guava's murmur3_32).
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
        assert_eq!(
            group_key_json(&[Some("mia".into()), None]),
            br#"[["mia"],[]]"#
        );
    }

    #[test]
    fn single_dimension_ranges_prune_by_equality_in_and_range() {
        let middle = single(Some("jojo"), Some("mia"));
        let by = |allowed| middle.may_hold(&only("username", allowed));
        assert!(by(values(&["leon"])));
        assert!(by(values(&["jojo"])), "start is inclusive");
        assert!(!by(values(&["mia"])), "end is exclusive");
        assert!(!by(values(&["gus", "willow"])));
        assert!(by(values(&["gus", "leon"])));
        assert!(!by(Allowed::Range {
            lower: Some(("mia".into(), true)),
            upper: None
        }));
        assert!(by(Allowed::Range {
            lower: None,
            upper: Some(("jojo".into(), true))
        }));
        assert!(!by(Allowed::Range {
            lower: None,
            upper: Some(("jojo".into(), false))
        }));
        assert!(
            middle.may_hold(&only("other", values(&["x"]))),
            "other columns say nothing"
        );
        assert!(single(None, Some("gus")).may_hold(&only("username", values(&["a"]))));
        assert!(single(Some("willow"), None).may_hold(&only("username", values(&["zed"]))));
    }

    #[test]
    fn multi_dimension_ranges_prune_on_the_leading_dimension_with_the_end_inclusive() {
        let range = ShardKeys::Range {
            dimensions: vec!["a".into(), "b".into()],
            start: Some(vec![Some("k".into()), Some("x".into())]),
            end: Some(vec![Some("m".into()), Some("c".into())]),
        };
        assert!(
            range.may_hold(&only("a", values(&["m"]))),
            "(m, b) < (m, c)"
        );
        assert!(!range.may_hold(&only("a", values(&["n"]))));
        assert!(!range.may_hold(&only("a", values(&["j"]))));
    }

    #[test]
    fn hashed_segments_prune_by_equality_on_every_partition_dimension() {
        let key = vec![Some("mia".to_string())];
        let bucket = hash_bucket(&key, 4);
        let segment = |bucket| ShardKeys::Hashed {
            dimensions: vec!["username".into()],
            bucket,
            buckets: 4,
        };
        let constraints = only("username", values(&["mia"]));
        assert!(segment(bucket).may_hold(&constraints));
        assert!(!segment((bucket + 1) % 4).may_hold(&constraints));
        assert!(segment((bucket + 1) % 4).may_hold(&Constraints::new()));
    }
}

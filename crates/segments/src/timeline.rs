//! Segment identity and the timeline: which published segments a query sees.
//!
//! A segment covers a time chunk `[start, end)` with a version (an ISO time, compared as text)
//! and a partition number. Streaming tasks write `numbered` partitions that are complete as
//! they come (core partitions 0); compaction writes a full set of `numbered`, `hashed`,
//! `single` or `range` partitions whose count is known. In each time chunk the highest version
//! whose partition set is complete is visible; the segments it covers are overshadowed.

use std::collections::BTreeMap;

use crate::time::format_iso;

/// Bytes of an ISO time as segment ids hold them (`2024-01-01T00:00:00.000Z`). Row times end
/// in year 9999, but the chunk of the last ones ends in year 10000: one byte more.
const ISO_TIME_BYTES: usize = 24;
const CHUNK_END_MAX_BYTES: usize = ISO_TIME_BYTES + 1;
/// The longest part of a segment id after the datasource: start, end and version (ISO times),
/// each after a `_`, then `_` and the largest partition number (10 digits).
const ID_SUFFIX_MAX_BYTES: usize =
    (1 + ISO_TIME_BYTES) + (1 + CHUNK_END_MAX_BYTES) + (1 + ISO_TIME_BYTES) + 1 + 10;
/// The longest file name common file systems hold (Linux's NAME_MAX).
const FILE_NAME_MAX_BYTES: usize = 255;
/// The longest dataSource name, in bytes: a segment file is named by its id and `.parquet`,
/// and that name must fit in one file name.
pub const MAX_DATASOURCE_BYTES: usize =
    FILE_NAME_MAX_BYTES - ID_SUFFIX_MAX_BYTES - ".parquet".len();

/// Where a segment sits in its time chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPlace {
    pub datasource: String,
    pub start: i64,
    pub end: i64,
    pub version: String,
    pub partition_num: u32,
    /// How many partitions make the set complete; 0 for appended streaming partitions.
    pub core_partitions: u32,
}

impl SegmentPlace {
    /// Druid's segment id: `<ds>_<start>_<end>_<version>[_<partitionNum>]` (no suffix for 0).
    pub fn id(&self) -> String {
        let base = format!(
            "{}_{}_{}_{}",
            self.datasource,
            format_iso(self.start),
            format_iso(self.end),
            self.version
        );
        if self.partition_num == 0 {
            base
        } else {
            format!("{base}_{}", self.partition_num)
        }
    }
}

/// Indexes of the segments a query sees, and of the overshadowed ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visibility {
    pub visible: Vec<usize>,
    pub overshadowed: Vec<usize>,
}

/// A time chunk and version: (start, end, version).
type Chunk<'a> = (i64, i64, &'a str);

/// Decides visibility among used segments of one datasource.
///
/// For each version of a chunk, its partitions are complete when every core partition
/// `0..core` is present (streaming versions, core 0, always are). A complete version hides
/// every lower version of a chunk it covers fully; an incomplete version is not shown and hides
/// nothing, so a replacement appears all at once (Druid's atomic replacement).
pub fn visibility(segments: &[SegmentPlace]) -> Visibility {
    let mut groups: BTreeMap<Chunk<'_>, Vec<usize>> = BTreeMap::new();
    for (i, s) in segments.iter().enumerate() {
        groups
            .entry((s.start, s.end, s.version.as_str()))
            .or_default()
            .push(i);
    }
    let complete = |members: &[usize]| {
        let core = members
            .iter()
            .map(|&i| segments[i].core_partitions)
            .max()
            .unwrap_or(0);
        (0..core).all(|p| members.iter().any(|&i| segments[i].partition_num == p))
    };
    let mut result = Visibility::default();
    let chunks: Vec<(Chunk<'_>, &Vec<usize>)> = groups.iter().map(|(k, v)| (*k, v)).collect();
    for &((start, end, version), members) in &chunks {
        let shadowed = chunks
            .iter()
            .any(|&((s, e, v), other)| v > version && s <= start && e >= end && complete(other));
        if shadowed {
            result.overshadowed.extend(members);
        } else if complete(members) {
            result.visible.extend(members);
        }
    }
    result.visible.sort_unstable();
    result.overshadowed.sort_unstable();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn place(start: i64, version: &str, partition: u32, core: u32) -> SegmentPlace {
        SegmentPlace {
            datasource: "social".into(),
            start,
            end: start + HOUR,
            version: version.into(),
            partition_num: partition,
            core_partitions: core,
        }
    }

    #[test]
    fn ids_as_druid_forms_them() {
        assert_eq!(
            place(0, "2024-05-01T00:00:00.000Z", 0, 0).id(),
            "social_1970-01-01T00:00:00.000Z_1970-01-01T01:00:00.000Z_2024-05-01T00:00:00.000Z"
        );
        assert!(place(0, "v", 3, 0).id().ends_with("_v_3"));
    }

    #[test]
    fn the_longest_segment_file_name_fits() {
        // The chunk of the last hour of year 9999, ending in year 10000.
        let year_10000 = 253_402_300_800_000;
        let mut longest = place(year_10000 - HOUR, &format_iso(year_10000 - 1), u32::MAX, 0);
        assert_eq!(format_iso(year_10000), "10000-01-01T00:00:00.000Z");
        longest.datasource = "x".repeat(MAX_DATASOURCE_BYTES);
        assert_eq!(
            format!("{}.parquet", longest.id()).len(),
            FILE_NAME_MAX_BYTES
        );
    }

    #[test]
    fn streaming_partitions_all_show() {
        let segments = vec![
            place(0, "v1", 0, 0),
            place(0, "v1", 1, 0),
            place(HOUR, "v1", 0, 0),
        ];
        assert_eq!(visibility(&segments).visible, vec![0, 1, 2]);
    }

    #[test]
    fn a_complete_newer_version_overshadows() {
        let segments = vec![
            place(0, "v1", 0, 0),
            place(0, "v1", 1, 0),
            place(0, "v2", 0, 2),
            place(0, "v2", 1, 2),
            place(HOUR, "v1", 0, 0),
        ];
        let v = visibility(&segments);
        assert_eq!(v.visible, vec![2, 3, 4]);
        assert_eq!(v.overshadowed, vec![0, 1]);
    }

    #[test]
    fn an_incomplete_newer_version_waits() {
        let segments = vec![place(0, "v1", 0, 0), place(0, "v2", 1, 2)];
        let v = visibility(&segments);
        assert_eq!(v.visible, vec![0], "v2 lacks partition 0 of 2");
        assert!(v.overshadowed.is_empty());
    }

    #[test]
    fn a_day_segment_overshadows_the_hours_it_covers() {
        let mut day = place(0, "v2", 0, 1);
        day.end = 24 * HOUR;
        let segments = vec![
            place(0, "v1", 0, 0),
            place(5 * HOUR, "v1", 0, 0),
            day,
            place(24 * HOUR, "v1", 0, 0),
        ];
        let v = visibility(&segments);
        assert_eq!(v.visible, vec![2, 3]);
        assert_eq!(v.overshadowed, vec![0, 1]);
    }
}

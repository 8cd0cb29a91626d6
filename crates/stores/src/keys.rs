//! Key layouts of window and session stores.
//!
//! Inside a store, a windowed key is `u32 key length, key, start, sequence number` and a
//! session key `u32 key length, key, end, start`, big-endian with the sign bit of times
//! flipped: entries of one key are contiguous and ordered by time, so a fetch is one range
//! scan. Changelog records use Kafka Streams' layouts instead (`key, start, sequence` and
//! `key, end, start`, plain big-endian), so that changelogs read the same on Kafka.

use bytes::{BufMut, Bytes, BytesMut};

const LEN: usize = 4;
const TIME: usize = 8;
const SEQ: usize = 4;

fn order_time(time: i64) -> u64 {
    (time as u64) ^ (1 << 63)
}

fn unorder_time(bits: u64) -> i64 {
    (bits ^ (1 << 63)) as i64
}

fn time_at(bytes: &[u8], at: usize) -> i64 {
    unorder_time(u64::from_be_bytes(
        bytes[at..at + TIME].try_into().expect("eight bytes"),
    ))
}

/// The prefix every stored key of `key` starts with.
pub fn key_prefix(key: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(LEN + key.len() + TIME + TIME);
    out.put_u32(key.len() as u32);
    out.put_slice(key);
    out
}

/// The first key after every key starting with `prefix` (the prefix incremented, with carry);
/// None when no key is (the prefix is all 0xff bytes).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The stored key of a window of `key` starting at `start` (ms); `seq` tells apart duplicates
/// of a window store that retains them (0 otherwise).
pub fn window_key(key: &[u8], start: i64, seq: u32) -> Bytes {
    let mut out = key_prefix(key);
    out.put_u64(order_time(start));
    out.put_u32(seq);
    out.freeze()
}

/// The stored key of the first window of `key` starting at or after `start`.
pub fn window_lower_bound(key: &[u8], start: i64) -> Bytes {
    window_key(key, start, 0)
}

/// The stored key after every window of `key` starting at or before `start`.
pub fn window_upper_bound(key: &[u8], start: i64) -> Bytes {
    window_key(key, start, u32::MAX)
}

/// A key ordered by time first: `time, tag, sequence number, key` (a stream-stream outer
/// join's unmatched records, due in time order; the tag tells the join's sides apart).
pub fn time_ordered_key(time: i64, tag: u8, seq: u32, key: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(TIME + 1 + SEQ + key.len());
    out.put_u64(order_time(time));
    out.put_u8(tag);
    out.put_u32(seq);
    out.put_slice(key);
    out.freeze()
}

/// The time, tag, sequence number and key of a [`time_ordered_key`]; None when the bytes are
/// not one.
pub fn parse_time_ordered_key(stored: &[u8]) -> Option<(i64, u8, u32, &[u8])> {
    if stored.len() < TIME + 1 + SEQ {
        return None;
    }
    let tag = stored[TIME];
    let seq = u32::from_be_bytes(stored[TIME + 1..TIME + 1 + SEQ].try_into().ok()?);
    Some((time_at(stored, 0), tag, seq, &stored[TIME + 1 + SEQ..]))
}

/// The key, window start and sequence number of a stored windowed key; None when the bytes
/// are not one.
pub fn parse_window_key(stored: &[u8]) -> Option<(&[u8], i64, u32)> {
    let len = u32::from_be_bytes(stored.get(..LEN)?.try_into().ok()?) as usize;
    if stored.len() != LEN + len + TIME + SEQ {
        return None;
    }
    let key = &stored[LEN..LEN + len];
    let start = time_at(stored, LEN + len);
    let seq = u32::from_be_bytes(stored[LEN + len + TIME..].try_into().ok()?);
    Some((key, start, seq))
}

/// The stored key of a session of `key` from `start` to `end` (ms, both inclusive).
pub fn session_key(key: &[u8], start: i64, end: i64) -> Bytes {
    let mut out = key_prefix(key);
    out.put_u64(order_time(end));
    out.put_u64(order_time(start));
    out.freeze()
}

/// The key, start and end of a stored session key; None when the bytes are not one.
pub fn parse_session_key(stored: &[u8]) -> Option<(&[u8], i64, i64)> {
    let len = u32::from_be_bytes(stored.get(..LEN)?.try_into().ok()?) as usize;
    if stored.len() != LEN + len + TIME + TIME {
        return None;
    }
    let end = time_at(stored, LEN + len);
    let start = time_at(stored, LEN + len + TIME);
    Some((&stored[LEN..LEN + len], start, end))
}

/// A stored window key in Kafka Streams' changelog layout.
pub fn window_to_changelog(stored: &[u8]) -> Option<Bytes> {
    let (key, start, seq) = parse_window_key(stored)?;
    let mut out = BytesMut::with_capacity(key.len() + TIME + SEQ);
    out.put_slice(key);
    out.put_i64(start);
    out.put_u32(seq);
    Some(out.freeze())
}

/// A changelog window key back in the stored layout.
pub fn window_from_changelog(changelog: &[u8]) -> Option<Bytes> {
    let key_len = changelog.len().checked_sub(TIME + SEQ)?;
    let start = i64::from_be_bytes(changelog[key_len..key_len + TIME].try_into().ok()?);
    let seq = u32::from_be_bytes(changelog[key_len + TIME..].try_into().ok()?);
    Some(window_key(&changelog[..key_len], start, seq))
}

/// A stored session key in Kafka Streams' changelog layout.
pub fn session_to_changelog(stored: &[u8]) -> Option<Bytes> {
    let (key, start, end) = parse_session_key(stored)?;
    let mut out = BytesMut::with_capacity(key.len() + TIME + TIME);
    out.put_slice(key);
    out.put_i64(end);
    out.put_i64(start);
    Some(out.freeze())
}

/// A changelog session key back in the stored layout.
pub fn session_from_changelog(changelog: &[u8]) -> Option<Bytes> {
    let key_len = changelog.len().checked_sub(TIME + TIME)?;
    let end = i64::from_be_bytes(changelog[key_len..key_len + TIME].try_into().ok()?);
    let start = i64::from_be_bytes(changelog[key_len + TIME..].try_into().ok()?);
    Some(session_key(&changelog[..key_len], start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_of_a_key_sort_by_time_and_apart_from_longer_keys() {
        let mut keys = [
            window_key(b"ab", -5, 0),
            window_key(b"a", 10, 0),
            window_key(b"a", -3, 0),
            window_key(b"a", 10, 1),
            window_key(b"a", 2, 0),
        ];
        keys.sort();
        let parsed: Vec<_> = keys.iter().map(|k| parse_window_key(k).unwrap()).collect();
        assert_eq!(
            parsed,
            [
                (&b"a"[..], -3, 0),
                (&b"a"[..], 2, 0),
                (&b"a"[..], 10, 0),
                (&b"a"[..], 10, 1),
                (&b"ab"[..], -5, 0)
            ]
        );
        let stored = window_key(b"user", 60_000, 3);
        let changelog = window_to_changelog(&stored).unwrap();
        assert_eq!(&changelog[..4], b"user");
        assert_eq!(window_from_changelog(&changelog).unwrap(), stored);
    }

    #[test]
    fn session_keys_round_trip() {
        let stored = session_key(b"k", 100, 250);
        assert_eq!(parse_session_key(&stored), Some((&b"k"[..], 100, 250)));
        let changelog = session_to_changelog(&stored).unwrap();
        assert_eq!(session_from_changelog(&changelog).unwrap(), stored);
        assert_eq!(parse_session_key(b"xx"), None);
    }

    #[test]
    fn prefix_ends_are_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
        let prefix = key_prefix(b"k");
        let end = prefix_end(&prefix).unwrap();
        let mut longest = prefix.to_vec();
        longest.extend_from_slice(&[0xff; 8]);
        assert!(longest.as_slice() < end.as_slice());
    }

    #[test]
    fn time_ordered_keys_sort_by_time_first() {
        let mut keys = [
            time_ordered_key(5, 1, 0, b"a"),
            time_ordered_key(-2, 0, 7, b"zz"),
            time_ordered_key(5, 0, 1, b"b"),
        ];
        keys.sort();
        let parsed: Vec<_> = keys
            .iter()
            .map(|k| parse_time_ordered_key(k).unwrap())
            .collect();
        assert_eq!(
            parsed,
            [
                (-2, 0, 7, &b"zz"[..]),
                (5, 0, 1, &b"b"[..]),
                (5, 1, 0, &b"a"[..])
            ]
        );
        assert_eq!(parse_time_ordered_key(b"short"), None);
    }
}

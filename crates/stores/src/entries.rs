//! The layout of timestamped values, as Kafka Streams' timestamped stores keep them: the
//! timestamp of the value's latest update (8 bytes, big-endian), then the serialized value.
//! Operations keep their tables this way; Python sees it in timestamped stores.

use bytes::Bytes;

/// A value with its timestamp.
pub fn timestamped(time: i64, value: &[u8]) -> Bytes {
    let mut entry = Vec::with_capacity(8 + value.len());
    entry.extend_from_slice(&time.to_be_bytes());
    entry.extend_from_slice(value);
    Bytes::from(entry)
}

/// The timestamp and value of an entry written by [`timestamped`]; None when it is shorter.
pub fn split_timestamped(entry: &Bytes) -> Option<(i64, Bytes)> {
    let time = i64::from_be_bytes(entry.get(..8)?.try_into().ok()?);
    Some((time, entry.slice(8..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamped_values_round_trip() {
        let entry = timestamped(-5, b"value");
        assert_eq!(
            split_timestamped(&entry),
            Some((-5, Bytes::from_static(b"value")))
        );
        assert_eq!(split_timestamped(&Bytes::from_static(b"short")), None);
    }
}

//! Kafka's default partitioning: keyed records by murmur2 of the key bytes, key-less records
//! sticking to one partition per batch and moving on to the next.

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`), as a signed 32-bit result.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ len as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's producer picks for a keyed record.
pub fn murmur2_partition(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions.max(1)
}

/// Picks partitions the way Kafka's producer does: keyed records by murmur2, key-less records
/// to one partition until about `batch_bytes` of values went there, then to the next.
#[derive(Debug, Clone)]
pub struct KeyPartitioner {
    sticky: u32,
    bytes_in_batch: usize,
    batch_bytes: usize,
}

impl Default for KeyPartitioner {
    fn default() -> Self {
        // Kafka's default batch.size.
        KeyPartitioner::new(16 * 1024)
    }
}

impl KeyPartitioner {
    pub fn new(batch_bytes: usize) -> KeyPartitioner {
        KeyPartitioner {
            sticky: 0,
            bytes_in_batch: 0,
            batch_bytes: batch_bytes.max(1),
        }
    }

    /// The partition for a record with this key and value size.
    pub fn partition(&mut self, key: Option<&[u8]>, value_len: usize, partitions: u32) -> u32 {
        if let Some(key) = key {
            return murmur2_partition(key, partitions);
        }
        if self.bytes_in_batch >= self.batch_bytes {
            self.sticky = self.sticky.wrapping_add(1);
            self.bytes_in_batch = 0;
        }
        self.bytes_in_batch += value_len.max(1);
        self.sticky % partitions.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_java_client() {
        // Values from the Kafka clients' own UtilsTest.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn keyless_records_stick_then_move_on() {
        let mut p = KeyPartitioner::new(100);
        let first: Vec<u32> = (0..4).map(|_| p.partition(None, 50, 3)).collect();
        assert_eq!(first, vec![0, 0, 1, 1]);
        assert_eq!(p.partition(Some(b"21"), 1, 4), murmur2_partition(b"21", 4));
    }
}

//! Where a store's committed entries live: an ordered map in memory, or a fjall keyspace.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::StoreError;

/// Committed entries of one store of one task, ordered by key bytes.
pub trait Backend: Send {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError>;

    /// Entries with keys in the range, in key order.
    fn scan(&self, from: Bound<&[u8]>, to: Bound<&[u8]>)
    -> Result<Vec<(Bytes, Bytes)>, StoreError>;

    /// Applies writes (None deletes) and records the changelog offset they reach, all at once.
    fn apply(
        &mut self,
        writes: &[(Bytes, Option<Bytes>)],
        checkpoint: Option<u64>,
    ) -> Result<(), StoreError>;

    /// The changelog offset the entries reach, when known: a restore continues from there.
    fn checkpoint(&self) -> Result<Option<u64>, StoreError>;

    /// About how many entries there are.
    fn approximate_len(&self) -> u64;

    /// Removes every entry and the checkpoint (before a full restore).
    fn clear(&mut self) -> Result<(), StoreError>;
}

/// An in-memory backend. It starts empty on every run, so a logged one is restored from its
/// changelog.
#[derive(Default)]
pub struct MemoryBackend {
    entries: BTreeMap<Bytes, Bytes>,
    checkpoint: Option<u64>,
}

impl Backend for MemoryBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        Ok(self.entries.get(key).cloned())
    }

    fn scan(
        &self,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        Ok(self
            .entries
            .range::<[u8], _>((from, to))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(
        &mut self,
        writes: &[(Bytes, Option<Bytes>)],
        checkpoint: Option<u64>,
    ) -> Result<(), StoreError> {
        for (key, value) in writes {
            match value {
                Some(value) => self.entries.insert(key.clone(), value.clone()),
                None => self.entries.remove(key),
            };
        }
        if checkpoint.is_some() {
            self.checkpoint = checkpoint;
        }
        Ok(())
    }

    fn checkpoint(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.checkpoint)
    }

    fn approximate_len(&self) -> u64 {
        self.entries.len() as u64
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        self.entries.clear();
        self.checkpoint = None;
        Ok(())
    }
}

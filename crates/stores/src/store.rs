//! One store of one task: committed entries in a backend, and the writes since the last
//! commit in a buffer that reads see first.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::{Backend, StoreError, StoreKind, StoreSpec, keys};

/// A record for a store's changelog topic: the key in the changelog layout, and the value
/// (None: the key was deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// Bytes an entry of the write buffer costs besides its key and value.
const ENTRY_OVERHEAD: usize = 64;

/// A store instance owned by one task.
pub struct Store {
    spec: Arc<StoreSpec>,
    backend: Box<dyn Backend>,
    /// The latest write of each key since the last commit (None: deleted).
    pending: BTreeMap<Bytes, Option<Bytes>>,
    pending_bytes: usize,
    /// Every write in order since the last commit, for the changelog of a store without
    /// caching (Kafka Streams logs each update then; with caching only the latest per key).
    writes: Vec<(Bytes, Option<Bytes>)>,
    /// For each write since the savepoint: the key and its buffer entry before the write.
    undo: Vec<(Bytes, Option<Option<Bytes>>)>,
    /// `writes.len()` at the savepoint.
    writes_at_savepoint: usize,
}

impl Store {
    pub fn new(spec: Arc<StoreSpec>, backend: Box<dyn Backend>) -> Store {
        Store {
            spec,
            backend,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            writes: Vec::new(),
            undo: Vec::new(),
            writes_at_savepoint: 0,
        }
    }

    pub fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    /// The value of a key (stored layout).
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        match self.pending.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.backend.get(key),
        }
    }

    /// The value a key had at the last commit, ignoring buffered writes.
    pub fn get_committed(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        self.backend.get(key)
    }

    /// Writes a key (None deletes it).
    pub fn put(&mut self, key: Bytes, value: Option<Bytes>) {
        let size = key.len() + value.as_ref().map_or(0, Bytes::len) + ENTRY_OVERHEAD;
        if self.spec.logging && !self.spec.caching {
            self.writes.push((key.clone(), value.clone()));
        }
        let before = self.pending.insert(key.clone(), value);
        match &before {
            Some(old) => {
                let old_size = key.len() + old.as_ref().map_or(0, Bytes::len) + ENTRY_OVERHEAD;
                self.pending_bytes = self.pending_bytes + size - old_size;
            }
            None => self.pending_bytes += size,
        }
        self.undo.push((key, before));
    }

    /// Entries with keys in the range (stored layout), in key order, buffered writes included.
    pub fn scan(
        &self,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        let committed = self.backend.scan(from, to)?;
        if self.pending.is_empty() {
            return Ok(committed);
        }
        let mut merged: BTreeMap<Bytes, Bytes> = committed.into_iter().collect();
        for (key, value) in self.pending.range::<[u8], _>((from, to)) {
            match value {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// Entries with keys from `from` to `to`, both included, in key order.
    pub fn range(&self, from: &[u8], to: &[u8]) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        self.scan(Bound::Included(from), Bound::Included(to))
    }

    /// Every entry, in key order.
    pub fn all(&self) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        self.scan(Bound::Unbounded, Bound::Unbounded)
    }

    /// About how many entries the store holds.
    pub fn approximate_len(&self) -> u64 {
        let added = self.pending.values().filter(|v| v.is_some()).count() as u64;
        self.backend.approximate_len() + added
    }

    /// Marks the start of a record: [`Store::rollback`] undoes the writes made after it.
    pub fn savepoint(&mut self) {
        self.undo.clear();
        self.writes_at_savepoint = self.writes.len();
    }

    /// Undoes the writes since the savepoint (a record that failed).
    pub fn rollback(&mut self) {
        while let Some((key, before)) = self.undo.pop() {
            match before {
                Some(value) => {
                    self.pending.insert(key, value);
                }
                None => {
                    self.pending.remove(&key);
                }
            }
        }
        self.pending_bytes = self
            .pending
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + ENTRY_OVERHEAD)
            .sum();
        self.writes.truncate(self.writes_at_savepoint);
    }

    /// Bytes the write buffer holds.
    pub fn buffered_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// The buffered writes: the latest of each key since the last commit, in key order.
    pub fn buffered(&self) -> Vec<(Bytes, Option<Bytes>)> {
        self.pending
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn has_writes(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The changelog records of the buffered writes (nothing unless the store is logged).
    pub fn changelog(&self) -> Vec<ChangelogRecord> {
        if !self.spec.logging {
            return Vec::new();
        }
        let to_record = |(key, value): (&Bytes, &Option<Bytes>)| ChangelogRecord {
            key: self.to_changelog_key(key),
            value: value.clone(),
        };
        if self.spec.caching {
            self.pending.iter().map(to_record).collect()
        } else {
            self.writes.iter().map(|(k, v)| to_record((k, v))).collect()
        }
    }

    /// Applies the buffered writes to the backend, with the changelog offset they reach.
    pub fn commit(&mut self, checkpoint: Option<u64>) -> Result<(), StoreError> {
        if self.pending.is_empty() && checkpoint.is_none() {
            return Ok(());
        }
        let writes: Vec<(Bytes, Option<Bytes>)> =
            std::mem::take(&mut self.pending).into_iter().collect();
        self.backend.apply(&writes, checkpoint)?;
        self.pending_bytes = 0;
        self.writes.clear();
        self.undo.clear();
        self.writes_at_savepoint = 0;
        Ok(())
    }

    /// The changelog offset the committed entries reach.
    pub fn checkpoint(&self) -> Result<Option<u64>, StoreError> {
        self.backend.checkpoint()
    }

    /// Empties the store before a restore from the start of its changelog.
    pub fn clear(&mut self) -> Result<(), StoreError> {
        self.pending.clear();
        self.pending_bytes = 0;
        self.writes.clear();
        self.undo.clear();
        self.backend.clear()
    }

    /// Applies changelog records read back from the topic; `next_offset` is the changelog
    /// offset after the last of them. Records whose key does not have the store's layout are
    /// skipped and counted in the result.
    pub fn restore(
        &mut self,
        records: impl IntoIterator<Item = ChangelogRecord>,
        next_offset: u64,
    ) -> Result<usize, StoreError> {
        let mut skipped = 0;
        let mut writes = Vec::new();
        for record in records {
            match self.stored_key(&record.key) {
                Some(key) => writes.push((key, record.value)),
                None => skipped += 1,
            }
        }
        self.backend.apply(&writes, Some(next_offset))?;
        Ok(skipped)
    }

    fn to_changelog_key(&self, stored: &Bytes) -> Bytes {
        let converted = match self.spec.kind {
            StoreKind::KeyValue => None,
            StoreKind::Window => keys::window_to_changelog(stored),
            StoreKind::Session => keys::session_to_changelog(stored),
        };
        converted.unwrap_or_else(|| stored.clone())
    }

    fn stored_key(&self, changelog: &Bytes) -> Option<Bytes> {
        match self.spec.kind {
            StoreKind::KeyValue => Some(changelog.clone()),
            StoreKind::Window => keys::window_from_changelog(changelog),
            StoreKind::Session => keys::session_from_changelog(changelog),
        }
    }
}

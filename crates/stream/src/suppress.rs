//! What a suppress node holds back: the latest update of each key with the stream time at
//! which it is due. The updates live in the node's logged buffer store (so a restart neither
//! loses nor repeats them); this index of them by due time is rebuilt from the store the first
//! time a task uses it.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use millrace_stores::{Store, StoreError};

/// A held update as the buffer store keeps it: due time, record time, the value (None: a
/// tombstone), and the key's value before the first update held (for nodes downstream that
/// read old values).
pub struct Held {
    pub due: i64,
    pub time: i64,
    pub value: Option<Bytes>,
    pub prior: Option<Bytes>,
}

impl Held {
    pub fn encode(&self) -> Bytes {
        let size = |v: &Option<Bytes>| v.as_ref().map_or(0, Bytes::len);
        let mut out = Vec::with_capacity(26 + size(&self.value) + size(&self.prior));
        out.extend_from_slice(&self.due.to_be_bytes());
        out.extend_from_slice(&self.time.to_be_bytes());
        for part in [&self.value, &self.prior] {
            match part {
                Some(bytes) => {
                    out.push(1);
                    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                    out.extend_from_slice(bytes);
                }
                None => out.push(0),
            }
        }
        Bytes::from(out)
    }

    /// Reads an entry back; entries written before held updates kept their prior value
    /// (`due, time, 1 and the value` or `due, time, 0`) read as having none.
    pub fn decode(entry: &Bytes) -> Option<Held> {
        Held::decode_current(entry).or_else(|| {
            let due = i64::from_be_bytes(entry.get(..8)?.try_into().ok()?);
            let time = i64::from_be_bytes(entry.get(8..16)?.try_into().ok()?);
            let value = match entry.get(16)? {
                1 => Some(entry.slice(17..)),
                _ => None,
            };
            Some(Held {
                due,
                time,
                value,
                prior: None,
            })
        })
    }

    /// Reads an entry written by [`Held::encode`]; None unless it is exactly one.
    fn decode_current(entry: &Bytes) -> Option<Held> {
        let due = i64::from_be_bytes(entry.get(..8)?.try_into().ok()?);
        let time = i64::from_be_bytes(entry.get(8..16)?.try_into().ok()?);
        let mut at = 16;
        let mut part = || -> Option<Option<Bytes>> {
            let present = *entry.get(at)? == 1;
            at += 1;
            if !present {
                return Some(None);
            }
            let len = u32::from_be_bytes(entry.get(at..at + 4)?.try_into().ok()?) as usize;
            at += 4;
            let bytes = entry.get(at..at + len).map(|_| entry.slice(at..at + len))?;
            at += len;
            Some(Some(bytes))
        };
        let value = part()?;
        let prior = part()?;
        if at != entry.len() {
            return None;
        }
        Some(Held {
            due,
            time,
            value,
            prior,
        })
    }
}

/// The keys a suppress node holds, ordered by due time.
#[derive(Default)]
pub struct HeldKeys {
    loaded: bool,
    by_due: BTreeSet<(i64, Bytes)>,
    due_of: HashMap<Bytes, (i64, usize)>,
    bytes: u64,
}

impl HeldKeys {
    /// Reads the index from the buffer store once.
    pub fn load(&mut self, store: &Store) -> Result<(), StoreError> {
        if self.loaded {
            return Ok(());
        }
        for (key, entry) in store.all()? {
            if let Some(held) = Held::decode(&entry) {
                self.insert(key, held.due, entry.len());
            }
        }
        self.loaded = true;
        Ok(())
    }

    /// The due time of a held key.
    pub fn due_of(&self, key: &Bytes) -> Option<i64> {
        self.due_of.get(key).map(|(due, _)| *due)
    }

    pub fn insert(&mut self, key: Bytes, due: i64, size: usize) {
        self.remove(&key);
        self.by_due.insert((due, key.clone()));
        self.bytes += (key.len() + size) as u64;
        self.due_of.insert(key, (due, size));
    }

    pub fn remove(&mut self, key: &Bytes) {
        if let Some((due, size)) = self.due_of.remove(key) {
            self.by_due.remove(&(due, key.clone()));
            self.bytes -= (key.len() + size) as u64;
        }
    }

    /// The key due first, if any.
    pub fn first(&self) -> Option<&(i64, Bytes)> {
        self.by_due.first()
    }

    pub fn len(&self) -> u64 {
        self.by_due.len() as u64
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_updates_read_back_in_both_layouts() {
        let held = Held {
            due: 60_000,
            time: 5,
            value: Some(Bytes::from_static(b"v")),
            prior: Some(Bytes::from_static(b"old")),
        };
        let back = Held::decode(&held.encode()).unwrap();
        assert_eq!((back.due, back.time), (60_000, 5));
        assert_eq!((back.value, back.prior), (held.value, held.prior));
        // An entry written before updates kept their prior value.
        let mut earlier = Vec::new();
        earlier.extend_from_slice(&7i64.to_be_bytes());
        earlier.extend_from_slice(&3i64.to_be_bytes());
        earlier.push(1);
        earlier.extend_from_slice(b"value");
        let back = Held::decode(&Bytes::from(earlier)).unwrap();
        assert_eq!((back.due, back.time), (7, 3));
        assert_eq!(back.value.as_deref(), Some(&b"value"[..]));
        assert_eq!(back.prior, None);
    }
}

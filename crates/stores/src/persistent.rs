//! Persistent stores: one fjall database per application under the state directory, one
//! keyspace per (task, store), and a keyspace of changelog checkpoints written in the same
//! atomic batch as the entries they describe.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::{Backend, StoreError};

/// The on-disk state of one application.
pub struct StateDir {
    dir: PathBuf,
    db: Database,
    checkpoints: Keyspace,
}

impl StateDir {
    /// Opens (or creates) the state in `dir`.
    pub fn open(dir: &Path) -> Result<StateDir, StoreError> {
        let failed = |reason: String| StoreError::StateDir {
            dir: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
        let db = Database::builder(dir)
            .open()
            .map_err(|e| failed(e.to_string()))?;
        let checkpoints = db
            .keyspace("checkpoints", KeyspaceCreateOptions::default)
            .map_err(|e| failed(e.to_string()))?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
            db,
            checkpoints,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The backend of one store of one task.
    pub fn backend(&self, task: &str, store: &str) -> Result<PersistentBackend, StoreError> {
        let name = format!("{task}.{store}");
        if name.len() > 255 {
            return Err(StoreError::StateDir {
                dir: self.dir.display().to_string(),
                reason: format!("store name '{store}' is too long for a persistent store"),
            });
        }
        let entries = self
            .db
            .keyspace(&name, KeyspaceCreateOptions::default)
            .map_err(|source| StoreError::Disk {
                store: store.to_string(),
                source,
            })?;
        Ok(PersistentBackend {
            store: store.to_string(),
            db: self.db.clone(),
            entries,
            checkpoints: self.checkpoints.clone(),
            checkpoint_key: Bytes::from(name),
        })
    }
}

/// A store's entries in a fjall keyspace.
pub struct PersistentBackend {
    store: String,
    db: Database,
    entries: Keyspace,
    checkpoints: Keyspace,
    checkpoint_key: Bytes,
}

impl PersistentBackend {
    fn disk(&self, source: fjall::Error) -> StoreError {
        StoreError::Disk {
            store: self.store.clone(),
            source,
        }
    }
}

impl Backend for PersistentBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let value = self.entries.get(key).map_err(|e| self.disk(e))?;
        Ok(value.map(|v| Bytes::copy_from_slice(&v)))
    }

    fn scan(
        &self,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        let mut out = Vec::new();
        for item in self.entries.range::<&[u8], _>((from, to)) {
            let (key, value) = item.into_inner().map_err(|e| self.disk(e))?;
            out.push((Bytes::copy_from_slice(&key), Bytes::copy_from_slice(&value)));
        }
        Ok(out)
    }

    fn apply(
        &mut self,
        writes: &[(Bytes, Option<Bytes>)],
        checkpoint: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::Buffer));
        for (key, value) in writes {
            match value {
                Some(value) => batch.insert(&self.entries, key.as_ref(), value.as_ref()),
                None => batch.remove(&self.entries, key.as_ref()),
            }
        }
        if let Some(offset) = checkpoint {
            batch.insert(
                &self.checkpoints,
                self.checkpoint_key.as_ref(),
                offset.to_be_bytes().as_slice(),
            );
        }
        batch.commit().map_err(|e| self.disk(e))
    }

    fn checkpoint(&self) -> Result<Option<u64>, StoreError> {
        let value = self
            .checkpoints
            .get(self.checkpoint_key.as_ref())
            .map_err(|e| self.disk(e))?;
        Ok(value.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok().map(u64::from_be_bytes)))
    }

    fn approximate_len(&self) -> u64 {
        self.entries.approximate_len() as u64
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        self.entries.clear().map_err(|e| self.disk(e))?;
        self.checkpoints
            .remove(self.checkpoint_key.as_ref())
            .map_err(|e| self.disk(e))
    }
}

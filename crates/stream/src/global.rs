//! Global tables: every partition of a topic kept in memory, shared by all tasks. As in Kafka
//! Streams, a global table is loaded to the end of its topic before any record is processed,
//! then follows the topic (each batch first reads what was appended since); it needs no
//! changelog, since its topic is its history.

use std::collections::HashMap;
use std::sync::RwLock;

use bytes::Bytes;
use millrace_log::{Log, LogError};
use millrace_types::DataType;

use crate::task::BATCH_RECORDS;

/// Index of a global table in [`crate::topology::Topology::globals`].
pub type GlobalId = usize;

/// A global table and its contents.
pub struct GlobalTable {
    pub name: String,
    pub topic: String,
    pub key_type: DataType,
    pub value_type: DataType,
    state: RwLock<GlobalState>,
}

#[derive(Default)]
struct GlobalState {
    entries: HashMap<Bytes, Bytes>,
    /// The next offset to read, per partition.
    positions: Vec<u64>,
}

impl GlobalTable {
    pub fn new(name: &str, topic: &str, key_type: DataType, value_type: DataType) -> GlobalTable {
        GlobalTable {
            name: name.to_string(),
            topic: topic.to_string(),
            key_type,
            value_type,
            state: RwLock::new(GlobalState::default()),
        }
    }

    /// Reads every record appended to the topic since the last call: a value replaces the
    /// key's, a null value deletes it, a record without a key is skipped.
    pub fn catch_up(&self, log: &dyn Log) -> Result<(), LogError> {
        let partitions = log.ensure_topic(&self.topic)? as usize;
        let mut ends = Vec::with_capacity(partitions);
        for partition in 0..partitions {
            ends.push(log.offset_range(&self.topic, partition as u32)?.1);
        }
        {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            let behind =
                (0..partitions).any(|p| state.positions.get(p).copied().unwrap_or(0) < ends[p]);
            if !behind {
                return Ok(());
            }
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.positions.resize(partitions, 0);
        for (partition, end) in ends.into_iter().enumerate() {
            while state.positions[partition] < end {
                let position = state.positions[partition];
                let generation = log.append_generation();
                let fetched = log.read(&self.topic, partition as u32, position, BATCH_RECORDS)?;
                if fetched.records.is_empty() {
                    if fetched.caught_up() {
                        break;
                    }
                    // A Kafka reader's first records are still on their way.
                    log.wait_for_append(generation, crate::task_stores::RECORDS_WAIT);
                    continue;
                }
                state.positions[partition] = fetched.next_offset;
                for stored in fetched.records {
                    let Some(key) = stored.record.key else {
                        continue;
                    };
                    match stored.record.value {
                        Some(value) => state.entries.insert(key, value),
                        None => state.entries.remove(&key),
                    };
                }
            }
        }
        Ok(())
    }

    /// The value of a key (bytes of the table's key type).
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.entries.get(key).cloned()
    }
}

//! The state stores of tasks: created when tasks are planned, restored from their changelogs
//! before any record is processed, lent to the worker thread while a batch runs (Python store
//! handles reach them there), and committed with the task.

use std::cell::RefCell;
use std::sync::Arc;

use millrace_log::{Append, Log, LogError, Record, TopicConfig};
use millrace_stores::{Backend, ChangelogRecord, MemoryBackend, StateDir, Store, StoreSpec};
use millrace_types::DataType;

use crate::task::BATCH_RECORDS;

/// Index of a store in [`crate::topology::Topology::stores`].
pub type StoreId = usize;

/// A store of the application, as every task instantiates it.
pub struct StoreSlot {
    pub spec: Arc<StoreSpec>,
    /// The types keys and values are serialized in (JSON where the store declares none).
    pub key_type: DataType,
    pub value_type: DataType,
    /// `<application.id>-<store>-changelog` when the store is logged.
    pub changelog: Option<String>,
}

/// A task's stores, indexed by [`StoreId`]; None for stores of other groups.
pub type TaskStores = Vec<Option<Store>>;

thread_local! {
    /// The stores of the task whose batch this thread is running.
    static LENT: RefCell<TaskStores> = const { RefCell::new(Vec::new()) };
}

/// Hands a task's stores to this thread for one batch; [`take_back`] returns them.
pub fn lend(stores: TaskStores) {
    LENT.with(|lent| *lent.borrow_mut() = stores);
}

/// The stores lent by [`lend`].
pub fn take_back() -> TaskStores {
    LENT.with(|lent| std::mem::take(&mut *lent.borrow_mut()))
}

/// Runs `f` on a lent store. Fails when the store belongs to no task running here (a function
/// of another group) or is already in use further up this thread's stack.
pub fn with_store<R>(id: StoreId, f: impl FnOnce(&mut Store) -> R) -> Result<R, String> {
    LENT.with(|lent| {
        let mut stores = lent
            .try_borrow_mut()
            .map_err(|_| "the state store is in use".to_string())?;
        match stores.get_mut(id).and_then(Option::as_mut) {
            Some(store) => Ok(f(store)),
            None => Err("the state store is not available to this task".to_string()),
        }
    })
}

/// Runs `f` on every lent store.
pub fn each_lent(mut f: impl FnMut(&mut Store)) {
    LENT.with(|lent| {
        if let Ok(mut stores) = lent.try_borrow_mut() {
            stores.iter_mut().flatten().for_each(&mut f);
        }
    });
}

/// How long a read that found no records yet, though the partition has more, waits for
/// them before reading again.
pub(crate) const RECORDS_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Creates a task's stores and brings logged ones up to date with their changelogs: a
/// persistent store from its checkpoint, an in-memory one from the start. `task_count` is the
/// number of tasks of the group, which is the changelogs' partition count.
pub fn open_stores(
    slots: &[StoreSlot],
    used: &[StoreId],
    task_id: &str,
    partition: u32,
    task_count: u32,
    log: &dyn Log,
    state: Option<&StateDir>,
) -> Result<TaskStores, String> {
    let mut stores: TaskStores = (0..slots.len()).map(|_| None).collect();
    for &id in used {
        let slot = &slots[id];
        let backend: Box<dyn Backend> = if slot.spec.persistent {
            let state = state.ok_or_else(|| {
                format!(
                    "persistent state store '{}' needs a state directory",
                    slot.spec.name
                )
            })?;
            Box::new(
                state
                    .backend(task_id, &slot.spec.name)
                    .map_err(|e| e.to_string())?,
            )
        } else {
            Box::new(MemoryBackend::default())
        };
        let mut store = Store::new(slot.spec.clone(), backend);
        if let Some(topic) = &slot.changelog {
            restore(&mut store, topic, partition, task_count, log).map_err(|e| {
                format!(
                    "cannot restore state store '{}' of task {task_id} from '{topic}': {e}",
                    slot.spec.name
                )
            })?;
        }
        stores[id] = Some(store);
    }
    Ok(stores)
}

fn restore(
    store: &mut Store,
    topic: &str,
    partition: u32,
    task_count: u32,
    log: &dyn Log,
) -> Result<(), String> {
    log.create_topic_with_config(topic, task_count, &TopicConfig::compacted())
        .map_err(|e| e.to_string())?;
    // A changelog made earlier by hand as a deleting topic would lose old keys to retention.
    match log.topic_config(topic) {
        Ok(Some(config)) if !config.cleanup_policy.compacts() => {
            return Err(format!(
                "the changelog exists with {config}, so retention would delete the store's \
                 entries: it needs cleanup.policy=compact"
            ));
        }
        Ok(_) => {}
        // Some Kafka-protocol brokers do not report topic configs: nothing to check against.
        Err(LogError::ConfigsNotReported(_)) if partition == 0 => tracing::warn!(
            topic,
            "the broker does not report the changelog's configs: cannot check that it is \
             compacted (cleanup.policy=compact)"
        ),
        Err(LogError::ConfigsNotReported(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    let (start, end) = log
        .offset_range(topic, partition)
        .map_err(|e| e.to_string())?;
    // A checkpoint past the end means the changelog was recreated: start over.
    let mut next = match store.checkpoint().map_err(|e| e.to_string())? {
        Some(checkpoint) if checkpoint <= end => checkpoint.max(start),
        _ => {
            store.clear().map_err(|e| e.to_string())?;
            start
        }
    };
    let mut restored = 0u64;
    while next < end {
        let generation = log.append_generation();
        let fetched = log
            .read(topic, partition, next, BATCH_RECORDS)
            .map_err(|e| e.to_string())?;
        if fetched.records.is_empty() {
            if fetched.caught_up() {
                break;
            }
            // A Kafka reader's first records are still on their way: wait, not stop short.
            log.wait_for_append(generation, RECORDS_WAIT);
            continue;
        }
        next = fetched.next_offset;
        restored += fetched.records.len() as u64;
        let records = fetched.records.into_iter().filter_map(|r| {
            Some(ChangelogRecord {
                key: r.record.key?,
                value: r.record.value,
            })
        });
        let skipped = store.restore(records, next).map_err(|e| e.to_string())?;
        if skipped > 0 {
            tracing::warn!(
                topic,
                partition,
                skipped,
                "changelog records whose key does not fit the store were skipped"
            );
        }
    }
    if restored > 0 {
        tracing::info!(
            store = store.spec().name,
            topic,
            partition,
            records = restored,
            "restored a state store from its changelog"
        );
    }
    Ok(())
}

/// The changelog appends of a task's buffered store writes, with the store each belongs to.
pub fn changelog_appends(
    slots: &[StoreSlot],
    stores: &TaskStores,
    partition: u32,
    timestamp: i64,
) -> Vec<(StoreId, Append)> {
    let mut appends = Vec::new();
    for (id, store) in stores.iter().enumerate() {
        let (Some(store), Some(topic)) = (store, &slots[id].changelog) else {
            continue;
        };
        let records: Vec<Record> = store
            .changelog()
            .into_iter()
            .map(|r| Record {
                key: Some(r.key),
                value: r.value,
                timestamp,
                headers: Vec::new(),
            })
            .collect();
        if !records.is_empty() {
            appends.push((
                id,
                Append {
                    topic: topic.clone(),
                    partition,
                    records,
                },
            ));
        }
    }
    appends
}

/// Deletes the windows that started more than their store's retention before `stream_time`
/// (the deletions go to the changelog as tombstones, so a restore does not bring them back).
/// A store is scanned once its oldest possible window has moved on by a tenth of the
/// retention since its last scan. `scanned` remembers, per store, the horizon of that scan.
pub fn expire_windows(
    stores: &mut TaskStores,
    retentions: &[(StoreId, i64)],
    stream_time: i64,
    scanned: &mut std::collections::HashMap<StoreId, i64>,
) -> Result<u64, millrace_stores::StoreError> {
    let mut expired = 0;
    for &(id, retention) in retentions {
        let Some(store) = stores.get_mut(id).and_then(Option::as_mut) else {
            continue;
        };
        let horizon = stream_time.saturating_sub(retention);
        let last = scanned.entry(id).or_insert(i64::MIN);
        if horizon <= last.saturating_add(retention / 10) {
            continue;
        }
        *last = horizon;
        let session = store.spec().kind == millrace_stores::StoreKind::Session;
        for (key, _) in store.all()? {
            // A window goes by its start, a session by its end.
            let time = if session {
                millrace_stores::keys::parse_session_key(&key).map(|(_, _, end)| end)
            } else {
                millrace_stores::keys::parse_window_key(&key).map(|(_, start, _)| start)
            };
            if time.is_some_and(|time| time < horizon) {
                store.put(key, None);
                expired += 1;
            }
        }
    }
    Ok(expired)
}

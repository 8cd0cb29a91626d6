//! The embedded log: topics in a journal under the data directory, indexed in memory.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::encoding::{Malformed, Op, PayloadWriter, decode_ops, decode_records};
use crate::journal::{Journal, SegmentView};
use crate::{
    Append, CommittedOffset, Fetched, Log, LogError, Record, StoredRecord, TopicConfig, TopicInfo,
    validate_partition_count, validate_topic_name,
};

/// Settings of the embedded log.
#[derive(Debug, Clone)]
pub struct EmbeddedLogConfig {
    /// Partitions of topics created on first use (Kafka's `num.partitions`, default 1).
    pub default_partitions: u32,
    /// A new journal segment starts once the active one holds this many bytes.
    pub segment_bytes: u64,
    /// While the journal holds more than this many bytes, the oldest segment's records are
    /// deleted (those of compacted topics are compacted instead).
    pub retention_bytes: Option<u64>,
    /// Records are deleted once their segment's last write is older than this; a topic's
    /// `retention.ms` overrides it. None keeps records forever.
    pub retention: Option<Duration>,
    /// Sync each append to disk (survives power loss, not only a crash of the process).
    pub sync_writes: bool,
    /// A topic needed but missing is created (`auto.create.topics.enable`, default true).
    pub create_missing_topics: bool,
}

impl Default for EmbeddedLogConfig {
    fn default() -> Self {
        EmbeddedLogConfig {
            default_partitions: 1,
            segment_bytes: 256 << 20,
            retention_bytes: None,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            sync_writes: false,
            create_missing_topics: true,
        }
    }
}

impl EmbeddedLogConfig {
    /// Applies Kafka broker properties that have a meaning here: `num.partitions`,
    /// `log.segment.bytes`, `log.retention.bytes` (-1: unlimited), `log.retention.ms`
    /// (-1: unlimited), `log.retention.hours`, and `log.flush.interval.messages` (1: sync every
    /// append). Other properties are ignored.
    pub fn with_properties<'a>(
        mut self,
        properties: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<EmbeddedLogConfig, String> {
        for (name, value) in properties {
            let number = || {
                value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| format!("{name} must be a whole number, found '{value}'"))
            };
            let limit = |n: i64| u64::try_from(n).ok();
            match name {
                "num.partitions" => {
                    let n = number()?;
                    self.default_partitions = u32::try_from(n)
                        .ok()
                        .filter(|p| validate_partition_count(*p).is_ok())
                        .ok_or_else(|| format!("{name}: {}", LogError::InvalidPartitionCount(n)))?;
                }
                "log.segment.bytes" => {
                    self.segment_bytes = limit(number()?)
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("{name} must be positive"))?;
                }
                "log.retention.bytes" => self.retention_bytes = limit(number()?),
                "log.retention.ms" => {
                    self.retention = limit(number()?).map(Duration::from_millis);
                }
                "log.retention.hours" => {
                    self.retention = limit(number()?).map(|h| Duration::from_secs(h * 3600));
                }
                "log.flush.interval.messages" => self.sync_writes = number()? == 1,
                "auto.create.topics.enable" => self.create_missing_topics = flag(name, value)?,
                _ => {}
            }
        }
        Ok(self)
    }
}

/// A true/false property.
fn flag(name: &str, value: &str) -> Result<bool, String> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{name} must be true or false, found '{value}'")),
    }
}

/// Where one appended batch of a partition sits in the journal.
#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    base_offset: u64,
    count: u32,
    position: u64,
    len: u32,
}

#[derive(Debug, Default)]
struct PartitionState {
    next_offset: u64,
    batches: VecDeque<IndexEntry>,
}

/// The state of a partition of a topic that does not exist yet.
static EMPTY_PARTITION: PartitionState = PartitionState {
    next_offset: 0,
    batches: VecDeque::new(),
};

impl PartitionState {
    fn start_offset(&self) -> u64 {
        self.batches
            .front()
            .map_or(self.next_offset, |b| b.base_offset)
    }

    /// Adds records that compaction copied forward, in offset order. They replace any older
    /// batch holding their offsets: after a crash between copying and deleting a segment,
    /// replay meets both the originals and the copies.
    fn insert_moved(&mut self, entry: IndexEntry) {
        let end = entry.base_offset + u64::from(entry.count);
        self.batches.retain(|b| {
            let overlaps =
                b.base_offset < end && entry.base_offset < b.base_offset + u64::from(b.count);
            !(overlaps && b.position < entry.position)
        });
        let at = self
            .batches
            .partition_point(|b| b.base_offset < entry.base_offset);
        self.batches.insert(at, entry);
    }
}

/// What the journal's entries add up to: topics with their partitions' indexes, their
/// settings, and offsets.
#[derive(Default)]
struct Tables {
    topics: BTreeMap<String, Vec<PartitionState>>,
    /// Settings of topics that have some other than the defaults.
    configs: BTreeMap<String, TopicConfig>,
    /// Committed offsets by (group, topic, partition).
    committed: HashMap<(String, String, u32), (u64, String)>,
}

struct State {
    journal: Journal,
    tables: Tables,
}

impl State {
    /// Appends an entry to the journal and applies it to the tables.
    fn write(&mut self, payload: &[u8]) -> Result<(), LogError> {
        let position = self.journal.append(payload)?;
        self.tables
            .apply(position, payload)
            .map_err(|m| LogError::Corrupt {
                file: "journal".into(),
                position,
                reason: m.0.to_string(),
            })
    }
}

impl Tables {
    /// Applies the operations of one journal entry whose payload starts at `position`.
    fn apply(&mut self, position: u64, payload: &[u8]) -> Result<(), Malformed> {
        for op in decode_ops(payload)? {
            match op {
                Op::CreateTopic {
                    name,
                    partitions,
                    next_offsets,
                } => {
                    if partitions > crate::MAX_PARTITIONS {
                        return Err(Malformed("too many partitions"));
                    }
                    let parts = self.topics.entry(name).or_default();
                    if parts.len() < partitions as usize {
                        parts.resize_with(partitions as usize, PartitionState::default);
                    }
                    for (part, next) in parts.iter_mut().zip(next_offsets) {
                        part.next_offset = part.next_offset.max(next);
                    }
                }
                Op::Records {
                    topic,
                    partition,
                    base_offset,
                    count,
                    body,
                    moved,
                } => {
                    let part = self
                        .topics
                        .get_mut(&topic)
                        .and_then(|parts| parts.get_mut(partition as usize))
                        .ok_or(Malformed("records for an unknown topic"))?;
                    let next_offset = base_offset
                        .checked_add(u64::from(count))
                        .ok_or(Malformed("offsets past the largest"))?;
                    let entry = IndexEntry {
                        base_offset,
                        count,
                        position: position + body.start as u64,
                        len: body.len() as u32,
                    };
                    if moved {
                        part.insert_moved(entry);
                    } else {
                        part.batches.push_back(entry);
                        part.next_offset = next_offset;
                    }
                }
                Op::TopicConfig { name, properties } => {
                    let config = TopicConfig::from_properties(
                        properties.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    )
                    .map_err(|_| Malformed("topic config that does not parse"))?;
                    if config == TopicConfig::default() {
                        self.configs.remove(&name);
                    } else {
                        self.configs.insert(name, config);
                    }
                }
                Op::Commit {
                    group,
                    topic,
                    partition,
                    offset,
                    metadata,
                } => {
                    self.committed
                        .insert((group, topic, partition), (offset, metadata));
                }
                Op::DeleteTopic { name } => {
                    self.topics.remove(&name);
                    self.configs.remove(&name);
                    self.committed.retain(|(_, topic, _), _| *topic != name);
                }
            }
        }
        Ok(())
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<&PartitionState, LogError> {
        let parts = self
            .topics
            .get(topic)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))?;
        parts
            .get(partition as usize)
            .ok_or_else(|| LogError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions: parts.len() as u32,
            })
    }

    /// A payload that recreates every topic's end offsets and every committed offset: written
    /// first in each new segment so that deleting older segments forgets no state.
    fn snapshot(&self) -> PayloadWriter {
        let mut w = PayloadWriter::new();
        for (name, parts) in &self.topics {
            let next: Vec<u64> = parts.iter().map(|p| p.next_offset).collect();
            w.create_topic(name, parts.len() as u32, &next);
        }
        for (name, config) in &self.configs {
            w.topic_config(name, &config.to_properties());
        }
        for ((group, topic, partition), (offset, metadata)) in &self.committed {
            w.commit(group, topic, *partition, *offset, metadata);
        }
        w
    }

    fn config(&self, topic: &str) -> Option<&TopicConfig> {
        self.configs.get(topic)
    }

    /// True when a batch of a delete-only topic lies in `range` of journal positions: such a
    /// segment cannot go until that topic's retention says so.
    fn holds_uncompacted(&self, range: &std::ops::Range<u64>) -> bool {
        self.topics.iter().any(|(name, parts)| {
            let compacts = self
                .config(name)
                .is_some_and(|c| c.cleanup_policy.compacts());
            !compacts
                && parts
                    .iter()
                    .any(|p| p.batches.iter().any(|b| range.contains(&b.position)))
        })
    }

    /// Drops index entries in `range` from the topics `which` selects.
    fn forget(&mut self, range: &std::ops::Range<u64>, which: impl Fn(&str) -> bool) {
        for (name, parts) in &mut self.topics {
            if which(name) {
                for part in parts {
                    part.batches.retain(|b| !range.contains(&b.position));
                }
            }
        }
    }
}

/// The embedded, file-backed log. One process owns a data directory at a time.
pub struct EmbeddedLog {
    config: EmbeddedLogConfig,
    state: Mutex<State>,
    generation: Mutex<u64>,
    appended: Condvar,
    /// Held open for the lifetime of the log: the operating system releases the lock when the
    /// process ends, however it ends.
    _lock: File,
}

impl EmbeddedLog {
    /// Opens the log in `data_dir` (creating it), taking the data directory's lock.
    pub fn open(data_dir: &Path, config: EmbeddedLogConfig) -> Result<EmbeddedLog, LogError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| LogError::io(format!("create {}", data_dir.display()), e))?;
        let lock = lock_data_dir(data_dir)?;
        let journal_dir: PathBuf = data_dir.join("log");
        let mut tables = Tables::default();
        let journal = Journal::open(&journal_dir, config.sync_writes, |position, payload| {
            tables
                .apply(position, payload)
                .map_err(|m| LogError::Corrupt {
                    file: journal_dir.display().to_string(),
                    position,
                    reason: m.0.to_string(),
                })
        })?;
        let log = EmbeddedLog {
            config,
            state: Mutex::new(State { journal, tables }),
            generation: Mutex::new(0),
            appended: Condvar::new(),
            _lock: lock,
        };
        // Records past their topic's retention in segments other topics still need are not
        // in the index before the restart either.
        log.expire(&mut log.lock_state(), SystemTime::now());
        Ok(log)
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the journal half-written (appends are
        // one write), so the state is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes an entry and applies it to the in-memory state, then rolls and trims segments.
    fn write(&self, state: &mut State, payload: Vec<u8>) -> Result<(), LogError> {
        state.write(&payload)?;
        if state.journal.active_len() >= self.config.segment_bytes {
            self.roll(state)?;
        }
        Ok(())
    }

    /// Starts a new segment, then lets retention and compaction delete old ones.
    fn roll(&self, state: &mut State) -> Result<(), LogError> {
        state.journal.roll()?;
        let snapshot = state.tables.snapshot().finish();
        state.journal.append(&snapshot)?;
        let now = SystemTime::now();
        self.expire(state, now);
        while let Some(oldest) = state.journal.oldest_closed() {
            let range = oldest.base..oldest.base + oldest.len;
            let last_write = oldest.last_write;
            let too_big = self
                .config
                .retention_bytes
                .is_some_and(|limit| state.journal.total_len() > limit);
            if too_big {
                let tables = &state.tables;
                let deletes: Vec<String> = tables
                    .topics
                    .keys()
                    .filter(|name| {
                        tables
                            .config(name)
                            .is_none_or(|c| c.cleanup_policy.deletes())
                    })
                    .cloned()
                    .collect();
                state
                    .tables
                    .forget(&range, |name| deletes.iter().any(|d| d == name));
            }
            if state.tables.holds_uncompacted(&range) {
                break;
            }
            let survivors = self.compacted_survivors(state, &range, last_write, now)?;
            // Compacting a segment that is mostly live would copy most of it again at every
            // roll: it waits until at least half of it is dead (or the journal is too big).
            if !too_big && survivors.len() as u64 * 2 >= range.end - range.start {
                break;
            }
            if !survivors.is_empty() {
                state.write(&survivors)?;
            }
            state.journal.delete_oldest()?;
            state.tables.forget(&range, |_| true);
        }
        Ok(())
    }

    /// Drops from the index the records of every deleting topic whose segment's last write is
    /// older than the topic's retention. The bytes stay until no topic needs the segment.
    fn expire(&self, state: &mut State, now: SystemTime) {
        let closed: Vec<(std::ops::Range<u64>, Duration)> = state
            .journal
            .closed()
            .iter()
            .map(|s| {
                let age = now.duration_since(s.last_write).unwrap_or_default();
                (s.base..s.base + s.len, age)
            })
            .collect();
        let tables = &mut state.tables;
        for (name, parts) in &mut tables.topics {
            let config = tables.configs.get(name);
            if config.is_some_and(|c| !c.cleanup_policy.deletes()) {
                continue;
            }
            let retention = match config.and_then(|c| c.retention) {
                Some(topic_retention) => topic_retention,
                None => self.config.retention,
            };
            let Some(keep) = retention else { continue };
            for (range, _) in closed.iter().filter(|(_, age)| *age > keep) {
                for part in parts.iter_mut() {
                    part.batches.retain(|b| !range.contains(&b.position));
                }
            }
        }
    }

    /// Before the segment at `range` is deleted: the entry copying forward the records of
    /// compacted topics in it that are still the latest of their key, keeping their offsets
    /// (empty when there are none).
    fn compacted_survivors(
        &self,
        state: &State,
        range: &std::ops::Range<u64>,
        last_write: SystemTime,
        now: SystemTime,
    ) -> Result<Vec<u8>, LogError> {
        let age = now.duration_since(last_write).unwrap_or_default();
        let now_millis = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let view = state.journal.view();
        let mut writer = PayloadWriter::new();
        for (name, config) in &state.tables.configs {
            if !config.cleanup_policy.compacts() {
                continue;
            }
            // A tombstone goes once its segment, or the tombstone itself by its timestamp (which
            // copying forward keeps), is older than delete.retention.ms.
            let keep = config.tombstone_retention();
            let keep_tombstone = |record: &Record| {
                let record_age = now_millis.saturating_sub(record.timestamp).max(0) as u128;
                age <= keep && record_age <= keep.as_millis()
            };
            let Some(parts) = state.tables.topics.get(name) else {
                continue;
            };
            for (partition, part) in parts.iter().enumerate() {
                if !part.batches.iter().any(|b| range.contains(&b.position)) {
                    continue;
                }
                let live = live_records(&view, part, range, &keep_tombstone)?;
                for run in consecutive_runs(live) {
                    let base = run[0].0;
                    let records: Vec<Record> = run.into_iter().map(|(_, r)| r).collect();
                    writer.moved_records(name, partition as u32, base, &records);
                }
            }
        }
        Ok(if writer.is_empty() {
            Vec::new()
        } else {
            writer.finish()
        })
    }

    fn notify_append(&self) {
        let mut generation = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        *generation += 1;
        self.appended.notify_all();
    }

    /// Validates appends and writes them, with `commits`, as one journal entry.
    fn append_entry(
        &self,
        appends: &[Append],
        commits: Option<(&str, &[CommittedOffset])>,
    ) -> Result<Vec<u64>, LogError> {
        let mut state = self.lock_state();
        let mut next_offsets: HashMap<(&str, u32), u64> = HashMap::new();
        let mut writer = PayloadWriter::new();
        let mut bases = Vec::with_capacity(appends.len());
        for append in appends {
            let next = match next_offsets.entry((append.topic.as_str(), append.partition)) {
                Entry::Occupied(slot) => slot.into_mut(),
                Entry::Vacant(slot) => {
                    let start = match state.tables.topics.get(&append.topic) {
                        Some(_) => state.tables.partition(&append.topic, append.partition)?,
                        None => {
                            // Kafka's auto-creation; the topic exists once the entry is written.
                            validate_topic_name(&append.topic)?;
                            let partitions = self.config.default_partitions;
                            if append.partition >= partitions {
                                return Err(LogError::UnknownPartition {
                                    topic: append.topic.clone(),
                                    partition: append.partition,
                                    partitions,
                                });
                            }
                            writer.create_topic(&append.topic, partitions, &[]);
                            &EMPTY_PARTITION
                        }
                    }
                    .next_offset;
                    slot.insert(start)
                }
            };
            bases.push(*next);
            let compacted = state
                .tables
                .config(&append.topic)
                .is_some_and(|c| c.cleanup_policy.compacts());
            if compacted && append.records.iter().any(|r| r.key.is_none()) {
                return Err(LogError::KeylessRecord(append.topic.clone()));
            }
            if !append.records.is_empty() {
                writer.records(&append.topic, append.partition, *next, &append.records);
                *next += append.records.len() as u64;
            }
        }
        if let Some((group, offsets)) = commits {
            for c in offsets {
                writer.commit(group, &c.topic, c.partition, c.offset, &c.metadata);
            }
        }
        if !writer.is_empty() {
            self.write(&mut state, writer.finish())?;
        }
        drop(state);
        if !appends.is_empty() {
            self.notify_append();
        }
        Ok(bases)
    }
}

/// The records of a compacted partition in `range` that are still the latest of their key
/// (tombstones only with `keep_tombstones`), with their offsets, in offset order.
fn live_records(
    view: &SegmentView,
    part: &PartitionState,
    range: &std::ops::Range<u64>,
    keep_tombstone: &dyn Fn(&Record) -> bool,
) -> Result<Vec<(u64, Record)>, LogError> {
    let mut latest: HashMap<Bytes, u64> = HashMap::new();
    let mut candidates = Vec::new();
    for batch in &part.batches {
        let records = read_batch(view, batch)?;
        let in_range = range.contains(&batch.position);
        for (i, record) in records.into_iter().enumerate() {
            let offset = batch.base_offset + i as u64;
            let Some(key) = &record.key else { continue };
            let newest = latest.entry(key.clone()).or_insert(offset);
            *newest = (*newest).max(offset);
            if in_range {
                candidates.push((offset, record));
            }
        }
    }
    candidates.retain(|(offset, record)| {
        let key = record
            .key
            .as_ref()
            .expect("only keyed records are candidates");
        latest[key] == *offset && (record.value.is_some() || keep_tombstone(record))
    });
    candidates.sort_by_key(|(offset, _)| *offset);
    Ok(candidates)
}

/// Splits offset-ordered records into runs of consecutive offsets (one journal batch each).
fn consecutive_runs(records: Vec<(u64, Record)>) -> Vec<Vec<(u64, Record)>> {
    let mut runs: Vec<Vec<(u64, Record)>> = Vec::new();
    for (offset, record) in records {
        match runs.last_mut() {
            Some(run) if run.last().is_some_and(|(o, _)| o + 1 == offset) => {
                run.push((offset, record));
            }
            _ => runs.push(vec![(offset, record)]),
        }
    }
    runs
}

/// Decodes the records of one index entry.
fn read_batch(view: &SegmentView, batch: &IndexEntry) -> Result<Vec<Record>, LogError> {
    let body = view
        .read_at(batch.position, batch.len as usize)
        .map_err(|e| LogError::io(format!("read the journal at byte {}", batch.position), e))?;
    decode_records(&Bytes::from(body), batch.count).map_err(|m| LogError::Corrupt {
        file: "journal".into(),
        position: batch.position,
        reason: m.0.to_string(),
    })
}

/// Takes the data directory's lock file, or names the process that holds it.
fn lock_data_dir(data_dir: &Path) -> Result<File, LogError> {
    let path = data_dir.join("LOCK");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| LogError::io(format!("open {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            return Err(LogError::Locked {
                dir: data_dir.display().to_string(),
                owner: if owner.is_empty() {
                    "unknown owner".to_string()
                } else {
                    owner.to_string()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(LogError::io(format!("lock {}", path.display()), e));
        }
    }
    let started = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let note = format!("pid {} since unix time {started}", std::process::id());
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(note.as_bytes()))
        .map_err(|e| LogError::io(format!("write {}", path.display()), e))?;
    Ok(file)
}

impl Log for EmbeddedLog {
    fn create_topic_with_config(
        &self,
        name: &str,
        partitions: u32,
        config: &TopicConfig,
    ) -> Result<bool, LogError> {
        validate_topic_name(name)?;
        validate_partition_count(partitions)?;
        let mut state = self.lock_state();
        if state.tables.topics.contains_key(name) {
            return Ok(false);
        }
        let mut w = PayloadWriter::new();
        w.create_topic(name, partitions, &[]);
        let properties = config.to_properties();
        if !properties.is_empty() {
            w.topic_config(name, &properties);
        }
        self.write(&mut state, w.finish())?;
        Ok(true)
    }

    /// Forgets the topic at once; its records' space is reclaimed as their journal segments
    /// are deleted.
    fn delete_topic(&self, name: &str) -> Result<bool, LogError> {
        let mut state = self.lock_state();
        if !state.tables.topics.contains_key(name) {
            return Ok(false);
        }
        let mut w = PayloadWriter::new();
        w.delete_topic(name);
        self.write(&mut state, w.finish())?;
        drop(state);
        self.notify_append();
        Ok(true)
    }

    fn topic_config(&self, topic: &str) -> Result<Option<TopicConfig>, LogError> {
        let state = self.lock_state();
        if !state.tables.topics.contains_key(topic) {
            return Ok(None);
        }
        Ok(Some(
            state.tables.config(topic).cloned().unwrap_or_default(),
        ))
    }

    fn ensure_topic(&self, name: &str) -> Result<u32, LogError> {
        if let Some(n) = self.partition_count(name)? {
            return Ok(n);
        }
        if !self.config.create_missing_topics {
            return Err(LogError::NotCreated(name.to_string()));
        }
        self.create_topic(name, self.config.default_partitions)?;
        Ok(self.partition_count(name)?.unwrap_or(1))
    }

    fn topics(&self) -> Result<Vec<TopicInfo>, LogError> {
        Ok(self
            .lock_state()
            .tables
            .topics
            .iter()
            .map(|(name, parts)| TopicInfo {
                name: name.clone(),
                partitions: parts.len() as u32,
            })
            .collect())
    }

    fn partition_count(&self, topic: &str) -> Result<Option<u32>, LogError> {
        Ok(self
            .lock_state()
            .tables
            .topics
            .get(topic)
            .map(|parts| parts.len() as u32))
    }

    fn append(&self, topic: &str, partition: u32, records: Vec<Record>) -> Result<u64, LogError> {
        let append = Append {
            topic: topic.to_string(),
            partition,
            records,
        };
        Ok(self.append_entry(std::slice::from_ref(&append), None)?[0])
    }

    fn append_and_commit(
        &self,
        appends: Vec<Append>,
        group: &str,
        offsets: &[CommittedOffset],
    ) -> Result<Vec<u64>, LogError> {
        self.append_entry(&appends, Some((group, offsets)))
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_records: usize,
    ) -> Result<Fetched, LogError> {
        let (entries, view, end_offset) = {
            let state = self.lock_state();
            let part = state.tables.partition(topic, partition)?;
            let end_offset = part.next_offset;
            let first = part
                .batches
                .partition_point(|b| b.base_offset + u64::from(b.count) <= offset);
            let mut wanted = 0usize;
            let mut entries = Vec::new();
            for batch in part.batches.range(first..) {
                if wanted >= max_records {
                    break;
                }
                let skip = offset.saturating_sub(batch.base_offset) as usize;
                wanted += batch.count as usize - skip.min(batch.count as usize);
                entries.push(*batch);
            }
            (entries, state.journal.view(), end_offset)
        };
        let mut records = Vec::with_capacity(max_records.min(4096));
        'batches: for batch in entries {
            for (i, record) in read_batch(&view, &batch)?.into_iter().enumerate() {
                let record_offset = batch.base_offset + i as u64;
                if record_offset < offset {
                    continue;
                }
                if records.len() >= max_records {
                    break 'batches;
                }
                records.push(StoredRecord {
                    partition,
                    offset: record_offset,
                    record,
                });
            }
        }
        // Past the last record returned; with none, past what is gone up to the end.
        let next_offset = match records.last() {
            Some(last) => last.offset + 1,
            None if max_records == 0 => offset,
            None => offset.max(end_offset),
        };
        Ok(Fetched {
            records,
            next_offset,
            end_offset,
        })
    }

    fn offset_range(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError> {
        let state = self.lock_state();
        let part = state.tables.partition(topic, partition)?;
        Ok((part.start_offset(), part.next_offset))
    }

    fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, LogError> {
        Ok(self
            .lock_state()
            .tables
            .committed
            .get(&(group.to_string(), topic.to_string(), partition))
            .map(|(offset, _)| *offset))
    }

    fn committed_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<String>, LogError> {
        Ok(self
            .lock_state()
            .tables
            .committed
            .get(&(group.to_string(), topic.to_string(), partition))
            .map(|(_, metadata)| metadata.clone()))
    }

    fn commit(&self, group: &str, offsets: &[CommittedOffset]) -> Result<(), LogError> {
        self.append_entry(&[], Some((group, offsets))).map(|_| ())
    }

    fn append_generation(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait_for_append(&self, generation: u64, timeout: Duration) {
        let guard = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .appended
            .wait_timeout_while(guard, timeout, |current| *current == generation);
    }

    fn wake_waiters(&self) {
        self.notify_append();
    }
}

//! Tasks as Kafka Streams plans them: sources whose operators connect form a group (a
//! sub-topology), and each group runs as one task per partition number. A task reads that
//! partition of every topic in its group, so the two sides of a merge (and later of a join, with
//! its stores) meet in one task.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Instant, SystemTime};

use millrace_ksml::model::OffsetReset;
use millrace_log::{KeyPartitioner, Log, LogError, StoredRecord};
use millrace_stores::StateDir;

use crate::assignment::TaskKey;
use crate::process::Emitted;
use crate::runner::RunError;
use crate::suppress::HeldKeys;
use crate::task_stores::{StoreId, TaskStores, open_stores};
use crate::topology::{NodeId, Topology};

/// Records read per input partition in one batch: large enough to amortize the lock and the
/// commit.
pub const BATCH_RECORDS: usize = 1000;

/// One input partition of a task.
pub struct TaskInput {
    /// Index of the source in [`Topology::sources`].
    pub source: usize,
    pub partition: u32,
    /// The offset of the next record to read.
    pub position: u64,
    /// The offset committed last; shared with the supervisor, which watches for the end of
    /// every input.
    pub committed: Arc<AtomicU64>,
    /// `topic 'T' partition P`, where slow Python calls are reported.
    pub place: Arc<str>,
    /// The highest record timestamp processed from this partition (Kafka Streams' partition
    /// time), `-1` before the first; timestamp extractors receive it as `previousTimestamp`.
    pub partition_time: i64,
}

/// A task: one partition number of one source group, with the state kept between batches.
pub struct Task {
    /// Kafka Streams' task id, `<group>_<partition>`, for messages and store names.
    pub id: String,
    pub key: TaskKey,
    /// The partition number: of its inputs, and of its stores' changelogs.
    pub partition: u32,
    pub inputs: Vec<TaskInput>,
    pub state: TaskState,
    /// The group's stores, restored before the first record.
    pub stores: TaskStores,
    /// What was processed since the last commit.
    pub pending: Pending,
}

/// Results a task holds until it commits.
#[derive(Default)]
pub struct Pending {
    pub outputs: Vec<Emitted>,
    /// Records processed.
    pub records: u64,
    /// Records dropped as late, and records whose processing failed: counted once committed,
    /// so that a batch processed again after a refused commit is not counted twice.
    pub late: u64,
    pub failed: u64,
    /// When the first record after the last commit was processed.
    pub since: Option<Instant>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.since.is_none()
    }
}

/// Per-task state kept between batches.
#[derive(Default)]
pub struct TaskState {
    pub keyless: KeyPartitioner,
    pub partition_counts: HashMap<Arc<str>, u32>,
    /// The last topic looked up: most records go where the one before went.
    pub last_topic: Option<(Arc<str>, u32)>,
    /// Per window store, the horizon of its last scan for expired windows.
    pub windows_scanned: HashMap<StoreId, i64>,
    /// Per suppress node, the keys it holds back.
    pub held: HashMap<NodeId, HeldKeys>,
    /// Tells apart records of one key and time kept in window stores (stream joins, sliding
    /// windows), as Kafka Streams' sequence numbers for stores retaining duplicates.
    pub record_sequence: u32,
}

/// How a source group's tasks are laid out. A group's topics may differ in partition count
/// (a merge of a 1- and a 3-partition topic): it gets as many tasks as its largest topic has
/// partitions, and each task reads the topics that have its partition.
pub struct GroupPlan {
    /// Its sources (indexes in [`Topology::sources`]) with their partition counts.
    pub sources: Vec<(usize, u32)>,
    pub stores: Vec<StoreId>,
    pub task_count: u32,
    /// The source topic with the most partitions (the first of those): the group assigns
    /// its partitions, and partition `p` stands for task `p`.
    pub leading_topic: String,
}

/// The task layout of every source group; missing source topics are created.
pub fn plan_groups(topology: &Topology, log: &dyn Log) -> Result<Vec<GroupPlan>, RunError> {
    let mut plans = Vec::new();
    for source_group in topology.source_groups() {
        let mut sources = Vec::with_capacity(source_group.sources.len());
        for &source in &source_group.sources {
            sources.push((source, log.ensure_topic(&topology.sources[source].topic)?));
        }
        let (leading, task_count) =
            sources.iter().fold(
                (0, 0),
                |best, &(source, n)| if n > best.1 { (source, n) } else { best },
            );
        plans.push(GroupPlan {
            sources,
            stores: source_group.stores,
            task_count,
            leading_topic: topology.sources[leading].topic.clone(),
        });
    }
    Ok(plans)
}

/// Starts a task: its inputs start at the committed offset, or where the source's
/// offsetResetPolicy says; its stores are restored from their changelogs.
pub fn plan_task(
    topology: &Topology,
    log: &dyn Log,
    group: &str,
    state: Option<&StateDir>,
    plans: &[GroupPlan],
    key: TaskKey,
) -> Result<Task, RunError> {
    let plan = &plans[key.group];
    let partition = key.partition;
    let mut inputs = Vec::new();
    for &(source, partitions) in &plan.sources {
        if partition >= partitions {
            continue;
        }
        let src = &topology.sources[source];
        let position = match log.committed(group, &src.topic, partition)? {
            Some(offset) => offset,
            None => start_offset(log, &src.topic, partition, src.offset_reset)?,
        };
        let metadata = log.committed_metadata(group, &src.topic, partition)?;
        inputs.push(TaskInput {
            source,
            partition,
            place: format!("topic '{}' partition {partition}", src.topic).into(),
            position,
            committed: Arc::new(AtomicU64::new(position)),
            partition_time: metadata
                .as_deref()
                .and_then(parse_partition_time)
                .unwrap_or(-1),
        });
    }
    let id = format!("{}_{partition}", key.group);
    let stores = open_stores(
        &topology.stores,
        &plan.stores,
        &id,
        partition,
        plan.task_count,
        log,
        state,
    )
    .map_err(RunError::Store)?;
    Ok(Task {
        id,
        key,
        partition,
        inputs,
        state: TaskState::default(),
        stores,
        pending: Pending::default(),
    })
}

/// Where a partition with no committed offset starts.
fn start_offset(
    log: &dyn Log,
    topic: &str,
    partition: u32,
    reset: OffsetReset,
) -> Result<u64, RunError> {
    let (start, end) = log.offset_range(topic, partition)?;
    Ok(match reset {
        OffsetReset::Earliest => start,
        OffsetReset::Latest => end,
        OffsetReset::None => {
            return Err(RunError::NoOffset {
                topic: topic.to_string(),
                partition,
            });
        }
        OffsetReset::ByDuration(age) => {
            let since = SystemTime::now()
                .checked_sub(age)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            let mut offset = start;
            loop {
                let generation = log.append_generation();
                let fetched = log.read(topic, partition, offset, BATCH_RECORDS)?;
                match fetched.records.iter().find(|r| r.record.timestamp >= since) {
                    Some(found) => break found.offset,
                    None if fetched.records.is_empty() && fetched.caught_up() => break end,
                    // A Kafka reader's first records are still on their way.
                    None if fetched.records.is_empty() => {
                        log.wait_for_append(generation, crate::task_stores::RECORDS_WAIT);
                    }
                    None => offset = fetched.next_offset,
                }
            }
        }
    })
}

/// A batch of a task's records, tagged with the index of the input each came from.
pub struct TaskBatch {
    pub records: Vec<(usize, StoredRecord)>,
    /// Some input is not caught up: more records are waiting in the log.
    pub more_waiting: bool,
    /// Inputs whose read found no record but moved past offsets that hold none (Kafka's
    /// transaction markers): (input, where the next read continues).
    pub skipped: Vec<(usize, u64)>,
}

/// Reads the next batch of every input of a task and orders it the way Kafka Streams picks
/// records: always the input whose next record has the lowest timestamp (ties: the earlier
/// input). Merging stops when an input that filled its batch runs out, since its next records
/// (still in the log) may be older than what the other inputs hold; those are read again
/// next time.
pub fn read_in_time_order(
    log: &dyn Log,
    topology: &Topology,
    task: &Task,
) -> Result<TaskBatch, LogError> {
    let mut queues = Vec::with_capacity(task.inputs.len());
    let mut skipped = Vec::new();
    for (index, input) in task.inputs.iter().enumerate() {
        let topic = &topology.sources[input.source].topic;
        let fetched = log.read(topic, input.partition, input.position, BATCH_RECORDS)?;
        if fetched.records.is_empty() && fetched.next_offset > input.position {
            skipped.push((index, fetched.next_offset));
        }
        let more = !fetched.caught_up();
        queues.push((fetched.records.into_iter().peekable(), more));
    }
    let more_waiting = queues.iter().any(|(_, more)| *more);
    let records = merge_by_time(queues);
    Ok(TaskBatch {
        records,
        more_waiting,
        skipped,
    })
}

type Queue = std::iter::Peekable<std::vec::IntoIter<StoredRecord>>;

/// Merges the inputs' queues lowest timestamp first (see [`read_in_time_order`]); each queue
/// says whether its input has more records in the log than it holds.
fn merge_by_time(mut queues: Vec<(Queue, bool)>) -> Vec<(usize, StoredRecord)> {
    if let [(queue, _)] = queues.as_mut_slice() {
        return queue.map(|r| (0, r)).collect();
    }
    let mut merged = Vec::new();
    loop {
        let mut next: Option<(usize, i64)> = None;
        for (index, (queue, more)) in queues.iter_mut().enumerate() {
            match queue.peek() {
                Some(r) if next.is_none_or(|(_, t)| r.record.timestamp < t) => {
                    next = Some((index, r.record.timestamp));
                }
                Some(_) => {}
                None if *more => return merged,
                None => {}
            }
        }
        let Some((index, _)) = next else {
            return merged;
        };
        let record = queues[index].0.next().expect("peeked");
        merged.push((index, record));
    }
}

/// The commit metadata that keeps an input's partition time (the highest timestamp read from
/// it) across restarts, as Kafka Streams keeps it with committed offsets; empty before any.
pub fn partition_time_metadata(partition_time: i64) -> String {
    match partition_time {
        time if time < 0 => String::new(),
        time => format!("partitionTime={time}"),
    }
}

/// The partition time kept by [`partition_time_metadata`].
fn parse_partition_time(metadata: &str) -> Option<i64> {
    metadata.strip_prefix("partitionTime=")?.parse().ok()
}

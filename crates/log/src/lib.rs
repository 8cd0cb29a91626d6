//! Topics: the [`Log`] interface every pipeline, producer and test reaches topics through, and
//! [`EmbeddedLog`], the crash-safe file-backed implementation used when no Kafka is configured.

mod embedded;
mod encoding;
pub mod fuzz;
mod group;
mod journal;
mod partitioner;
mod topic_config;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use embedded::{EmbeddedLog, EmbeddedLogConfig};
pub use group::{GroupMembership, RebalanceListener, SoleMember, TopicPartition};
pub use partitioner::{KeyPartitioner, murmur2_partition};
pub use topic_config::{CleanupPolicy, TOPIC_CONFIG_NAMES, TopicConfig};

/// A record header: a name and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// A record as producers send it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub headers: Vec<Header>,
}

/// A record read back from a partition, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub partition: u32,
    pub offset: u64,
    pub record: Record,
}

/// What a read of one partition returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fetched {
    pub records: Vec<StoredRecord>,
    /// Where the next read continues: after the records returned, and past offsets that hold
    /// no record (compacted away, or Kafka's transaction markers). Not always the last
    /// record's offset plus one.
    pub next_offset: u64,
    /// The partition's end as of this read (the offset the next append gets; on Kafka, what a
    /// read-committed consumer may read up to): a reader at or past it is caught up.
    pub end_offset: u64,
}

impl Fetched {
    /// True when the reader has read all there was.
    pub fn caught_up(&self) -> bool {
        self.next_offset >= self.end_offset
    }
}

/// A topic's name and partition count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: u32,
}

/// Records to append to one partition.
#[derive(Debug, Clone)]
pub struct Append {
    pub topic: String,
    pub partition: u32,
    pub records: Vec<Record>,
}

/// A consumer group's position in one partition: the offset of the next record to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// Kept with the offset, as Kafka's offset commit metadata (empty for none): Kafka
    /// Streams keeps a partition's stream time there.
    pub metadata: String,
}

/// Errors from a log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    /// A topic was needed but does not exist, and creating missing topics is off.
    #[error(
        "topic '{0}' does not exist, and auto.create.topics.enable is false: create it first \
         (millrace topic create)"
    )]
    NotCreated(String),
    #[error("topic '{topic}' has no partition {partition} (it has {partitions})")]
    UnknownPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error("invalid topic name '{0}': use letters, digits, '.', '_' and '-' (at most 249)")]
    InvalidTopicName(String),
    #[error("a topic has 1 to {MAX_PARTITIONS} partitions, not {0}")]
    InvalidPartitionCount(i64),
    #[error(
        "data directory {dir} is in use by another millrace process ({owner}); stop it or reach it through its server with --url"
    )]
    Locked { dir: String, owner: String },
    #[error("topic '{0}' is compacted: every record needs a key")]
    KeylessRecord(String),
    /// The broker answered a topic's configs with none at all (Kafka lists every config; some
    /// Kafka-protocol brokers list none), so its settings are unknown.
    #[error("the broker reports no configs for topic '{0}', so its settings are unknown")]
    ConfigsNotReported(String),
    /// A Kafka broker (or the client reaching it) refused or failed an operation.
    #[error("Kafka: {operation}: {message}")]
    Broker { operation: String, message: String },
    /// The Kafka cluster did not answer in time (a broker down or unreachable, a partition
    /// without a leader): the operation may succeed if tried again later.
    #[error("Kafka: {operation}: {message} (the cluster did not answer)")]
    Unavailable { operation: String, message: String },
    /// The group refused a commit from this process: it is no longer the member that owns
    /// the partitions (a rebalance moved them, or it timed out). Its uncommitted work is
    /// redone by the owner.
    #[error("group '{group}' refused the commit: {message}")]
    NotGroupMember { group: String, message: String },
    /// A Kafka transaction was aborted: nothing it held was written or committed, so the
    /// caller redoes its work.
    #[error("Kafka transaction aborted ({reason}): nothing of it was written")]
    TransactionAborted { reason: String },
    #[error("journal file {file} is corrupt at byte {position}: {reason}")]
    Corrupt {
        file: String,
        position: u64,
        reason: String,
    },
}

impl LogError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> LogError {
        LogError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Topics with partitions, appends, reads and consumer-group offsets. The embedded log and the
/// Kafka adapter both implement it, so everything above runs unchanged on either.
pub trait Log: Send + Sync {
    /// Creates a topic with default settings; returns false when it already existed (its
    /// partition count and settings are kept).
    fn create_topic(&self, name: &str, partitions: u32) -> Result<bool, LogError> {
        self.create_topic_with_config(name, partitions, &TopicConfig::default())
    }

    /// Creates a topic with settings; returns false when it already existed (its partition
    /// count and settings are kept).
    fn create_topic_with_config(
        &self,
        name: &str,
        partitions: u32,
        config: &TopicConfig,
    ) -> Result<bool, LogError>;

    /// Deletes a topic with its records and the offsets groups committed for it; returns
    /// false when there was no such topic.
    fn delete_topic(&self, name: &str) -> Result<bool, LogError>;

    /// A topic's settings, or None when it does not exist.
    fn topic_config(&self, topic: &str) -> Result<Option<TopicConfig>, LogError>;

    /// The partition count of a topic, creating it with the default count when it is missing
    /// (Kafka's auto-creation).
    fn ensure_topic(&self, name: &str) -> Result<u32, LogError>;

    /// All topics, by name.
    fn topics(&self) -> Result<Vec<TopicInfo>, LogError>;

    /// The partition count of a topic, or None when it does not exist.
    fn partition_count(&self, topic: &str) -> Result<Option<u32>, LogError>;

    /// Appends records to one partition, returning the offset of the first. Once it returns,
    /// the records survive a crash of the process.
    fn append(&self, topic: &str, partition: u32, records: Vec<Record>) -> Result<u64, LogError>;

    /// Appends records to several partitions and commits a group's offsets, all or nothing.
    /// Returns the offset of each append's first record.
    fn append_and_commit(
        &self,
        appends: Vec<Append>,
        group: &str,
        offsets: &[CommittedOffset],
    ) -> Result<Vec<u64>, LogError>;

    /// Reads up to `max_records` records of a partition starting at `offset` (records before
    /// the partition's start are gone; reading continues at the start), with where the next
    /// read continues.
    fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_records: usize,
    ) -> Result<Fetched, LogError>;

    /// The first retained offset and the offset the next append will get.
    fn offset_range(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError>;

    /// The offset a group committed for a partition, if any.
    fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, LogError>;

    /// The metadata a group committed with its offset for a partition, if any.
    fn committed_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<String>, LogError>;

    /// Commits a group's offsets.
    fn commit(&self, group: &str, offsets: &[CommittedOffset]) -> Result<(), LogError>;

    /// A counter that changes on every append (and on [`Log::wake_waiters`]); pass it to
    /// [`Log::wait_for_append`].
    fn append_generation(&self) -> u64;

    /// Blocks until an append happens after `generation` was read, or `timeout` passes.
    fn wait_for_append(&self, generation: u64, timeout: Duration);

    /// Ends every [`Log::wait_for_append`] in progress as an append would (the generation
    /// changes): a stopping reader calls it so that its threads need not wait out their
    /// timeouts.
    fn wake_waiters(&self);

    /// Joins `group` to share the partitions of `topics` with its other members; the
    /// listener hears which are this member's. Commits of the group from this process go
    /// through the membership while it lasts. By default the log has one process, whose
    /// member owns every partition.
    fn join_group(
        &self,
        group: &str,
        topics: &[String],
        listener: Arc<dyn RebalanceListener>,
    ) -> Result<Box<dyn GroupMembership>, LogError> {
        let _ = group;
        let mut partitions = Vec::new();
        for topic in topics {
            let count = self
                .partition_count(topic)?
                .ok_or_else(|| LogError::UnknownTopic(topic.clone()))?;
            partitions.extend((0..count).map(|partition| TopicPartition {
                topic: topic.clone(),
                partition,
            }));
        }
        Ok(Box::new(SoleMember::new(partitions, listener)))
    }

    /// Says a partition will not be read for a while (it moved to another member), so that
    /// nothing is fetched ahead for it. Reading it again later is allowed.
    fn stop_reading(&self, topic: &str, partition: u32) {
        let _ = (topic, partition);
    }
}

/// The most partitions a topic may have: each costs memory for as long as the log lives.
pub const MAX_PARTITIONS: u32 = 10_000;

/// Checks a topic's partition count against [`MAX_PARTITIONS`].
pub fn validate_partition_count(partitions: u32) -> Result<(), LogError> {
    if (1..=MAX_PARTITIONS).contains(&partitions) {
        Ok(())
    } else {
        Err(LogError::InvalidPartitionCount(partitions.into()))
    }
}

/// Checks a topic name the way Kafka does.
pub fn validate_topic_name(name: &str) -> Result<(), LogError> {
    let valid = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(LogError::InvalidTopicName(name.to_string()))
    }
}

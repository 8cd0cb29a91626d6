//! The metadata store: published segments (with their used flag), each datasource's stream
//! offsets, supervisors and tasks. [`Catalog`] is the interface; [`SqliteCatalog`] keeps it in
//! an SQLite file in the data directory (a PostgreSQL implementation can follow for
//! distributed deployments).
//!
//! Publishing segments and advancing a datasource's offsets happen in one transaction that
//! first checks the offsets the task started from: that is what makes streaming ingestion
//! exactly-once across failures and restarts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

mod segment;

pub use segment::{LoadSpec, SegmentDescriptor, ShardSpec};

/// Errors of the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("metadata database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("stored metadata is not valid JSON: {0}")]
    Payload(#[from] serde_json::Error),
}

/// A published segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// `<datasource>_<start>_<end>_<version>[_<partition>]`.
    pub id: String,
    pub datasource: String,
    /// The time chunk, epoch milliseconds, end exclusive.
    pub start: i64,
    pub end: i64,
    pub version: String,
    pub partition_num: u32,
    pub used: bool,
    /// Everything Druid reports of the segment (shard spec, dimensions, metrics, size, rows,
    /// file), kept in the catalog as its JSON.
    pub descriptor: SegmentDescriptor,
}

impl SegmentRecord {
    /// The used record of a segment: its id, datasource, version and partition number are
    /// the descriptor's, so that they cannot disagree; `start`/`end` is its interval.
    pub fn of(descriptor: SegmentDescriptor, (start, end): (i64, i64)) -> SegmentRecord {
        SegmentRecord {
            id: descriptor.identifier.clone(),
            datasource: descriptor.data_source.clone(),
            start,
            end,
            version: descriptor.version.clone(),
            partition_num: descriptor.shard_spec.partition_num(),
            used: true,
            descriptor,
        }
    }
}

/// A partition of a topic. Written `topic:partition`, as Druid writes partitions of
/// multi-topic (topicPattern) streams.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.topic, self.partition)
    }
}

impl std::str::FromStr for TopicPartition {
    type Err = String;

    /// `topic:partition` (topic names may hold ':' themselves; the last one separates).
    fn from_str(text: &str) -> Result<TopicPartition, String> {
        let (topic, partition) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("'{text}' is not topic:partition"))?;
        let partition = partition
            .parse()
            .map_err(|_| format!("'{text}' is not topic:partition"))?;
        Ok(TopicPartition::new(topic, partition))
    }
}

impl Serialize for TopicPartition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TopicPartition {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The offset of the next record, per partition.
pub type PartitionOffsets = BTreeMap<TopicPartition, u64>;

/// A datasource's committed position in its stream (a topic, or the topicPattern whose
/// topics it reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOffsets {
    pub stream: String,
    pub partitions: PartitionOffsets,
}

/// What a publish asks to move: from the offsets a task started at to where it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAdvance {
    pub stream: String,
    pub start: PartitionOffsets,
    pub end: PartitionOffsets,
}

/// How a publish went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    Published,
    /// The stored offsets are not where the task started (another task published first, or
    /// offsets were reset): nothing was written.
    OffsetsMoved {
        stored: StreamOffsets,
    },
}

/// What a replacing publish (compaction) expects of the catalog and changes in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    /// The new segments (a newer version that overshadows the replaced ones).
    pub segments: Vec<SegmentRecord>,
    /// The time chunks the replacement covers, `[start, end)`.
    pub intervals: Vec<(i64, i64)>,
    /// The ids of exactly the used segments overlapping `intervals` now; the publish is
    /// refused when the catalog has others, or lacks some.
    pub expected_used: Vec<String>,
    /// Segments marked unused in the same transaction (replaced ones left with no rows).
    pub retire: Vec<String>,
}

/// How a replacing publish went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaceOutcome {
    Published,
    /// The used segments of the intervals changed since they were read: nothing was
    /// written.
    Changed {
        appeared: Vec<String>,
        gone: Vec<String>,
    },
}

/// A supervisor as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorRecord {
    pub id: String,
    pub spec: serde_json::Value,
    pub suspended: bool,
    pub created: i64,
}

/// What a task does: Druid's task `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Reads a stream for a supervisor and publishes segments.
    IndexKafka,
    /// Deletes unused segments of an interval, with their files.
    Kill,
    /// Rewrites the segments of an interval as a newer version.
    Compact,
}

impl TaskKind {
    /// The name Druid gives it (`index_kafka`, `kill`, `compact`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::IndexKafka => "index_kafka",
            TaskKind::Kill => "kill",
            TaskKind::Compact => "compact",
        }
    }

    pub fn parse(name: &str) -> Option<TaskKind> {
        [TaskKind::IndexKafka, TaskKind::Kill, TaskKind::Compact]
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// Where a task is: Druid's task status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Running,
    Success,
    Failed,
}

impl TaskStatus {
    /// The code Druid shows (`RUNNING`, `SUCCESS`, `FAILED`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Running => "RUNNING",
            TaskStatus::Success => "SUCCESS",
            TaskStatus::Failed => "FAILED",
        }
    }

    pub fn parse(code: &str) -> Option<TaskStatus> {
        [TaskStatus::Running, TaskStatus::Success, TaskStatus::Failed]
            .into_iter()
            .find(|status| status.as_str() == code)
    }
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: String,
    pub datasource: String,
    pub kind: TaskKind,
    pub status: TaskStatus,
    pub created: i64,
    /// Task details (group, duration, error, reports), as JSON.
    pub payload: serde_json::Value,
}

/// The metadata store's operations.
pub trait Catalog: Send + Sync {
    /// Writes segments, and with `advance` moves the datasource's offsets from `start` to
    /// `end`, all in one transaction; refuses (writing nothing) when the stored offsets of the
    /// advanced partitions are not `start`.
    fn publish(
        &self,
        datasource: &str,
        segments: &[SegmentRecord],
        advance: Option<&OffsetAdvance>,
    ) -> Result<PublishOutcome, CatalogError>;

    /// Publishes a replacement in one transaction, after checking that the used segments of
    /// its intervals are the ones it expects.
    fn replace(
        &self,
        datasource: &str,
        replacement: &Replacement,
    ) -> Result<ReplaceOutcome, CatalogError>;

    /// Segments of a datasource (all, or only used ones).
    fn segments(
        &self,
        datasource: &str,
        used_only: bool,
    ) -> Result<Vec<SegmentRecord>, CatalogError>;

    /// Datasources that have used segments.
    fn datasources(&self) -> Result<Vec<String>, CatalogError>;

    /// Marks segments unused (all of a datasource, those overlapping `interval`, or by id);
    /// returns how many changed.
    fn mark_unused(
        &self,
        datasource: &str,
        selection: &SegmentSelection,
    ) -> Result<usize, CatalogError>;

    /// Marks segments used again; returns how many changed.
    fn mark_used(
        &self,
        datasource: &str,
        selection: &SegmentSelection,
    ) -> Result<usize, CatalogError>;

    /// Deletes unused segments in an interval (a kill task); returns them.
    fn delete_unused(
        &self,
        datasource: &str,
        interval: (i64, i64),
    ) -> Result<Vec<SegmentRecord>, CatalogError>;

    fn offsets(&self, datasource: &str) -> Result<Option<StreamOffsets>, CatalogError>;

    /// Replaces (None: clears) a datasource's offsets.
    fn set_offsets(
        &self,
        datasource: &str,
        offsets: Option<&StreamOffsets>,
    ) -> Result<(), CatalogError>;

    fn put_supervisor(&self, supervisor: &SupervisorRecord) -> Result<(), CatalogError>;
    fn supervisors(&self) -> Result<Vec<SupervisorRecord>, CatalogError>;
    fn delete_supervisor(&self, id: &str) -> Result<bool, CatalogError>;

    fn put_task(&self, task: &TaskRecord) -> Result<(), CatalogError>;
    fn tasks(&self) -> Result<Vec<TaskRecord>, CatalogError>;
    fn task(&self, id: &str) -> Result<Option<TaskRecord>, CatalogError>;

    /// A configuration document kept by name (Druid's `druid_config` table), if set.
    fn setting(&self, name: &str) -> Result<Option<serde_json::Value>, CatalogError>;
    fn put_setting(&self, name: &str, value: &serde_json::Value) -> Result<(), CatalogError>;
}

/// Which segments a mark or kill applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentSelection {
    All,
    /// Segments overlapping `[start, end)`.
    Interval(i64, i64),
    Ids(Vec<String>),
}

/// The catalog in an SQLite database file.
pub struct SqliteCatalog {
    connection: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS segments (
    id TEXT PRIMARY KEY,
    datasource TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    version TEXT NOT NULL,
    partition_num INTEGER NOT NULL,
    used INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_by_datasource ON segments (datasource, used, start_ms);
CREATE TABLE IF NOT EXISTS datasource_offsets (
    datasource TEXT PRIMARY KEY,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS supervisors (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    suspended INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    datasource TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    payload TEXT NOT NULL
);
";

impl SqliteCatalog {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteCatalog, CatalogError> {
        let connection = Connection::open(path)?;
        // WAL: readers do not block the writer; NORMAL sync is durable across process crashes.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.execute_batch(SCHEMA)?;
        Ok(SqliteCatalog {
            connection: Mutex::new(connection),
        })
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A stored value that does not read back as what it should be: `what` names the row and
/// the value.
fn unreadable(column: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, what.into())
}

fn segment_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SegmentRecord> {
    let id: String = row.get(0)?;
    let payload: String = row.get(7)?;
    let descriptor = serde_json::from_str(&payload)
        .map_err(|e| unreadable(7, format!("segment '{id}': its descriptor: {e}")))?;
    Ok(SegmentRecord {
        id,
        datasource: row.get(1)?,
        start: row.get(2)?,
        end: row.get(3)?,
        version: row.get(4)?,
        partition_num: row.get(5)?,
        used: row.get::<_, i64>(6)? != 0,
        descriptor,
    })
}

/// Writes a segment's row (replacing one of the same id).
fn insert_segment(
    tx: &rusqlite::Transaction<'_>,
    segment: &SegmentRecord,
) -> Result<(), CatalogError> {
    tx.execute(
        &format!("INSERT OR REPLACE INTO segments ({SEGMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![
            segment.id,
            segment.datasource,
            segment.start,
            segment.end,
            segment.version,
            segment.partition_num,
            i32::from(segment.used),
            serde_json::to_string(&segment.descriptor)?
        ],
    )?;
    Ok(())
}

const SEGMENT_COLUMNS: &str =
    "id, datasource, start_ms, end_ms, version, partition_num, used, payload";

/// The SQL condition and parameters of a selection (after `datasource = ?1`).
fn selection_sql(selection: &SegmentSelection) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    match selection {
        SegmentSelection::All => (String::new(), vec![]),
        SegmentSelection::Interval(start, end) => (
            " AND start_ms < ?2 AND end_ms > ?3".into(),
            vec![Value::Integer(*end), Value::Integer(*start)],
        ),
        SegmentSelection::Ids(ids) => {
            let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("?{}", i + 2)).collect();
            (
                format!(
                    " AND id IN ({})",
                    if ids.is_empty() {
                        "NULL".into()
                    } else {
                        placeholders.join(",")
                    }
                ),
                ids.iter().map(|id| Value::Text(id.clone())).collect(),
            )
        }
    }
}

impl SqliteCatalog {
    fn set_used(
        &self,
        datasource: &str,
        selection: &SegmentSelection,
        used: bool,
    ) -> Result<usize, CatalogError> {
        let (condition, extra) = selection_sql(selection);
        let mut values = vec![rusqlite::types::Value::Text(datasource.to_string())];
        values.extend(extra);
        let sql = format!(
            "UPDATE segments SET used = {} WHERE datasource = ?1 AND used = {}{condition}",
            i32::from(used),
            i32::from(!used)
        );
        Ok(self
            .connection()
            .execute(&sql, rusqlite::params_from_iter(values))?)
    }
}

impl Catalog for SqliteCatalog {
    fn publish(
        &self,
        datasource: &str,
        segments: &[SegmentRecord],
        advance: Option<&OffsetAdvance>,
    ) -> Result<PublishOutcome, CatalogError> {
        let mut connection = self.connection();
        // IMMEDIATE: take the write lock before reading the offsets we check.
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(advance) = advance {
            let stored: Option<String> = tx
                .query_row(
                    "SELECT payload FROM datasource_offsets WHERE datasource = ?1",
                    params![datasource],
                    |row| row.get(0),
                )
                .optional()?;
            let mut stored: StreamOffsets = match stored {
                Some(text) => serde_json::from_str(&text)?,
                None => StreamOffsets {
                    stream: advance.stream.clone(),
                    partitions: BTreeMap::new(),
                },
            };
            // A partition the datasource has no offset for yet may start anywhere.
            let matches = stored.stream == advance.stream
                && advance
                    .start
                    .iter()
                    .all(|(p, start)| stored.partitions.get(p).is_none_or(|s| s == start));
            if !matches {
                return Ok(PublishOutcome::OffsetsMoved { stored });
            }
            stored
                .partitions
                .extend(advance.end.iter().map(|(p, o)| (p.clone(), *o)));
            tx.execute(
                "INSERT INTO datasource_offsets (datasource, payload) VALUES (?1, ?2)
                 ON CONFLICT (datasource) DO UPDATE SET payload = excluded.payload",
                params![datasource, serde_json::to_string(&stored)?],
            )?;
        }
        for segment in segments {
            insert_segment(&tx, segment)?;
        }
        tx.commit()?;
        Ok(PublishOutcome::Published)
    }

    fn replace(
        &self,
        datasource: &str,
        replacement: &Replacement,
    ) -> Result<ReplaceOutcome, CatalogError> {
        let mut connection = self.connection();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut used = std::collections::BTreeSet::new();
        {
            let mut statement = tx.prepare_cached(
                "SELECT id FROM segments WHERE datasource = ?1 AND used = 1 AND start_ms < ?2 AND end_ms > ?3",
            )?;
            for (start, end) in &replacement.intervals {
                let ids = statement.query_map(params![datasource, end, start], |row| {
                    row.get::<_, String>(0)
                })?;
                for id in ids {
                    used.insert(id?);
                }
            }
        }
        let expected: std::collections::BTreeSet<String> =
            replacement.expected_used.iter().cloned().collect();
        if used != expected {
            return Ok(ReplaceOutcome::Changed {
                appeared: used.difference(&expected).cloned().collect(),
                gone: expected.difference(&used).cloned().collect(),
            });
        }
        for segment in &replacement.segments {
            insert_segment(&tx, segment)?;
        }
        for id in &replacement.retire {
            tx.execute(
                "UPDATE segments SET used = 0 WHERE datasource = ?1 AND id = ?2",
                params![datasource, id],
            )?;
        }
        tx.commit()?;
        Ok(ReplaceOutcome::Published)
    }

    fn segments(
        &self,
        datasource: &str,
        used_only: bool,
    ) -> Result<Vec<SegmentRecord>, CatalogError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments WHERE datasource = ?1 AND (used = 1 OR ?2 = 0)
             ORDER BY start_ms, version, partition_num"
        ))?;
        let rows = statement
            .query_map(params![datasource, i32::from(used_only)], segment_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn datasources(&self) -> Result<Vec<String>, CatalogError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "SELECT DISTINCT datasource FROM segments WHERE used = 1 ORDER BY datasource",
        )?;
        let names = statement
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    }

    fn mark_unused(
        &self,
        datasource: &str,
        selection: &SegmentSelection,
    ) -> Result<usize, CatalogError> {
        self.set_used(datasource, selection, false)
    }

    fn mark_used(
        &self,
        datasource: &str,
        selection: &SegmentSelection,
    ) -> Result<usize, CatalogError> {
        self.set_used(datasource, selection, true)
    }

    fn delete_unused(
        &self,
        datasource: &str,
        interval: (i64, i64),
    ) -> Result<Vec<SegmentRecord>, CatalogError> {
        let mut connection = self.connection();
        let tx = connection.transaction()?;
        let rows = {
            let mut statement = tx.prepare(&format!(
                "SELECT {SEGMENT_COLUMNS} FROM segments
                 WHERE datasource = ?1 AND used = 0 AND start_ms >= ?2 AND end_ms <= ?3"
            ))?;
            statement
                .query_map(
                    params![datasource, interval.0, interval.1],
                    segment_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        tx.execute(
            "DELETE FROM segments WHERE datasource = ?1 AND used = 0 AND start_ms >= ?2 AND end_ms <= ?3",
            params![datasource, interval.0, interval.1],
        )?;
        tx.commit()?;
        Ok(rows)
    }

    fn offsets(&self, datasource: &str) -> Result<Option<StreamOffsets>, CatalogError> {
        let text: Option<String> = self
            .connection()
            .query_row(
                "SELECT payload FROM datasource_offsets WHERE datasource = ?1",
                params![datasource],
                |row| row.get(0),
            )
            .optional()?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    fn set_offsets(
        &self,
        datasource: &str,
        offsets: Option<&StreamOffsets>,
    ) -> Result<(), CatalogError> {
        let connection = self.connection();
        match offsets {
            None => connection.execute(
                "DELETE FROM datasource_offsets WHERE datasource = ?1",
                params![datasource],
            )?,
            Some(offsets) => connection.execute(
                "INSERT INTO datasource_offsets (datasource, payload) VALUES (?1, ?2)
                 ON CONFLICT (datasource) DO UPDATE SET payload = excluded.payload",
                params![datasource, serde_json::to_string(offsets)?],
            )?,
        };
        Ok(())
    }

    fn put_supervisor(&self, supervisor: &SupervisorRecord) -> Result<(), CatalogError> {
        self.connection().execute(
            "INSERT INTO supervisors (id, spec, suspended, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, suspended = excluded.suspended",
            params![
                supervisor.id,
                serde_json::to_string(&supervisor.spec)?,
                i32::from(supervisor.suspended),
                supervisor.created
            ],
        )?;
        Ok(())
    }

    fn supervisors(&self) -> Result<Vec<SupervisorRecord>, CatalogError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "SELECT id, spec, suspended, created_ms FROM supervisors ORDER BY id",
        )?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(id, spec, suspended, created)| {
                Ok(SupervisorRecord {
                    id,
                    spec: serde_json::from_str(&spec)?,
                    suspended: suspended != 0,
                    created,
                })
            })
            .collect()
    }

    fn delete_supervisor(&self, id: &str) -> Result<bool, CatalogError> {
        Ok(self
            .connection()
            .execute("DELETE FROM supervisors WHERE id = ?1", params![id])?
            > 0)
    }

    fn put_task(&self, task: &TaskRecord) -> Result<(), CatalogError> {
        self.connection().execute(
            "INSERT INTO tasks (id, datasource, kind, status, created_ms, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, payload = excluded.payload",
            params![
                task.id,
                task.datasource,
                task.kind.as_str(),
                task.status.as_str(),
                task.created,
                serde_json::to_string(&task.payload)?
            ],
        )?;
        Ok(())
    }

    fn tasks(&self) -> Result<Vec<TaskRecord>, CatalogError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached("SELECT id, datasource, kind, status, created_ms, payload FROM tasks ORDER BY created_ms, id")?;
        let rows = statement
            .query_map([], task_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn setting(&self, name: &str) -> Result<Option<serde_json::Value>, CatalogError> {
        let text: Option<String> = self
            .connection()
            .query_row(
                "SELECT payload FROM settings WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    fn put_setting(&self, name: &str, value: &serde_json::Value) -> Result<(), CatalogError> {
        self.connection().execute(
            "INSERT INTO settings (name, payload) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET payload = excluded.payload",
            params![name, serde_json::to_string(value)?],
        )?;
        Ok(())
    }

    fn task(&self, id: &str) -> Result<Option<TaskRecord>, CatalogError> {
        let row = self
            .connection()
            .query_row(
                "SELECT id, datasource, kind, status, created_ms, payload FROM tasks WHERE id = ?1",
                params![id],
                task_from_row,
            )
            .optional()?;
        Ok(row)
    }
}

fn task_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    let id: String = row.get(0)?;
    let kind: String = row.get(2)?;
    let status: String = row.get(3)?;
    let payload: String = row.get(5)?;
    Ok(TaskRecord {
        kind: TaskKind::parse(&kind)
            .ok_or_else(|| unreadable(2, format!("task '{id}': unknown type '{kind}'")))?,
        status: TaskStatus::parse(&status)
            .ok_or_else(|| unreadable(3, format!("task '{id}': unknown status '{status}'")))?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| unreadable(5, format!("task '{id}': its details: {e}")))?,
        id,
        datasource: row.get(1)?,
        created: row.get(4)?,
    })
}

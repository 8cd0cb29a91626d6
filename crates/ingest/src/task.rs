//! An ingestion task: reads its partitions of the stream from its start offsets, turns records
//! into rows in per-chunk indexes that queries see at once, and at the end of its duration (or
//! when asked) publishes its segments with its end offsets.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use millrace_catalog::{OffsetAdvance, PartitionOffsets, PublishOutcome};
use millrace_log::{Log, StoredRecord};
use millrace_segments::index::ChunkIndex;
use millrace_segments::input::{Member, MemberReader, RecordMeta, RowReader, recycle};
use millrace_segments::spec::SupervisorSpec;
use millrace_segments::time::bucket;
use millrace_segments::transform::{Outcome, RowTransformer};
use serde::Serialize;

use crate::publish::offsets_json;
use crate::supervisor::RecentError;
use crate::visible::TaskIndexes;
use crate::{Context, IngestError, now_millis};

/// Records read from one partition at a time.
const READ_BATCH: usize = 4096;
/// The pause after a failed publish before the first retry; it doubles up to the maximum.
const PUBLISH_RETRY_FIRST: Duration = Duration::from_secs(1);
const PUBLISH_RETRY_MAX: Duration = Duration::from_secs(60);

/// What a task is to do: which partitions of which topics, from where, for how long.
#[derive(Clone)]
pub struct TaskPlan {
    pub id: String,
    pub datasource: String,
    /// The task group: partition p of a topic belongs to group p % taskCount.
    pub group: u32,
    pub spec: Arc<SupervisorSpec>,
    /// The topic, or the topicPattern, read.
    pub stream: String,
    pub start_offsets: PartitionOffsets,
    pub duration: Duration,
    /// The log the stream is in: the server's own, or the Kafka cluster the spec names.
    pub log: Arc<dyn Log>,
}

/// Row counts of a task, named as Druid's task reports name them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowCounts {
    pub processed: u64,
    pub processed_bytes: u64,
    pub processed_with_error: u64,
    pub thrown_away: u64,
    pub unparseable: u64,
}

impl std::ops::AddAssign for RowCounts {
    fn add_assign(&mut self, more: RowCounts) {
        self.processed += more.processed;
        self.processed_bytes += more.processed_bytes;
        self.processed_with_error += more.processed_with_error;
        self.thrown_away += more.thrown_away;
        self.unparseable += more.unparseable;
    }
}

/// How far a running task has come.
#[derive(Debug, Clone, Default)]
pub struct TaskProgress {
    /// The offset of the next record to read, per partition.
    pub current_offsets: PartitionOffsets,
    pub counts: RowCounts,
    /// The latest parse exceptions (at most maxSavedParseExceptions).
    pub parse_errors: Vec<String>,
    pub publishing: bool,
    /// Why and when the last publish attempt failed, while the task retries it.
    pub publish_error: Option<RecentError>,
}

/// What a task is asked to do besides reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StopRequest {
    None = 0,
    /// Publish what it holds and finish (suspend, terminate).
    Publish = 1,
    /// Finish without publishing; a later task reads the same records again (shutdown, reset).
    Discard = 2,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    /// Segments and end offsets published.
    Published(PartitionOffsets),
    /// Stopped without publishing.
    Discarded,
    /// Failed; nothing was published.
    Failed(String),
}

/// A task running on its own thread.
pub struct RunningTask {
    pub plan: Arc<TaskPlan>,
    /// Epoch milliseconds.
    pub started_millis: i64,
    pub started: Instant,
    pub progress: Arc<Mutex<TaskProgress>>,
    stop: Arc<AtomicU8>,
    thread: JoinHandle<TaskEnd>,
}

impl RunningTask {
    /// Starts a task; its rows are visible to queries from the first one.
    pub fn start(context: Arc<Context>, plan: TaskPlan) -> Result<RunningTask, IngestError> {
        let plan = Arc::new(plan);
        let progress = Arc::new(Mutex::new(TaskProgress {
            current_offsets: plan.start_offsets.clone(),
            ..TaskProgress::default()
        }));
        let stop = Arc::new(AtomicU8::new(StopRequest::None as u8));
        let indexes: TaskIndexes = Arc::default();
        context
            .visible
            .add_task(&plan.datasource, &plan.id, indexes.clone());
        let thread = {
            let (plan, progress, stop) = (plan.clone(), progress.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("task-{}", plan.group))
                .spawn(move || {
                    let end = run(&context, &plan, &progress, &stop, &indexes);
                    if !matches!(end, TaskEnd::Published(_)) {
                        context.visible.remove_task(&plan.datasource, &plan.id);
                    }
                    // Persisted files go when the last index holding them does (a query may
                    // still read them); the directory goes now if it is empty, else at the
                    // next start.
                    drop(indexes);
                    let _ = std::fs::remove_dir(persist_dir(&context, &plan.id));
                    end
                })
                .map_err(|e| IngestError::Io("starting a task thread".into(), e))?
        };
        Ok(RunningTask {
            plan,
            started_millis: now_millis(),
            started: Instant::now(),
            progress,
            stop,
            thread,
        })
    }

    /// Asks the task to stop (it finishes on its own thread; see [`RunningTask::is_finished`]).
    pub fn request_stop(&self, request: StopRequest) {
        // A discard overrides a publish asked for before, not the other way round.
        let before = self.stop.fetch_max(request as u8, Ordering::SeqCst);
        // A task waiting for records sees a new request now, not when its poll times out.
        // (A supervisor repeats its request while the task finishes: those wake no one.)
        if before < request as u8 {
            self.plan.log.wake_waiters();
        }
    }

    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the task's end.
    pub fn join(self) -> TaskEnd {
        self.thread
            .join()
            .unwrap_or_else(|_| TaskEnd::Failed("the task thread panicked".into()))
    }

    /// Time left of its duration.
    pub fn remaining(&self) -> Duration {
        self.plan.duration.saturating_sub(self.started.elapsed())
    }
}

/// How a task reads its records.
enum Records {
    /// Only the members rows need, when the spec says which (faster than whole rows).
    Members(MemberReader),
    /// Whole input rows.
    Rows(RowReader),
}

/// The compiled parts of a spec a task reads rows with.
struct RowPipeline {
    records: Records,
    transformer: RowTransformer,
    spec: Arc<SupervisorSpec>,
    /// The vector each record's members are read into, kept (empty) between records.
    spare_members: Vec<Member<'static>>,
}

impl RowPipeline {
    /// Ingests one record into the indexes, counting what became of it; an unparseable
    /// record's reason is returned. `now` (epoch ms) anchors the rejection windows.
    fn ingest(
        &mut self,
        topic: &str,
        record: &StoredRecord,
        now: i64,
        indexes: &mut Vec<ChunkIndex>,
        counts: &mut RowCounts,
    ) -> Option<String> {
        let Some(value) = record.record.value.as_deref() else {
            counts.unparseable += 1;
            return Some("the record has no value".into());
        };
        counts.processed_bytes += value.len() as u64;
        let headers: Vec<(&str, Option<&[u8]>)> = record
            .record
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref()))
            .collect();
        let meta = RecordMeta {
            topic,
            timestamp: record.record.timestamp,
            key: record.record.key.as_deref(),
            headers: &headers,
        };
        let read = match &self.records {
            Records::Members(reader) => {
                let mut members = recycle(std::mem::take(&mut self.spare_members));
                let read = reader.read_into(value, &meta, &mut members).map(|()| {
                    let outcome = self.transformer.apply_members(&mut members, now);
                    self.place(outcome, indexes, counts)
                });
                self.spare_members = recycle(members);
                read
            }
            Records::Rows(reader) => reader.read(value, &meta).map(|rows| {
                let mut failure = None;
                for row in rows {
                    let outcome = self.transformer.apply(row, now);
                    if let Some(why) = self.place(outcome, indexes, counts) {
                        failure = Some(why);
                    }
                }
                failure
            }),
        };
        read.unwrap_or_else(|e| {
            counts.unparseable += 1;
            Some(e.0)
        })
    }

    /// Adds a row to its chunk's open index, counting what became of it; an unparseable
    /// row's reason is returned.
    fn place(
        &self,
        outcome: Outcome<'_>,
        indexes: &mut Vec<ChunkIndex>,
        counts: &mut RowCounts,
    ) -> Option<String> {
        let schema = &self.spec.spec.data_schema;
        let max_rows = self.spec.spec.tuning_config.max_rows_per_segment as usize;
        match outcome {
            Outcome::Row(row) => {
                counts.processed += 1;
                let (start, end) = bucket(row.time, &schema.granularity_spec.segment_granularity);
                // The chunk's open index: the last one for the chunk, unless it is full.
                let open = indexes
                    .iter()
                    .rposition(|i| i.interval() == (start, end))
                    .filter(|&i| indexes[i].len() < max_rows.max(1));
                let position = open.unwrap_or_else(|| {
                    indexes.push(ChunkIndex::new(start, end, schema));
                    indexes.len() - 1
                });
                indexes[position].add(row);
                None
            }
            Outcome::ThrownAway => {
                counts.thrown_away += 1;
                None
            }
            Outcome::Unparseable(why) => {
                counts.unparseable += 1;
                Some(why)
            }
        }
    }
}

/// Where a task persists rows: `tasks/<task id>/` in the data directory.
pub fn persist_dir(context: &Context, task_id: &str) -> PathBuf {
    context.data_dir.join("tasks").join(task_id)
}

/// When a task persists its in-memory rows to disk.
struct PersistPolicy {
    max_rows_in_memory: usize,
    period: Duration,
    last: Instant,
    /// Files written so far (they are numbered).
    files: usize,
}

impl PersistPolicy {
    /// Takes files done writing into the persisted ones, then persists every index's
    /// in-memory rows when they reached maxRowsInMemory or intermediatePersistPeriod has
    /// passed since the last persist.
    fn maybe_persist(
        &mut self,
        context: &Context,
        plan: &TaskPlan,
        indexes: &mut [ChunkIndex],
    ) -> Result<(), String> {
        for index in indexes.iter_mut() {
            index
                .finish_persist(false)
                .map_err(|e| format!("persisting rows: {e}"))?;
        }
        let in_memory: usize = indexes.iter().map(ChunkIndex::in_memory_rows).sum();
        if in_memory == 0
            || (in_memory < self.max_rows_in_memory && self.last.elapsed() < self.period)
        {
            return Ok(());
        }
        let directory = persist_dir(context, &plan.id);
        std::fs::create_dir_all(&directory)
            .map_err(|e| format!("creating {}: {e}", directory.display()))?;
        for index in indexes.iter_mut().filter(|i| i.in_memory_rows() > 0) {
            let path = directory.join(format!("{:06}.parquet", self.files));
            index
                .persist(path)
                .map_err(|e| format!("persisting rows: {e}"))?;
            self.files += 1;
        }
        self.last = Instant::now();
        Ok(())
    }
}

/// The task's loop; returns how it ended.
fn run(
    context: &Context,
    plan: &TaskPlan,
    progress: &Mutex<TaskProgress>,
    stop: &AtomicU8,
    indexes: &TaskIndexes,
) -> TaskEnd {
    let spec = &plan.spec.spec;
    let mut pipeline = match (
        RowReader::new(&spec.io_config.input_format),
        RowTransformer::new(&spec.data_schema, &spec.io_config),
    ) {
        (Ok(reader), Ok(transformer)) => {
            // When rows need only some members, the others are skipped while parsing and
            // rows are made without input rows.
            let records = match transformer.member_reader(&spec.io_config.input_format) {
                Some(members) => Records::Members(members),
                None => Records::Rows(reader),
            };
            RowPipeline {
                records,
                transformer,
                spec: plan.spec.clone(),
                spare_members: Vec::new(),
            }
        }
        (Err(e), _) => return TaskEnd::Failed(format!("spec.ioConfig.inputFormat: {e}")),
        (_, Err(e)) => return TaskEnd::Failed(e.to_string()),
    };
    let tuning = &spec.tuning_config;
    let poll = Duration::from_millis(spec.io_config.poll_timeout.max(1));
    let deadline = Instant::now() + plan.duration;
    let mut persist = PersistPolicy {
        max_rows_in_memory: tuning.max_rows_in_memory.max(1) as usize,
        period: Duration::from_millis(
            tuning
                .intermediate_persist_period
                .fixed_millis()
                .unwrap_or(600_000)
                .max(1),
        ),
        last: Instant::now(),
        files: 0,
    };
    let mut next = plan.start_offsets.clone();
    loop {
        // Read before the stop is checked: a stop request after the check changes it, so the
        // wait for records below ends at once.
        let generation = plan.log.append_generation();
        match stop.load(Ordering::SeqCst) {
            s if s == StopRequest::Discard as u8 => return TaskEnd::Discarded,
            s if s == StopRequest::Publish as u8 => break,
            _ if Instant::now() >= deadline => break,
            _ => {}
        }
        let mut read_any = false;
        for (partition, offset) in next.iter_mut() {
            let fetched =
                match plan
                    .log
                    .read(&partition.topic, partition.partition, *offset, READ_BATCH)
                {
                    Ok(fetched) => fetched,
                    Err(e) => return TaskEnd::Failed(format!("reading {partition}: {e}")),
                };
            *offset = fetched.next_offset;
            let records = fetched.records;
            if records.is_empty() {
                continue;
            }
            read_any = true;
            let mut counts = RowCounts::default();
            let mut errors = Vec::new();
            {
                let mut indexes = indexes.lock().expect("task indexes lock");
                let now = now_millis();
                for record in &records {
                    if let Some(why) =
                        pipeline.ingest(&partition.topic, record, now, &mut indexes, &mut counts)
                    {
                        let message = format!(
                            "unparseable record at {partition} offset {}: {why}",
                            record.offset
                        );
                        if tuning.log_parse_exceptions {
                            tracing::warn!(task = %plan.id, "{message}");
                        }
                        errors.push(message);
                    }
                }
            }
            let mut progress = progress.lock().expect("task progress lock");
            progress.current_offsets.insert(partition.clone(), *offset);
            progress.counts += counts;
            let failed_rows = progress.counts.unparseable + progress.counts.processed_with_error;
            let saved = tuning.max_saved_parse_exceptions as usize;
            progress.parse_errors.extend(errors);
            let excess = progress.parse_errors.len().saturating_sub(saved);
            progress.parse_errors.drain(..excess);
            if let Some(max) = tuning.max_parse_exceptions
                && failed_rows > max
            {
                return TaskEnd::Failed(format!(
                    "Max parse exceptions [{max}] exceeded ({failed_rows} unparseable rows)"
                ));
            }
        }
        {
            let mut indexes = indexes.lock().expect("task indexes lock");
            if let Err(e) = persist.maybe_persist(context, plan, &mut indexes) {
                return TaskEnd::Failed(e);
            }
        }
        if !read_any {
            let until_deadline = deadline.saturating_duration_since(Instant::now());
            plan.log
                .wait_for_append(generation, poll.min(until_deadline));
        }
    }
    progress.lock().expect("task progress lock").publishing = true;
    let advance = OffsetAdvance {
        stream: plan.stream.clone(),
        start: plan.start_offsets.clone(),
        end: next.clone(),
    };
    publish_until_done(context, plan, progress, stop, indexes, &advance)
}

/// Publishes the task's segments, retrying after errors (a full disk, a segment file that
/// cannot be written) with a growing pause: the rows stay queryable meanwhile, where failing
/// would drop them until a later task read them again, which a suspended supervisor never
/// starts. Ends when published, when another task moved the offsets, when asked to discard or
/// the server shuts down, or, failed, after the spec's completionTimeout (as Druid fails a
/// task that cannot publish within it).
fn publish_until_done(
    context: &Context,
    plan: &TaskPlan,
    progress: &Mutex<TaskProgress>,
    stop: &AtomicU8,
    indexes: &TaskIndexes,
    advance: &OffsetAdvance,
) -> TaskEnd {
    let mut pause = PUBLISH_RETRY_FIRST;
    let completion_timeout = plan.spec.spec.io_config.completion_timeout();
    let give_up_at = Instant::now() + completion_timeout;
    loop {
        match crate::publish::publish(context, &plan.datasource, &plan.id, indexes, advance) {
            Ok(PublishOutcome::Published) => return TaskEnd::Published(advance.end.clone()),
            Ok(PublishOutcome::OffsetsMoved { stored }) => {
                return TaskEnd::Failed(format!(
                    "the datasource's stored offsets {} are not where the task started {}; nothing was published",
                    offsets_json(&stored.stream, &stored.partitions),
                    offsets_json(&plan.stream, &plan.start_offsets)
                ));
            }
            Err(e) if Instant::now() + pause >= give_up_at => {
                return TaskEnd::Failed(format!(
                    "publishing failed for the whole completionTimeout ({}s): {e}",
                    completion_timeout.as_secs()
                ));
            }
            Err(e) => {
                let message = format!(
                    "cannot publish (retrying in {}s; the rows stay queryable): {e}",
                    pause.as_secs()
                );
                tracing::warn!(task = %plan.id, "{message}");
                progress.lock().expect("task progress lock").publish_error = Some(RecentError {
                    timestamp: now_millis(),
                    message,
                });
            }
        }
        let retry_at = Instant::now() + pause;
        while Instant::now() < retry_at {
            if stop.load(Ordering::SeqCst) == StopRequest::Discard as u8
                || context.shutting_down.load(Ordering::SeqCst)
            {
                return TaskEnd::Discarded;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        pause = (pause * 2).min(PUBLISH_RETRY_MAX);
    }
}

//! A supervisor: keeps one task running per task group of a spec, starts the next task from
//! the published offsets when one hands off, retries failed ones, and carries out suspend,
//! resume, reset and terminate.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use millrace_catalog::{
    PartitionOffsets, StreamOffsets, TaskKind, TaskRecord, TaskStatus, TopicPartition,
};
use millrace_segments::spec::SupervisorSpec;
use millrace_segments::time::format_iso;
use serde_json::json;

use crate::publish::offsets_json;
use crate::stream::Stream;
use crate::task::{RunningTask, StopRequest, TaskEnd, TaskPlan};
use crate::{Context, IngestError, now_millis};
use millrace_log::Log;
use millrace_segments::spec::SpecError;

/// How long a task group waits after a failed task before the next one starts.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How many recent errors a supervisor keeps.
const RECENT_ERRORS: usize = 10;
/// How often the supervisor reads its stream's partitions and their latest offsets; the
/// status shows the last reading, so asking for it never waits on a Kafka cluster.
const STREAM_REFRESH: Duration = Duration::from_secs(1);
/// The first wait before reaching a Kafka cluster again after it did not answer; each
/// failure doubles it, up to [`MAX_CONNECT_WAIT`].
const FIRST_CONNECT_WAIT: Duration = Duration::from_secs(1);
const MAX_CONNECT_WAIT: Duration = Duration::from_secs(60);

/// What the supervisor is asked to be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Desired {
    Run,
    Suspend,
    /// Publish, then end the supervisor.
    Terminate,
    /// Stop tasks without publishing, then end (server shutdown).
    Shutdown,
}

/// A reset waiting to be carried out: None clears the stored offsets.
type PendingReset = Option<StreamOffsets>;

struct Control {
    desired: Desired,
    reset: Option<PendingReset>,
}

/// An error shown in the supervisor's status.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentError {
    pub timestamp: i64,
    pub message: String,
}

#[derive(Default)]
struct Health {
    /// Why the stream cannot be read now (the topic is missing), if so.
    stream_problem: Option<String>,
    /// Task groups whose last task failed.
    failing_groups: BTreeSet<u32>,
    recent_errors: VecDeque<RecentError>,
}

/// A running task as the status shows it.
#[derive(Debug, Clone)]
pub struct ActiveTask {
    pub id: String,
    pub group: u32,
    pub start_offsets: PartitionOffsets,
    pub current_offsets: PartitionOffsets,
    pub started_millis: i64,
    pub remaining_seconds: u64,
    pub publishing: bool,
    pub counts: crate::task::RowCounts,
    pub parse_errors: Vec<String>,
    /// Why and when the last publish attempt failed, while the task retries it.
    pub publish_error: Option<RecentError>,
}

/// The supervisor's state now.
#[derive(Debug, Clone)]
pub struct SupervisorStatus {
    pub state: &'static str,
    pub detailed_state: &'static str,
    pub healthy: bool,
    pub suspended: bool,
    /// The topic or topicPattern.
    pub stream: String,
    pub partitions: u32,
    pub active_tasks: Vec<ActiveTask>,
    /// The next offset of each partition of the stream, as last read.
    pub latest_offsets: PartitionOffsets,
    /// When `latest_offsets` were read (milliseconds since the epoch), if ever.
    pub offsets_read_millis: Option<i64>,
    pub recent_errors: Vec<RecentError>,
}

impl SupervisorStatus {
    /// How far each partition at `current` is behind the stream's latest offsets.
    pub fn lag(&self, current: &PartitionOffsets) -> PartitionOffsets {
        current
            .iter()
            .map(|(partition, offset)| {
                let behind = self
                    .latest_offsets
                    .get(partition)
                    .map_or(0, |latest| latest.saturating_sub(*offset));
                (partition.clone(), behind)
            })
            .collect()
    }

    /// Records of the stream the running tasks have not read yet.
    pub fn aggregate_lag(&self) -> u64 {
        self.active_tasks
            .iter()
            .map(|task| self.lag(&task.current_offsets).values().sum::<u64>())
            .sum()
    }
}

/// What the supervisor last read of its stream.
#[derive(Default)]
struct StreamView {
    partitions: Vec<TopicPartition>,
    /// The next offset of each partition.
    latest_offsets: PartitionOffsets,
    /// When the offsets were read (milliseconds since the epoch).
    read_millis: Option<i64>,
}

struct Shared {
    spec: Arc<SupervisorSpec>,
    stream: Stream,
    /// The log the stream is in: the server's own, or the Kafka cluster the spec names (set
    /// once that cluster is reached).
    log: OnceLock<Arc<dyn Log>>,
    view: Mutex<StreamView>,
    control: Mutex<Control>,
    wake: Condvar,
    tasks: Mutex<BTreeMap<u32, RunningTask>>,
    health: Mutex<Health>,
}

/// A supervisor and its thread.
pub struct Supervisor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// The log a spec's stream is in: the server's own, or (with `bootstrap.servers` in its
/// consumer properties, every one of which goes to the Kafka client) that cluster.
pub fn log_of(context: &Context, spec: &SupervisorSpec) -> Result<Arc<dyn Log>, IngestError> {
    let io = &spec.spec.io_config;
    if io.bootstrap_servers().is_none() {
        return Ok(context.log.clone());
    }
    let refused = |message: String| {
        IngestError::Spec(SpecError {
            path: "spec.ioConfig.consumerProperties".into(),
            message,
        })
    };
    let Some(connect) = &context.connect else {
        return Err(refused(
            "this server reads no external Kafka cluster; leave bootstrap.servers out to read \
             its own topics"
                .into(),
        ));
    };
    let properties: Vec<(String, String)> = io
        .consumer_properties
        .iter()
        .map(|(name, value)| {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name.clone(), text)
        })
        .collect();
    connect(&properties).map_err(|e| refused(format!("cannot reach the Kafka cluster: {e}")))
}

/// The log of a spec reading the server's own topics; None for one naming a Kafka cluster
/// (the supervisor reaches it itself). A spec naming a cluster on a server that reaches
/// none is refused.
pub fn log_of_own(
    context: &Context,
    spec: &SupervisorSpec,
) -> Result<Option<Arc<dyn Log>>, IngestError> {
    match spec.spec.io_config.bootstrap_servers() {
        None => Ok(Some(context.log.clone())),
        Some(_) if context.connect.is_some() => Ok(None),
        Some(_) => log_of(context, spec).map(Some),
    }
}

/// A task id as Druid forms them: `index_kafka_<datasource>_<hex>_<letters>`.
fn task_id(datasource: &str) -> String {
    let random = RandomState::new().hash_one(now_millis());
    let letters: String = (0..8)
        .map(|i| (b'a' + ((random >> (i * 5)) % 26) as u8) as char)
        .collect();
    format!(
        "index_kafka_{datasource}_{:015x}_{letters}",
        random >> 4 & 0xfff_ffff_ffff_ffff
    )
}

impl Supervisor {
    /// Starts supervising a spec (suspended specs start suspended), reading its stream in
    /// `log` (see [`log_of`]); without one, the supervisor's thread reaches the Kafka cluster
    /// the spec names, retrying while it does not answer (the status says why meanwhile).
    pub fn start(
        context: Arc<Context>,
        spec: SupervisorSpec,
        log: Option<Arc<dyn Log>>,
    ) -> Result<Supervisor, IngestError> {
        let desired = if spec.suspended {
            Desired::Suspend
        } else {
            Desired::Run
        };
        let stream = Stream::of(&spec).map_err(IngestError::Spec)?;
        let shared = Arc::new(Shared {
            spec: Arc::new(spec),
            stream,
            log: log.map(OnceLock::from).unwrap_or_default(),
            view: Mutex::new(StreamView::default()),
            control: Mutex::new(Control {
                desired,
                reset: None,
            }),
            wake: Condvar::new(),
            tasks: Mutex::new(BTreeMap::new()),
            health: Mutex::new(Health::default()),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("supervisor-{}", shared.spec.id()))
                .spawn(move || supervise(&context, &shared))
                .map_err(|e| IngestError::Io("starting a supervisor thread".into(), e))?
        };
        Ok(Supervisor {
            shared,
            thread: Some(thread),
        })
    }

    pub fn spec(&self) -> &SupervisorSpec {
        &self.shared.spec
    }

    /// The topic or topicPattern it reads.
    pub fn stream_name(&self) -> &str {
        &self.shared.stream.name
    }

    fn command(&self, change: impl FnOnce(&mut Control)) {
        let mut control = self.shared.control.lock().expect("supervisor control lock");
        change(&mut control);
        self.shared.wake.notify_all();
    }

    /// Suspends (tasks publish what they hold and finish) or resumes.
    pub fn set_suspended(&self, suspended: bool) {
        self.command(|c| {
            c.desired = if suspended {
                Desired::Suspend
            } else {
                Desired::Run
            }
        });
    }

    /// Stops the tasks without publishing and replaces the stored offsets (None: clears them,
    /// so the next tasks start at the earliest or latest offset the spec asks for; partitions
    /// the new offsets do not name keep what is stored once the tasks have ended).
    pub fn reset(&self, offsets: Option<StreamOffsets>) {
        self.command(|c| c.reset = Some(offsets));
    }

    /// Stops one running task without publishing (a later task reads its records again);
    /// false when no task of this supervisor has that id.
    pub fn stop_task(&self, task_id: &str) -> bool {
        let tasks = self.shared.tasks.lock().expect("supervisor tasks lock");
        let task = tasks.values().find(|t| t.plan.id == task_id);
        if let Some(task) = task {
            task.request_stop(StopRequest::Discard);
        }
        task.is_some()
    }

    /// Ends the supervisor: tasks publish (terminate) or are discarded (shutdown). Waits.
    pub fn stop(mut self, publish: bool) {
        self.command(|c| {
            c.desired = if publish {
                Desired::Terminate
            } else {
                Desired::Shutdown
            }
        });
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// The supervisor's state, tasks and offsets now.
    pub fn status(&self) -> SupervisorStatus {
        let stream = &self.shared.stream;
        let desired = self
            .shared
            .control
            .lock()
            .expect("supervisor control lock")
            .desired;
        let active_tasks: Vec<ActiveTask> = self
            .shared
            .tasks
            .lock()
            .expect("supervisor tasks lock")
            .values()
            .map(|task| {
                let progress = task.progress.lock().expect("task progress lock");
                ActiveTask {
                    id: task.plan.id.clone(),
                    group: task.plan.group,
                    start_offsets: task.plan.start_offsets.clone(),
                    current_offsets: progress.current_offsets.clone(),
                    started_millis: task.started_millis,
                    remaining_seconds: task.remaining().as_secs(),
                    publishing: progress.publishing,
                    counts: progress.counts,
                    parse_errors: progress.parse_errors.clone(),
                    publish_error: progress.publish_error.clone(),
                }
            })
            .collect();
        let view = self.shared.view.lock().expect("supervisor view lock");
        let health = self.shared.health.lock().expect("supervisor health lock");
        let publish_errors: Vec<RecentError> = active_tasks
            .iter()
            .filter_map(|task| {
                let error = task.publish_error.as_ref()?;
                Some(RecentError {
                    timestamp: error.timestamp,
                    message: format!("task {}: {}", task.id, error.message),
                })
            })
            .collect();
        let (state, detailed_state) = match desired {
            _ if !publish_errors.is_empty() => ("UNHEALTHY_TASKS", "UNHEALTHY_TASKS"),
            Desired::Suspend if active_tasks.is_empty() => ("SUSPENDED", "SUSPENDED"),
            Desired::Suspend | Desired::Terminate | Desired::Shutdown => ("STOPPING", "STOPPING"),
            Desired::Run if health.stream_problem.is_some() => {
                ("UNHEALTHY_SUPERVISOR", "UNABLE_TO_CONNECT_TO_STREAM")
            }
            Desired::Run if !health.failing_groups.is_empty() => {
                ("UNHEALTHY_TASKS", "UNHEALTHY_TASKS")
            }
            Desired::Run => ("RUNNING", "RUNNING"),
        };
        SupervisorStatus {
            state,
            detailed_state,
            healthy: !state.starts_with("UNHEALTHY"),
            suspended: desired == Desired::Suspend,
            stream: stream.name.clone(),
            partitions: view.partitions.len() as u32,
            active_tasks,
            latest_offsets: view.latest_offsets.clone(),
            offsets_read_millis: view.read_millis,
            recent_errors: health
                .recent_errors
                .iter()
                .cloned()
                .chain(publish_errors)
                .collect(),
        }
    }
}

impl Drop for Supervisor {
    /// A supervisor dropped without [`Supervisor::stop`] shuts its tasks down unpublished.
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.command(|c| c.desired = Desired::Shutdown);
            let _ = thread.join();
        }
    }
}

fn record_error(shared: &Shared, message: String) {
    tracing::warn!(supervisor = shared.spec.id(), "{message}");
    let mut health = shared.health.lock().expect("supervisor health lock");
    health.recent_errors.push_back(RecentError {
        timestamp: now_millis(),
        message,
    });
    while health.recent_errors.len() > RECENT_ERRORS {
        health.recent_errors.pop_front();
    }
}

/// The supervisor's thread: reaps ended tasks, starts new ones, carries out commands.
fn supervise(context: &Arc<Context>, shared: &Shared) {
    let mut retry_at: BTreeMap<u32, Instant> = BTreeMap::new();
    let mut connecting = Connecting::default();
    let mut next_read = Instant::now();
    loop {
        let (desired, reset) = {
            let mut control = shared.control.lock().expect("supervisor control lock");
            (control.desired, control.reset.take())
        };
        reap(context, shared, &mut retry_at, false);
        if let Some(offsets) = reset {
            stop_all(shared, StopRequest::Discard);
            reap(context, shared, &mut retry_at, true);
            // Merged only now: a task that was publishing when the reset came has committed.
            let datasource = shared.spec.id();
            let merged = offsets
                .map(|mut new| {
                    if let Some(stored) = context.catalog.offsets(datasource)?
                        && stored.stream == new.stream
                    {
                        for (p, o) in stored.partitions {
                            new.partitions.entry(p).or_insert(o);
                        }
                    }
                    Ok::<_, IngestError>(new)
                })
                .transpose();
            let stored = merged.and_then(|offsets| {
                Ok(context.catalog.set_offsets(datasource, offsets.as_ref())?)
            });
            if let Err(e) = stored {
                record_error(shared, format!("resetting offsets: {e}"));
            }
            retry_at.clear();
            shared
                .health
                .lock()
                .expect("supervisor health lock")
                .failing_groups
                .clear();
        }
        match desired {
            Desired::Run => {
                if let Some(log) = connected(context, shared, &mut connecting) {
                    if Instant::now() >= next_read {
                        read_stream(shared, log.as_ref());
                        next_read = Instant::now() + STREAM_REFRESH;
                    }
                    start_missing(context, shared, log, &mut retry_at);
                }
            }
            Desired::Suspend | Desired::Terminate => stop_all(shared, StopRequest::Publish),
            Desired::Shutdown => stop_all(shared, StopRequest::Discard),
        }
        let idle = shared
            .tasks
            .lock()
            .expect("supervisor tasks lock")
            .is_empty();
        if idle && matches!(desired, Desired::Terminate | Desired::Shutdown) {
            return;
        }
        let control = shared.control.lock().expect("supervisor control lock");
        let _ = shared
            .wake
            .wait_timeout(control, Duration::from_millis(100))
            .expect("supervisor control lock");
    }
}

fn stop_all(shared: &Shared, request: StopRequest) {
    for task in shared.tasks.lock().expect("supervisor tasks lock").values() {
        task.request_stop(request);
    }
}

/// Collects ended tasks (all of them, waiting, with `wait`) and records how they ended.
fn reap(context: &Context, shared: &Shared, retry_at: &mut BTreeMap<u32, Instant>, wait: bool) {
    let ended: Vec<RunningTask> = {
        let mut tasks = shared.tasks.lock().expect("supervisor tasks lock");
        let groups: Vec<u32> = tasks
            .iter()
            .filter(|(_, t)| wait || t.is_finished())
            .map(|(g, _)| *g)
            .collect();
        groups.iter().filter_map(|g| tasks.remove(g)).collect()
    };
    for task in ended {
        let plan = task.plan.clone();
        let started = task.started_millis;
        let progress = task.progress.lock().expect("task progress lock").clone();
        let end = task.join();
        let (status, error, end_offsets) = match &end {
            TaskEnd::Published(offsets) => (TaskStatus::Success, None, Some(offsets.clone())),
            TaskEnd::Discarded => (
                TaskStatus::Failed,
                Some("stopped without publishing (shutdown or reset); a later task reads its records again".to_string()),
                None,
            ),
            TaskEnd::Failed(why) => (TaskStatus::Failed, Some(why.clone()), None),
        };
        let mut health = shared.health.lock().expect("supervisor health lock");
        match &end {
            TaskEnd::Published(_) => {
                health.failing_groups.remove(&plan.group);
            }
            TaskEnd::Failed(why) => {
                health.failing_groups.insert(plan.group);
                retry_at.insert(plan.group, Instant::now() + RETRY_AFTER);
                drop(health);
                record_error(shared, format!("task {} failed: {why}", plan.id));
            }
            TaskEnd::Discarded => {}
        }
        let record = TaskRecord {
            id: plan.id.clone(),
            datasource: plan.datasource.clone(),
            kind: TaskKind::IndexKafka,
            status,
            created: started,
            payload: json!({
                "group": plan.group,
                "topic": plan.stream,
                "startOffsets": offsets_json(&plan.stream, &plan.start_offsets),
                "endOffsets": end_offsets.as_ref().map(|o| offsets_json(&plan.stream, o)),
                "duration": now_millis() - started,
                "errorMsg": error,
                "rowStats": progress.counts,
                "parseExceptions": progress.parse_errors,
            }),
        };
        if let Err(e) = context.catalog.put_task(&record) {
            record_error(shared, format!("recording task {}: {e}", plan.id));
        }
    }
}

/// Where each of a group's partitions starts: the stored offset, else the earliest or
/// latest offset as the spec asks.
fn start_offsets(
    context: &Context,
    log: &dyn Log,
    spec: &SupervisorSpec,
    stream: &Stream,
    partitions: &[TopicPartition],
) -> Result<PartitionOffsets, IngestError> {
    let stored = context
        .catalog
        .offsets(spec.id())?
        .filter(|s| s.stream == stream.name)
        .unwrap_or_default();
    let mut offsets = PartitionOffsets::new();
    for p in partitions {
        let offset = match stored.partitions.get(p) {
            Some(&o) => o,
            None => {
                let (earliest, latest) = log.offset_range(&p.topic, p.partition)?;
                if spec.spec.io_config.use_earliest_offset {
                    earliest
                } else {
                    latest
                }
            }
        };
        offsets.insert(p.clone(), offset);
    }
    Ok(offsets)
}

/// How the supervisor's thread reaches a Kafka cluster that did not answer yet.
struct Connecting {
    next_attempt: Instant,
    wait: Duration,
}

impl Default for Connecting {
    fn default() -> Self {
        Connecting {
            next_attempt: Instant::now(),
            wait: FIRST_CONNECT_WAIT,
        }
    }
}

/// The supervisor's log; reaches the Kafka cluster its spec names first when that has not
/// answered yet (attempts wait longer after each failure, which the status names).
fn connected<'a>(
    context: &Context,
    shared: &'a Shared,
    connecting: &mut Connecting,
) -> Option<&'a Arc<dyn Log>> {
    if let Some(log) = shared.log.get() {
        return Some(log);
    }
    if Instant::now() < connecting.next_attempt {
        return None;
    }
    match log_of(context, &shared.spec) {
        Ok(log) => {
            set_stream_problem(shared, None);
            Some(shared.log.get_or_init(|| log))
        }
        Err(e) => {
            set_stream_problem(shared, Some(e.to_string()));
            connecting.next_attempt = Instant::now() + connecting.wait;
            connecting.wait = (connecting.wait * 2).min(MAX_CONNECT_WAIT);
            None
        }
    }
}

/// Records why the stream cannot be read (None: it can); a new reason is also a recent
/// error.
fn set_stream_problem(shared: &Shared, problem: Option<String>) {
    let mut health = shared.health.lock().expect("supervisor health lock");
    if health.stream_problem == problem {
        return;
    }
    health.stream_problem = problem.clone();
    drop(health);
    if let Some(problem) = problem {
        record_error(shared, problem);
    }
}

/// Reads the stream's partitions and their latest offsets into the supervisor's view; false
/// when the stream cannot be read now.
fn read_stream(shared: &Shared, log: &dyn Log) -> bool {
    let stream = &shared.stream;
    let cannot_read = |e: &dyn std::fmt::Display| {
        set_stream_problem(shared, Some(format!("cannot read '{}': {e}", stream.name)));
        false
    };
    let partitions = match stream.partitions(log) {
        Ok(Some(partitions)) => partitions,
        Ok(None) => {
            let missing = format!("topic '{}' does not exist", stream.name);
            set_stream_problem(shared, Some(missing));
            *shared.view.lock().expect("supervisor view lock") = StreamView::default();
            return false;
        }
        Err(e) => return cannot_read(&e),
    };
    let mut latest_offsets = PartitionOffsets::new();
    for p in &partitions {
        // A cluster that does not answer would keep each partition waiting as long.
        match log.offset_range(&p.topic, p.partition) {
            Ok((_, end)) => latest_offsets.insert(p.clone(), end),
            Err(e) => return cannot_read(&e),
        };
    }
    set_stream_problem(shared, None);
    *shared.view.lock().expect("supervisor view lock") = StreamView {
        partitions,
        latest_offsets,
        read_millis: Some(now_millis()),
    };
    true
}

/// Starts a task for every group that has none (and is not waiting to retry).
fn start_missing(
    context: &Arc<Context>,
    shared: &Shared,
    log: &Arc<dyn Log>,
    retry_at: &mut BTreeMap<u32, Instant>,
) {
    let spec = &shared.spec;
    let stream = &shared.stream;
    let task_count = spec.spec.io_config.task_count.max(1);
    let duration = spec.spec.io_config.task_duration();
    let now = Instant::now();
    let needed: Vec<u32> = {
        let tasks = shared.tasks.lock().expect("supervisor tasks lock");
        (0..task_count)
            .filter(|group| {
                !tasks.contains_key(group) && retry_at.get(group).is_none_or(|t| *t <= now)
            })
            .collect()
    };
    if needed.is_empty() {
        return;
    }
    // New tasks read the partitions there are now (a topic a pattern matches since, say).
    if !read_stream(shared, log.as_ref()) {
        return;
    }
    let partitions = shared
        .view
        .lock()
        .expect("supervisor view lock")
        .partitions
        .clone();
    for group in needed {
        let mine: Vec<TopicPartition> = partitions
            .iter()
            .filter(|p| stream.group_of(p, task_count) == group)
            .cloned()
            .collect();
        // A group with nothing to read looks again after the next reading's interval.
        if mine.is_empty() {
            retry_at.insert(group, now + STREAM_REFRESH);
            continue;
        }
        let plan = match start_offsets(context, log.as_ref(), spec, stream, &mine) {
            Ok(start) => TaskPlan {
                id: task_id(spec.id()),
                datasource: spec.id().to_string(),
                group,
                spec: spec.clone(),
                stream: stream.name.clone(),
                start_offsets: start,
                duration,
                log: log.clone(),
            },
            Err(e) => {
                record_error(shared, format!("planning task group {group}: {e}"));
                retry_at.insert(group, now + RETRY_AFTER);
                continue;
            }
        };
        let record = TaskRecord {
            id: plan.id.clone(),
            datasource: plan.datasource.clone(),
            kind: TaskKind::IndexKafka,
            status: TaskStatus::Running,
            created: now_millis(),
            payload: json!({
                "group": group,
                "topic": stream.name,
                "startOffsets": offsets_json(&stream.name, &plan.start_offsets),
                "startTime": format_iso(now_millis()),
            }),
        };
        if let Err(e) = context.catalog.put_task(&record) {
            record_error(shared, format!("recording task {}: {e}", plan.id));
        }
        match RunningTask::start(context.clone(), plan) {
            Ok(task) => {
                shared
                    .tasks
                    .lock()
                    .expect("supervisor tasks lock")
                    .insert(group, task);
            }
            Err(e) => {
                record_error(shared, format!("starting task group {group}: {e}"));
                retry_at.insert(group, now + RETRY_AFTER);
            }
        }
    }
}

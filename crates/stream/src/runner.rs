//! The runner: producers on their own threads, and tasks (see [`crate::task`]) spread over
//! `num.stream.threads` workers. A task reads a batch, runs it through the topology under one
//! hold of Python's lock, then appends the results and commits its input offsets in one step,
//! so a crash never loses or repeats a result on the embedded log.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use millrace_log::{Append, CommittedOffset, GroupMembership, Log, LogError, StoredRecord};
use millrace_python::Python;
use millrace_python::watch::{CallWatch, WatchedThread};

use crate::process::{BatchProcessor, Emitted};
use crate::producer::ProducerRun;
use millrace_stores::StateDir;

use crate::assignment::{Assignment, Leave};
use crate::stalls::{RETRY_PAUSE, Stalls, sleep_until};
use crate::task::{
    GroupPlan, Task, partition_time_metadata, plan_groups, plan_task, read_in_time_order,
};
use crate::task_stores::{self, StoreId, changelog_appends, expire_windows};
use crate::topology::{BuildError, Topology};
use millrace_ksml::config::RunnerConfig;
use millrace_ksml::model::Definition;

/// How often the supervisor serves the group and looks for the end of the run.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(20);
/// How long an idle worker waits for new records before looking again.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// A task commits once it holds this many output records, whatever the commit interval.
const MAX_PENDING_OUTPUTS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("{0}")]
    Log(#[from] LogError),
    #[error(
        "topic '{topic}' partition {partition} has no committed offset and its offsetResetPolicy is none"
    )]
    NoOffset { topic: String, partition: u32 },
    #[error("stopped on error (stopOnFail):\n{0}")]
    Stopped(String),
    #[error("{0}")]
    Store(String),
}

/// How a run went.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Input records processed by pipelines.
    pub records_processed: u64,
    /// Records pipelines wrote to topics.
    pub records_written: u64,
    /// Messages sent by producers.
    pub messages_produced: u64,
    /// Records windowed aggregations dropped for arriving after their window closed.
    pub late_records_dropped: u64,
    pub elapsed: Duration,
}

/// Options of one run.
#[derive(Clone)]
pub struct RunOptions {
    /// Stop once producers are done and every input is drained.
    pub until_idle: bool,
    /// Set to stop (Ctrl-C); workers finish their batch and commit first, and Python
    /// functions still running are interrupted.
    pub stop: Arc<AtomicBool>,
    /// A Python function running longer than this is reported (with its topic, partition
    /// and offset), then again at each doubling.
    pub slow_call_warning: Duration,
    /// Where persistent state stores live (one folder per application.id inside); without
    /// it, a definition with a persistent store does not start.
    pub state_dir: Option<PathBuf>,
    /// What the run has done so far, readable while it runs.
    pub counters: Arc<RunCounters>,
}

/// A run's counts, updated as it goes (a server shows them while the run goes on).
#[derive(Default)]
pub struct RunCounters {
    /// Input records processed by pipelines.
    pub processed: AtomicU64,
    /// Records pipelines wrote to topics.
    pub written: AtomicU64,
    /// Messages sent by producers.
    pub produced: AtomicU64,
    /// Records windowed aggregations dropped for arriving after their window closed.
    pub late: AtomicU64,
    /// Input records whose processing failed (the error handler logged, skipped or stopped).
    pub failed: AtomicU64,
    /// About how many entries each task's instance of each store held at its last commit,
    /// by store name and task.
    pub store_entries: Mutex<BTreeMap<(String, String), u64>>,
    /// The run's Python functions, once it started: where their time goes.
    pub python: OnceLock<Arc<CallWatch>>,
}

impl RunOptions {
    /// Options that report Python functions running over five seconds.
    pub fn new(until_idle: bool, stop: Arc<AtomicBool>) -> RunOptions {
        RunOptions {
            until_idle,
            stop,
            slow_call_warning: Duration::from_secs(5),
            state_dir: None,
            counters: Arc::default(),
        }
    }
}

impl RunCounters {
    /// About how many entries each store holds now, over all tasks.
    pub fn store_sizes(&self) -> BTreeMap<String, u64> {
        let mut sizes = BTreeMap::new();
        for ((store, _), entries) in self
            .store_entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            *sizes.entry(store.clone()).or_insert(0) += entries;
        }
        sizes
    }
}

/// Notes how many entries a task's stores hold, after a commit.
fn note_store_entries(shared: &Shared, task: &Task) {
    if task.stores.iter().all(Option::is_none) {
        return;
    }
    let mut entries = shared
        .counters
        .store_entries
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for (id, store) in task.stores.iter().enumerate() {
        if let Some(store) = store {
            let name = shared.topology.stores[id].spec.name.clone();
            entries.insert((name, task.id.clone()), store.approximate_len());
        }
    }
}

/// State shared between the workers, producers and the supervising thread.
struct Shared {
    topology: Topology,
    log: Arc<dyn Log>,
    config: RunnerConfig,
    stop: Arc<AtomicBool>,
    failure: Mutex<Option<String>>,
    counters: Arc<RunCounters>,
    producers_running: AtomicU64,
    /// `commit.interval.ms`.
    commit_interval: Duration,
    /// The window stores and how long they keep windows.
    window_retentions: Vec<(StoreId, i64)>,
    /// `cache.max.bytes.buffering` shared out over the tasks: a task whose store buffers hold
    /// more commits.
    cache_bytes_per_task: usize,
    /// How each source group's tasks are laid out.
    plans: Vec<GroupPlan>,
    /// Where persistent stores live.
    state: Option<StateDir>,
    /// Which worker runs which task, as the group assigns partitions.
    assignment: Arc<Assignment>,
}

impl Shared {
    fn fail(&self, message: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure.get_or_insert(message);
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Runs definitions (already loaded and free of errors) until stopped, idle or failed.
pub fn run(
    log: Arc<dyn Log>,
    definitions: &[Definition],
    config: RunnerConfig,
    options: RunOptions,
) -> Result<RunSummary, RunError> {
    run_then(log, definitions, config, options, |_, _| ()).map(|(summary, ())| summary)
}

/// Runs definitions like [`run`], then calls `after` with the topology while the tasks'
/// stores are lent to the calling thread (the first task holding each store), so that
/// Python store handles reach them: the test runner's assertions read stores this way.
pub fn run_then<R>(
    log: Arc<dyn Log>,
    definitions: &[Definition],
    config: RunnerConfig,
    options: RunOptions,
    after: impl FnOnce(Python<'_>, &Topology) -> R,
) -> Result<(RunSummary, R), RunError> {
    let started = Instant::now();
    let mut topology = Python::attach(|py| {
        Topology::build(
            py,
            definitions,
            log.as_ref(),
            config.application_id(),
            config.enable_pipelines,
            config.enable_producers,
        )
    })?;
    // As in Kafka Streams, no cache space means no caching: every update goes on at once.
    if config.cache_max_bytes() == 0 {
        for store in &mut topology.stores {
            Arc::make_mut(&mut store.spec).caching = false;
        }
    }
    // Global tables are loaded to the end of their topics before any record is processed.
    for global in &topology.globals {
        global.catch_up(log.as_ref())?;
    }
    let state = open_state_dir(&topology, &options, config.application_id())?;
    let plans = plan_groups(&topology, log.as_ref())?;
    let max_tasks = plans.iter().map(|p| p.task_count as usize).sum::<usize>();
    let commit_interval = config.commit_interval();
    let window_retentions = topology.window_retentions();
    let cache_bytes_per_task = config.cache_max_bytes() / max_tasks.max(1);
    let threads = config.stream_threads().min(max_tasks).max(1);
    let leading_topics: Vec<String> = plans.iter().map(|p| p.leading_topic.clone()).collect();
    let assignment = Arc::new(Assignment::new(
        &leading_topics,
        threads,
        options.stop.clone(),
    ));
    let membership = match leading_topics.is_empty() {
        true => None,
        false => {
            Some(log.join_group(config.application_id(), &leading_topics, assignment.clone())?)
        }
    };
    let watch = Arc::new(CallWatch::new(
        topology
            .functions
            .iter()
            .map(|f| f.py.context().to_string())
            .collect(),
        options.slow_call_warning,
        options.stop.clone(),
    ));
    let _ = options.counters.python.set(watch.clone());
    let watchdog = watch
        .start_watchdog()
        .expect("spawn the Python watchdog thread");
    let shared = Arc::new(Shared {
        topology,
        log,
        config,
        stop: options.stop.clone(),
        failure: Mutex::new(None),
        counters: options.counters.clone(),
        producers_running: AtomicU64::new(0),
        commit_interval,
        cache_bytes_per_task,
        window_retentions,
        plans,
        state,
        assignment,
    });
    let mut handles = Vec::new();
    let mut workers = Vec::new();
    for i in 0..threads {
        let (shared, watch) = (shared.clone(), watch.clone());
        workers.push(
            std::thread::Builder::new()
                .name(format!("stream-{i}"))
                .spawn(move || {
                    // A bug must stop the run with a message, not leave it waiting forever.
                    let work = std::panic::AssertUnwindSafe(|| worker(&shared, &watch, i));
                    std::panic::catch_unwind(work).unwrap_or_else(|_| {
                        shared.fail(format!("stream thread {i} failed unexpectedly (a bug)"));
                        Vec::new()
                    })
                })
                .expect("spawn worker thread"),
        );
    }
    for index in 0..shared.topology.producers.len() {
        let (shared, watch) = (shared.clone(), watch.clone());
        shared.producers_running.fetch_add(1, Ordering::SeqCst);
        handles.push(
            std::thread::Builder::new()
                .name(format!("producer-{index}"))
                .spawn(move || {
                    let plan = &shared.topology.producers[index];
                    let result = register(&watch).and_then(|watched| {
                        ProducerRun {
                            plan,
                            topology: &shared.topology,
                            log: shared.log.as_ref(),
                            handler: &shared.config.error_handling.process,
                            stop: &shared.stop,
                            task_timeout: shared.config.task_timeout(),
                            watched: &watched,
                        }
                        .run()
                        .map_err(|e| e.to_string())
                    });
                    match result {
                        Ok(sent) => {
                            shared.counters.produced.fetch_add(sent, Ordering::Relaxed);
                        }
                        Err(e) => shared.fail(e),
                    }
                    shared.producers_running.fetch_sub(1, Ordering::SeqCst);
                })
                .expect("spawn producer thread"),
        );
    }
    supervise(&shared, membership.as_deref(), options.until_idle);
    // Workers waiting for records would otherwise see the stop only when their wait times out.
    shared.log.wake_waiters();
    let mut tasks = Vec::new();
    for worker in workers {
        tasks.extend(worker.join().unwrap_or_default());
    }
    // Leaves the group once the tasks have committed.
    drop(membership);
    for handle in handles {
        let _ = handle.join();
    }
    watchdog.finish();
    let summary = RunSummary {
        records_processed: shared.counters.processed.load(Ordering::Relaxed),
        records_written: shared.counters.written.load(Ordering::Relaxed),
        messages_produced: shared.counters.produced.load(Ordering::Relaxed),
        late_records_dropped: shared.counters.late.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    };
    if let Some(message) = shared
        .failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        return Err(RunError::Stopped(message));
    }
    let mut stores: task_stores::TaskStores = Vec::new();
    stores.resize_with(shared.topology.stores.len(), || None);
    for task in tasks {
        for (id, store) in task.stores.into_iter().enumerate() {
            if stores[id].is_none() {
                stores[id] = store;
            }
        }
    }
    task_stores::lend(stores);
    let result = Python::attach(|py| after(py, &shared.topology));
    task_stores::take_back();
    Ok((summary, result))
}

/// Serves the group membership until a stop request, a failure, or (with `until_idle`) quiet:
/// producers done and every task of this process committed up to the end of its inputs,
/// twice in a row with no append between.
fn supervise(shared: &Shared, membership: Option<&dyn GroupMembership>, until_idle: bool) {
    let mut quiet_since: Option<u64> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        match membership {
            Some(member) => {
                if let Err(e) = member.poll(SUPERVISE_INTERVAL) {
                    tracing::warn!("consumer group: {e}");
                }
            }
            None => std::thread::sleep(SUPERVISE_INTERVAL),
        }
        if !until_idle || shared.producers_running.load(Ordering::SeqCst) > 0 {
            continue;
        }
        let generation = shared.log.append_generation();
        // Asking for the ends may wait for a cluster that does not answer: a stop meanwhile
        // ends the asking.
        let drained = shared.assignment.positions().is_some_and(|positions| {
            positions.iter().all(|(topic, partition, position)| {
                !shared.stop.load(Ordering::SeqCst)
                    && shared
                        .log
                        .offset_range(topic, *partition)
                        .is_ok_and(|(_, end)| position.load(Ordering::SeqCst) >= end)
            })
        });
        if !drained {
            quiet_since = None;
            continue;
        }
        match quiet_since {
            Some(seen) if seen == generation => shared.stop.store(true, Ordering::SeqCst),
            _ => quiet_since = Some(generation),
        }
    }
}

/// The state directory of the application, opened when some store is persistent.
fn open_state_dir(
    topology: &Topology,
    options: &RunOptions,
    application_id: &str,
) -> Result<Option<StateDir>, RunError> {
    if !topology.stores.iter().any(|s| s.spec.persistent) {
        return Ok(None);
    }
    let Some(dir) = &options.state_dir else {
        return Ok(None);
    };
    let dir = dir.join(application_id);
    let damaged = match StateDir::open(&dir) {
        Ok(state) => return Ok(Some(state)),
        Err(e) => e,
    };
    // Damaged state is rebuilt from the changelogs when every persistent store has one;
    // otherwise starting empty would silently lose state, so the run stops.
    let unlogged: Vec<&str> = topology
        .stores
        .iter()
        .filter(|s| s.spec.persistent && !s.spec.logging)
        .map(|s| s.spec.name.as_str())
        .collect();
    if !unlogged.is_empty() {
        return Err(RunError::Store(format!(
            "{damaged}; the persistent stores {} have no changelog to rebuild them from: \
             repair or remove {} (losing their state) to start",
            unlogged.join(", "),
            dir.display()
        )));
    }
    tracing::warn!(
        dir = %dir.display(),
        "cannot open the state stores ({damaged}); rebuilding them from their changelogs"
    );
    let aside = dir.with_extension(format!("damaged-{}", std::process::id()));
    std::fs::rename(&dir, &aside).map_err(|e| {
        RunError::Store(format!(
            "{damaged}; cannot move it aside to {}: {e}",
            aside.display()
        ))
    })?;
    StateDir::open(&dir)
        .map(Some)
        .map_err(|e| RunError::Store(e.to_string()))
}

/// Registers the calling thread with the watch.
fn register(watch: &CallWatch) -> Result<Arc<WatchedThread>, String> {
    Python::attach(|py| watch.register(py))
        .map_err(|e| format!("cannot watch a thread's Python calls: {e}"))
}

/// Runs the tasks the assignment gives this worker until the run stops; returns them (with
/// their stores) for the caller.
fn worker(shared: &Shared, watch: &CallWatch, index: usize) -> Vec<Task> {
    let group = shared.config.application_id().to_string();
    let mut tasks = Vec::new();
    let watched = match register(watch) {
        Ok(watched) => watched,
        Err(message) => {
            shared.fail(message);
            return tasks;
        }
    };
    let mut stalls = Stalls::new(shared.config.task_timeout());
    while !shared.stop.load(Ordering::SeqCst) {
        if let Err(message) =
            follow_assignment(shared, &group, index, &mut tasks, &watched, &mut stalls)
        {
            shared.fail(message);
            return tasks;
        }
        let generation = shared.log.append_generation();
        let mut worked = false;
        let mut refused = Vec::new();
        let mut unanswered = false;
        for (at, task) in tasks.iter_mut().enumerate() {
            if shared.stop.load(Ordering::SeqCst) || shared.assignment.changed_for(index) {
                worked = true;
                break;
            }
            match run_batch(shared, &group, task, &watched) {
                Ok(n) => {
                    worked |= n > 0;
                    // Records read, or nothing left uncommitted: the task is not stalled.
                    if n > 0 || task.pending.is_empty() {
                        stalls.clear(task.key);
                    }
                }
                Err(TaskError::Uncommitted(message)) => refused.push((at, Some(message))),
                // Named in a warning by the stalls.
                Err(TaskError::Unavailable(message)) => {
                    let what = format!("task {}", task.id);
                    if let Err(fatal) = stalls.failed(task.key, &what, &message) {
                        shared.fail(fatal);
                        return tasks;
                    }
                    unanswered = true;
                    refused.push((at, None));
                }
                Err(TaskError::Fatal(message)) => {
                    shared.fail(message);
                    return tasks;
                }
            }
        }
        // Tasks whose work did not commit start again from their committed offsets (if they
        // are still this member's): what they processed since is redone.
        for (at, message) in refused.into_iter().rev() {
            let task = tasks.remove(at);
            if let Some(message) = message {
                tracing::warn!(task = %task.id, "{message}; restarting the task from its committed offsets");
            }
            let key = task.key;
            release(shared, task);
            shared.assignment.restart(index, key);
        }
        if unanswered {
            sleep_until(&shared.stop, Instant::now() + RETRY_PAUSE);
        } else if !worked && !shared.stop.load(Ordering::SeqCst) {
            // Checked after `generation` was read: a stop from now on comes with
            // `wake_waiters`, which ends this wait.
            shared.log.wait_for_append(generation, IDLE_WAIT);
        }
    }
    // Stopping: what was processed since the last commit is committed now.
    for task in &mut tasks {
        match step(shared, &group, task, Vec::new(), true, &watched) {
            Ok(()) => {}
            Err(TaskError::Uncommitted(message) | TaskError::Unavailable(message)) => {
                tracing::warn!(task = %task.id, "{message}")
            }
            Err(TaskError::Fatal(message)) => {
                shared.fail(message);
                break;
            }
        }
    }
    tasks
}

/// Gives up the worker's tasks whose partitions are leaving this member (committing first
/// when they were revoked), and starts the next task given to it (one per call: restoring
/// a task's stores may take a while, and a revocation waits for the worker).
fn follow_assignment(
    shared: &Shared,
    group: &str,
    worker: usize,
    tasks: &mut Vec<Task>,
    watched: &WatchedThread,
    stalls: &mut Stalls,
) -> Result<(), String> {
    for (key, leave) in shared.assignment.leaving(worker) {
        if let Some(at) = tasks.iter().position(|t| t.key == key) {
            let mut task = tasks.swap_remove(at);
            if leave == Leave::Commit {
                match step(shared, group, &mut task, Vec::new(), true, watched) {
                    Ok(()) => {}
                    Err(TaskError::Uncommitted(message) | TaskError::Unavailable(message)) => {
                        tracing::warn!(task = %task.id, "{message}")
                    }
                    Err(TaskError::Fatal(message)) => return Err(message),
                }
            }
            release(shared, task);
        }
        // Its stall, if any, goes with it: a later owner counts afresh.
        stalls.clear(key);
        shared.assignment.left(worker, key);
    }
    if let Some(key) = shared.assignment.take_new(worker) {
        let planned = plan_task(
            &shared.topology,
            shared.log.as_ref(),
            group,
            shared.state.as_ref(),
            &shared.plans,
            key,
        );
        let what = format!("task {}_{}", key.group, key.partition);
        let task = match planned {
            Ok(task) => task,
            // Started again later, while the cluster does not answer for long.
            Err(RunError::Log(e @ LogError::Unavailable { .. })) => {
                stalls.failed(key, &what, &e.to_string())?;
                shared.assignment.restart(worker, key);
                sleep_until(&shared.stop, Instant::now() + RETRY_PAUSE);
                return Ok(());
            }
            Err(e) => return Err(format!("{what}: {e}")),
        };
        let positions = task
            .inputs
            .iter()
            .map(|input| {
                let topic = shared.topology.sources[input.source].topic.clone();
                (topic, input.partition, input.committed.clone())
            })
            .collect();
        shared.assignment.started(key, positions);
        tasks.push(task);
    }
    Ok(())
}

/// Lets a task go: its stores close (and leave the run's store sizes), and its partitions are
/// no longer fetched ahead.
fn release(shared: &Shared, task: Task) {
    for input in &task.inputs {
        let topic = &shared.topology.sources[input.source].topic;
        shared.log.stop_reading(topic, input.partition);
    }
    // Its stores' sizes go with it (a task started again notes them at its next commit).
    shared
        .counters
        .store_entries
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(_, id), _| *id != task.id);
    drop(task);
}

/// Why a task could not go on.
enum TaskError {
    /// The run must stop.
    Fatal(String),
    /// The task's work since its last commit was not committed (the group refused the commit,
    /// its partitions may have moved; or its transaction aborted): it starts again from its
    /// committed offsets.
    Uncommitted(String),
    /// The cluster did not answer a read or a commit (the error, without the task): as
    /// [`TaskError::Uncommitted`], after a pause, for as long as `task.timeout.ms` allows.
    Unavailable(String),
}

impl TaskError {
    /// A log error of a task, by what the task does about it.
    fn of(task: &Task, error: LogError) -> TaskError {
        let message = format!("task {}: {error}", task.id);
        match error {
            LogError::NotGroupMember { .. } | LogError::TransactionAborted { .. } => {
                TaskError::Uncommitted(message)
            }
            LogError::Unavailable { .. } => TaskError::Unavailable(error.to_string()),
            _ => TaskError::Fatal(message),
        }
    }
}

impl From<String> for TaskError {
    fn from(message: String) -> TaskError {
        TaskError::Fatal(message)
    }
}

/// Reads and processes one batch of a task, committing when it is time; returns how many
/// records it read.
fn run_batch(
    shared: &Shared,
    group: &str,
    task: &mut Task,
    watched: &WatchedThread,
) -> Result<usize, TaskError> {
    let batch = read_in_time_order(shared.log.as_ref(), &shared.topology, task)
        .map_err(|e| TaskError::of(task, e))?;
    // Offsets without records are passed over; the next commit takes the new positions.
    for (input, next) in &batch.skipped {
        task.inputs[*input].position = *next;
    }
    let read = batch.records.len();
    let elapsed = task
        .pending
        .since
        .is_some_and(|since| since.elapsed() >= shared.commit_interval);
    let buffered: usize = task
        .stores
        .iter()
        .flatten()
        .map(|s| s.buffered_bytes())
        .sum();
    // Commit when caught up, when the commit interval has passed, or when held results or
    // store buffers grow too big.
    let commit = !batch.more_waiting
        || elapsed
        || task.pending.outputs.len() >= MAX_PENDING_OUTPUTS
        || buffered >= shared.cache_bytes_per_task;
    if read == 0 && task.pending.is_empty() {
        return Ok(0);
    }
    step(shared, group, task, batch.records, commit, watched)?;
    Ok(read)
}

/// Processes records of a task, then commits when `commit` says so, or when a record stopped
/// processing.
fn step(
    shared: &Shared,
    group: &str,
    task: &mut Task,
    records: Vec<(usize, StoredRecord)>,
    commit: bool,
    watched: &WatchedThread,
) -> Result<(), TaskError> {
    if records.is_empty() && (!commit || task.pending.is_empty()) {
        return Ok(());
    }
    let topology = &shared.topology;
    for global in &topology.globals {
        global
            .catch_up(shared.log.as_ref())
            .map_err(|e| format!("global table '{}': {e}", global.name))?;
    }
    task_stores::lend(std::mem::take(&mut task.stores));
    let outcome = Python::attach(|py| {
        BatchProcessor::run(
            py,
            topology,
            shared.log.as_ref(),
            &shared.config.error_handling,
            task,
            records,
            commit,
            watched,
        )
    });
    task.stores = task_stores::take_back();
    for (input, next) in task.inputs.iter_mut().zip(&outcome.next_offsets) {
        input.position = *next;
    }
    if let Some(message) = outcome.flush_failed {
        return Err(format!("task {}: {message}", task.id).into());
    }
    let pending = &mut task.pending;
    pending.since.get_or_insert_with(Instant::now);
    pending.records += outcome.records as u64;
    pending.late += outcome.late_records;
    pending.failed += outcome.failed_records;
    pending.outputs.extend(outcome.outputs);
    if !outcome.flushed {
        return Ok(());
    }
    let offsets: Vec<CommittedOffset> = task
        .inputs
        .iter()
        .map(|input| CommittedOffset {
            topic: topology.sources[input.source].topic.clone(),
            partition: input.partition,
            offset: input.position,
            metadata: partition_time_metadata(input.partition_time),
        })
        .collect();
    let pending = std::mem::take(&mut task.pending);
    let written = pending.outputs.len() as u64;
    commit_task(shared, group, task, pending.outputs, &offsets)?;
    for input in &task.inputs {
        input.committed.store(input.position, Ordering::SeqCst);
    }
    note_store_entries(shared, task);
    shared
        .counters
        .processed
        .fetch_add(pending.records, Ordering::Relaxed);
    shared
        .counters
        .written
        .fetch_add(written, Ordering::Relaxed);
    shared
        .counters
        .late
        .fetch_add(pending.late, Ordering::Relaxed);
    shared
        .counters
        .failed
        .fetch_add(pending.failed, Ordering::Relaxed);
    match outcome.stopped {
        Some(message) => Err(message.into()),
        None => Ok(()),
    }
}

/// Commits a task: its outputs, its logged stores' changelog records and its input offsets
/// in one log entry, then the stores' buffered writes. A store without a changelog is
/// written first instead: after a crash between the two steps its records are processed
/// again (at least once) rather than lost.
fn commit_task(
    shared: &Shared,
    group: &str,
    task: &mut Task,
    outputs: Vec<Emitted>,
    offsets: &[CommittedOffset],
) -> Result<(), TaskError> {
    let failed = |e: millrace_stores::StoreError| format!("task {}: {e}", task.id);
    let stream_time = task
        .inputs
        .iter()
        .map(|i| i.partition_time)
        .max()
        .unwrap_or(0);
    let expired = expire_windows(
        &mut task.stores,
        &shared.window_retentions,
        stream_time,
        &mut task.state.windows_scanned,
    )
    .map_err(failed)?;
    if expired > 0 {
        tracing::debug!(
            task = task.id,
            expired,
            "deleted windows past their retention"
        );
    }
    for store in task.stores.iter_mut().flatten() {
        if !store.spec().logging {
            store.commit(None).map_err(failed)?;
        }
    }
    let changelogs = changelog_appends(
        &shared.topology.stores,
        &task.stores,
        task.partition,
        stream_time,
    );
    let mut appends = group_appends(outputs);
    let first_changelog = appends.len();
    let changelog_ends: Vec<(usize, u64)> = changelogs
        .iter()
        .map(|(id, append)| (*id, append.records.len() as u64))
        .collect();
    appends.extend(changelogs.into_iter().map(|(_, append)| append));
    let bases = shared
        .log
        .append_and_commit(appends, group, offsets)
        .map_err(|e| TaskError::of(task, e))?;
    let mut checkpoints = vec![None; task.stores.len()];
    for (i, (id, count)) in changelog_ends.into_iter().enumerate() {
        checkpoints[id] = Some(bases[first_changelog + i] + count);
    }
    for (id, store) in task.stores.iter_mut().enumerate() {
        if let Some(store) = store
            && store.spec().logging
        {
            store.commit(checkpoints[id]).map_err(failed)?;
        }
    }
    Ok(())
}

/// Groups emitted records by topic and partition, keeping their order within each.
fn group_appends(outputs: Vec<Emitted>) -> Vec<Append> {
    let mut groups: Vec<(Arc<str>, u32, Vec<millrace_log::Record>)> = Vec::new();
    for emitted in outputs {
        let same = |(topic, partition, _): &&mut (Arc<str>, u32, _)| {
            *partition == emitted.partition
                && (Arc::ptr_eq(topic, &emitted.topic) || *topic == emitted.topic)
        };
        match groups.iter_mut().find(same) {
            Some((_, _, records)) => records.push(emitted.record),
            None => groups.push((emitted.topic, emitted.partition, vec![emitted.record])),
        }
    }
    groups
        .into_iter()
        .map(|(topic, partition, records)| Append {
            topic: topic.to_string(),
            partition,
            records,
        })
        .collect()
}

//! Tasks follow the partitions the consumer group gives this process. Each source group has a
//! leading topic (its largest source topic): partition `p` of it stands for the group's task
//! `p`, so one member owns partition `p` of every topic of the group, as joins need. The
//! group's listener ([`Assignment`]) hands new tasks to the worker running the fewest, and
//! has a worker commit and give up a task whose partition is revoked before the group moves
//! it on.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use millrace_log::{RebalanceListener, TopicPartition};

/// How long a member given no partitions waits before `--until-idle` counts it as idle:
/// after an empty first assignment, a cooperative rebalance usually brings its share.
const EMPTY_ASSIGNMENT_GRACE: Duration = Duration::from_secs(10);

/// A task: its source group (index in [`crate::task::GroupPlan`]s) and partition number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskKey {
    pub group: usize,
    pub partition: u32,
}

/// How a task leaves its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// Its partition was revoked: it commits what it processed first.
    Commit,
    /// Its partition was lost (another member may own it already): uncommitted work is
    /// dropped.
    Drop,
}

/// An input's committed position, which the supervisor watches for the end of the input.
pub type Position = (String, u32, Arc<AtomicU64>);

/// Who runs which task, shared by the group's listener, the workers and the supervisor.
pub struct Assignment {
    /// Source groups by their leading topic.
    leading: HashMap<String, Vec<usize>>,
    board: Mutex<Board>,
    /// Signalled when a task leaves its worker.
    left: Condvar,
    /// Per worker: tasks wait in its inbox, or some of its tasks must leave. Kept with every
    /// change of the board, so that workers look before each batch without taking its lock.
    attention: Vec<AtomicBool>,
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct Board {
    /// Per worker: tasks given to it that it has not started yet.
    inbox: Vec<Vec<TaskKey>>,
    /// Per worker: the tasks it runs (started, or being started).
    running: Vec<HashSet<TaskKey>>,
    /// Tasks that must leave their worker, and how.
    leaving: HashMap<TaskKey, Leave>,
    /// The committed positions of running tasks' inputs.
    positions: HashMap<TaskKey, Vec<Position>>,
    /// The group has assigned this member partitions at least once.
    assigned: bool,
    /// Since when the group has assigned this member nothing (a cooperative rebalance gives
    /// a new member an empty assignment first, then its share).
    empty_since: Option<Instant>,
}

impl Assignment {
    /// An assignment for `workers` workers over source groups with these leading topics.
    pub fn new(leading_topics: &[String], workers: usize, stop: Arc<AtomicBool>) -> Assignment {
        let mut leading: HashMap<String, Vec<usize>> = HashMap::new();
        for (group, topic) in leading_topics.iter().enumerate() {
            leading.entry(topic.clone()).or_default().push(group);
        }
        Assignment {
            leading,
            board: Mutex::new(Board {
                inbox: vec![Vec::new(); workers],
                running: vec![HashSet::new(); workers],
                // With nothing to read there is no group to wait for.
                assigned: leading_topics.is_empty(),
                ..Board::default()
            }),
            left: Condvar::new(),
            attention: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            stop,
        }
    }

    fn board(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets each worker's attention flag from the board (called after every change to it).
    fn flag_workers(&self, board: &Board) {
        for (worker, flag) in self.attention.iter().enumerate() {
            let wanted = !board.inbox[worker].is_empty()
                || board.running[worker]
                    .iter()
                    .any(|key| board.leaving.contains_key(key));
            flag.store(wanted, Ordering::SeqCst);
        }
    }

    /// The tasks these partitions stand for.
    fn tasks_of(&self, partitions: &[TopicPartition]) -> Vec<TaskKey> {
        partitions
            .iter()
            .flat_map(|tp| {
                self.leading
                    .get(&tp.topic)
                    .into_iter()
                    .flatten()
                    .map(|&group| TaskKey {
                        group,
                        partition: tp.partition,
                    })
            })
            .collect()
    }

    /// Takes the next task given to a worker; it counts as running. One at a time, so that
    /// a worker restoring new tasks' stores looks at revocations in between.
    pub fn take_new(&self, worker: usize) -> Option<TaskKey> {
        let mut board = self.board();
        if board.inbox[worker].is_empty() {
            return None;
        }
        let key = board.inbox[worker].remove(0);
        board.running[worker].insert(key);
        self.flag_workers(&board);
        Some(key)
    }

    /// Tasks were given to the worker, or some of its tasks must leave it: it should look
    /// before its next batch, since a group waits for revoked tasks.
    pub fn changed_for(&self, worker: usize) -> bool {
        self.attention[worker].load(Ordering::SeqCst)
    }

    /// The worker's tasks that must leave it, and how.
    pub fn leaving(&self, worker: usize) -> Vec<(TaskKey, Leave)> {
        let board = self.board();
        board.running[worker]
            .iter()
            .filter_map(|key| board.leaving.get(key).map(|leave| (*key, *leave)))
            .collect()
    }

    /// A worker started a task; these are its inputs' positions.
    pub fn started(&self, key: TaskKey, positions: Vec<Position>) {
        self.board().positions.insert(key, positions);
    }

    /// A worker gave up a task.
    pub fn left(&self, worker: usize, key: TaskKey) {
        let mut board = self.board();
        board.running[worker].remove(&key);
        board.leaving.remove(&key);
        board.positions.remove(&key);
        self.flag_workers(&board);
        drop(board);
        self.left.notify_all();
    }

    /// A task's commit was refused by the group (it may have moved): the worker dropped it,
    /// and starts it again from the committed offsets unless it is leaving.
    pub fn restart(&self, worker: usize, key: TaskKey) {
        let mut board = self.board();
        board.positions.remove(&key);
        board.running[worker].remove(&key);
        let leaving = board.leaving.remove(&key).is_some();
        if !leaving {
            board.inbox[worker].push(key);
        }
        self.flag_workers(&board);
        drop(board);
        if leaving {
            self.left.notify_all();
        }
    }

    /// The positions of every running task's inputs, once the group has assigned partitions
    /// and every task given out has started; None before.
    pub fn positions(&self) -> Option<Vec<Position>> {
        let board = self.board();
        let empty_long_enough = board
            .empty_since
            .is_some_and(|since| since.elapsed() >= EMPTY_ASSIGNMENT_GRACE);
        let settled =
            (board.assigned || empty_long_enough) && board.inbox.iter().all(Vec::is_empty);
        let started =
            board.positions.len() == board.running.iter().map(HashSet::len).sum::<usize>();
        (settled && started).then(|| board.positions.values().flatten().cloned().collect())
    }

    /// Marks tasks to leave, takes back those not started, and waits until the workers have
    /// let the rest go (or the run stops).
    fn take_away(&self, partitions: &[TopicPartition], leave: Leave) {
        let keys = self.tasks_of(partitions);
        let mut board = self.board();
        for key in &keys {
            for inbox in &mut board.inbox {
                inbox.retain(|k| k != key);
            }
            if board.running.iter().any(|r| r.contains(key)) {
                board.leaving.insert(*key, leave);
            }
        }
        self.flag_workers(&board);
        while !self.stop.load(Ordering::SeqCst)
            && keys.iter().any(|k| board.leaving.contains_key(k))
        {
            board = self
                .left
                .wait_timeout(board, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl RebalanceListener for Assignment {
    /// Each new task goes to the worker with the fewest.
    fn assigned(&self, partitions: &[TopicPartition]) {
        let keys = self.tasks_of(partitions);
        let mut board = self.board();
        if keys.is_empty() {
            board.empty_since.get_or_insert_with(Instant::now);
        } else {
            board.assigned = true;
        }
        for key in keys {
            let load = |w: usize| board.inbox[w].len() + board.running[w].len();
            let worker = (0..board.inbox.len())
                .min_by_key(|&w| load(w))
                .expect("at least one worker");
            board.inbox[worker].push(key);
        }
        self.flag_workers(&board);
        drop(board);
        tracing::info!("partitions assigned: {}", listed(partitions));
    }

    fn revoked(&self, partitions: &[TopicPartition]) {
        tracing::info!("partitions revoked: {}", listed(partitions));
        self.take_away(partitions, Leave::Commit);
    }

    fn lost(&self, partitions: &[TopicPartition]) {
        tracing::warn!(
            "partitions lost (this process left the group or timed out): {}; \
             their uncommitted work is redone by their next owner",
            listed(partitions)
        );
        self.take_away(partitions, Leave::Drop);
    }
}

/// Partitions as `topic/partition, ...`.
fn listed(partitions: &[TopicPartition]) -> String {
    let names: Vec<String> = partitions
        .iter()
        .map(|tp| format!("{}/{}", tp.topic, tp.partition))
        .collect();
    names.join(", ")
}

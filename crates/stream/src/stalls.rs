//! Work held up by a cluster that does not answer, retried the way Kafka Streams retries it
//! up to `task.timeout.ms`: the time counts from a task's first failure and starts over once
//! it makes progress; past it the run stops, naming the task and the last error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::assignment::TaskKey;

/// How long work waits after the cluster did not answer before it tries again: the failed
/// attempt itself usually waited for the client's timeout, but an unreachable broker can
/// also fail at once, and retrying at once would spin.
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// One piece of work's failures since it last made progress.
#[derive(Debug, Default)]
pub struct Stall {
    since: Option<Instant>,
}

impl Stall {
    /// Notes that the cluster did not answer `what` (a task or producer named for the
    /// message) with `error`: Ok while `limit` has not passed since the first failure,
    /// otherwise the message that stops the run.
    pub fn failed(&mut self, limit: Duration, what: &str, error: &str) -> Result<(), String> {
        self.failed_at(Instant::now(), limit, what, error)
    }

    /// [`Stall::failed`] at a given time.
    fn failed_at(
        &mut self,
        now: Instant,
        limit: Duration,
        what: &str,
        error: &str,
    ) -> Result<(), String> {
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) < limit {
            tracing::warn!(
                "{what}: {error}; trying again (for up to task.timeout.ms, {} ms)",
                limit.as_millis()
            );
            return Ok(());
        }
        Err(format!(
            "{what} did not make progress within {} ms (task.timeout.ms): {error}",
            limit.as_millis()
        ))
    }

    /// The work made progress: a later failure starts the count again.
    pub fn progressed(&mut self) {
        self.since = None;
    }
}

/// The stalls of a worker's tasks.
#[derive(Debug)]
pub struct Stalls {
    limit: Duration,
    tasks: HashMap<TaskKey, Stall>,
}

impl Stalls {
    /// Stalls that may last `limit` (`task.timeout.ms`).
    pub fn new(limit: Duration) -> Stalls {
        Stalls {
            limit,
            tasks: HashMap::new(),
        }
    }

    /// See [`Stall::failed`].
    pub fn failed(&mut self, key: TaskKey, what: &str, error: &str) -> Result<(), String> {
        self.tasks
            .entry(key)
            .or_default()
            .failed(self.limit, what, error)
    }

    /// The task made progress, or left this worker: a later failure counts afresh.
    pub fn clear(&mut self, key: TaskKey) {
        self.tasks.remove(&key);
    }
}

/// Waits until `until`, or less when `stop` is set meanwhile.
pub fn sleep_until(stop: &AtomicBool, until: Instant) {
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_fails_the_run_only_past_its_limit_since_the_first_failure() {
        let mut stall = Stall::default();
        let limit = Duration::from_millis(200);
        let start = Instant::now();
        let at = |millis| start + Duration::from_millis(millis);
        assert!(
            stall
                .failed_at(at(0), limit, "task 0_1", "no answer")
                .is_ok()
        );
        assert!(
            stall
                .failed_at(at(120), limit, "task 0_1", "no answer")
                .is_ok()
        );
        // Progress starts the count again.
        stall.progressed();
        assert!(
            stall
                .failed_at(at(240), limit, "task 0_1", "no answer")
                .is_ok()
        );
        assert!(
            stall
                .failed_at(at(439), limit, "task 0_1", "no answer")
                .is_ok()
        );
        let message = stall
            .failed_at(at(440), limit, "task 0_1", "no answer")
            .unwrap_err();
        assert_eq!(
            message,
            "task 0_1 did not make progress within 200 ms (task.timeout.ms): no answer"
        );
    }
}

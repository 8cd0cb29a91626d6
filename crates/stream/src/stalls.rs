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
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() < limit {
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

    /// See [`Stall::progressed`].
    pub fn progressed(&mut self, key: TaskKey) {
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
        assert!(stall.failed(limit, "task 0_1", "no answer").is_ok());
        std::thread::sleep(Duration::from_millis(120));
        assert!(stall.failed(limit, "task 0_1", "no answer").is_ok());
        // Progress starts the count again.
        stall.progressed();
        std::thread::sleep(Duration::from_millis(120));
        assert!(stall.failed(limit, "task 0_1", "no answer").is_ok());
        std::thread::sleep(Duration::from_millis(220));
        let message = stall.failed(limit, "task 0_1", "no answer").unwrap_err();
        assert_eq!(
            message,
            "task 0_1 did not make progress within 200 ms (task.timeout.ms): no answer"
        );
    }
}

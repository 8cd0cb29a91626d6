//! A counter of record arrivals (this process's appends, and records reaching a partition's
//! queue) that readers wait on: the Kafka log's `append_generation` and `wait_for_append`.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Arrivals {
    count: Mutex<u64>,
    changed: Condvar,
}

impl Arrivals {
    /// Counts an arrival and wakes the waiting readers.
    pub fn notify(&self) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.changed.notify_all();
    }

    pub fn generation(&self) -> u64 {
        *self.count.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until an arrival after `generation` was read, or `timeout` passes.
    pub fn wait(&self, generation: u64, timeout: Duration) {
        let guard = self.count.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .changed
            .wait_timeout_while(guard, timeout, |current| *current == generation);
    }
}

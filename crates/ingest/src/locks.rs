//! Interval locks: a task that rewrites or deletes segments (compaction, kill) holds the
//! interval it works on, so that no two such tasks ever work on the same rows at once.
//!
//! Streaming appends take no lock: they are never blocked, and a compaction that finds rows
//! appended to its interval meanwhile carries them over when it publishes (see
//! `compact::commit`), as Druid's concurrent append and replace locks do.

use std::sync::{Arc, Mutex};

use millrace_segments::time::format_interval;

#[derive(Debug, Clone)]
struct Held {
    id: u64,
    task: String,
    datasource: String,
    interval: (i64, i64),
}

/// The last lock number given, and the locks held now.
type Table = Arc<Mutex<(u64, Vec<Held>)>>;

/// The locks held now.
#[derive(Debug, Default)]
pub struct IntervalLocks {
    held: Table,
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct IntervalLock {
    id: u64,
    held: Table,
}

impl Drop for IntervalLock {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.1.retain(|h| h.id != self.id);
    }
}

impl IntervalLocks {
    /// Takes the lock on `[start, end)` of a datasource for `task`, or says which task holds
    /// an overlapping one.
    pub fn try_lock(
        &self,
        task: &str,
        datasource: &str,
        interval: (i64, i64),
    ) -> Result<IntervalLock, String> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(other) = held.1.iter().find(|h| {
            h.datasource == datasource && h.interval.0 < interval.1 && interval.0 < h.interval.1
        }) {
            return Err(format!(
                "task '{}' is working on {} of '{datasource}'",
                other.task,
                format_interval(other.interval)
            ));
        }
        held.0 += 1;
        let id = held.0;
        held.1.push(Held {
            id,
            task: task.to_string(),
            datasource: datasource.to_string(),
            interval,
        });
        Ok(IntervalLock {
            id,
            held: self.held.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_intervals_of_a_datasource_exclude_each_other_until_released() {
        let locks = IntervalLocks::default();
        let first = locks.try_lock("compact_1", "posts", (0, 10)).unwrap();
        assert_eq!(
            locks.try_lock("kill_1", "posts", (5, 20)).unwrap_err(),
            "task 'compact_1' is working on 1970-01-01T00:00:00.000Z/1970-01-01T00:00:00.010Z of 'posts'"
        );
        let _beside = locks.try_lock("compact_2", "posts", (10, 20)).unwrap();
        let _other = locks.try_lock("compact_3", "likes", (0, 10)).unwrap();
        drop(first);
        assert!(locks.try_lock("kill_1", "posts", (5, 9)).is_ok());
    }
}

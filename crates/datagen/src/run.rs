//! Running a simulation into a sink: as fast as it goes, or paced to the wall clock, with
//! progress others can read while it runs and a stop flag that ends it cleanly.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::simulation::{Simulation, Step};
use crate::target::{Sink, now_ms};

/// How often buffered records are flushed while a job runs, so readers see them soon.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// How the simulated clock relates to the wall clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Records are made as fast as the target takes them.
    Simulated,
    /// No record is made before its time on the wall clock: a start in the past is caught up
    /// at full speed, then records come in real time.
    WallClock,
}

/// A running job's figures, updated as it goes.
#[derive(Debug, Default)]
pub struct Progress {
    pub records: AtomicU64,
    pub active_sessions: AtomicUsize,
    /// The simulated clock, epoch milliseconds.
    pub clock_ms: AtomicI64,
}

/// Runs until the simulation's limit or `stop`; everything made is flushed to the sink
/// before it returns, also when stopped.
pub fn run(
    simulation: &mut Simulation,
    sink: &mut dyn Sink,
    pacing: Pacing,
    progress: &Progress,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut record = Vec::with_capacity(512);
    let mut flushed = Instant::now();
    let publish = |simulation: &Simulation| {
        progress
            .records
            .store(simulation.records(), Ordering::Relaxed);
        progress
            .active_sessions
            .store(simulation.active_sessions(), Ordering::Relaxed);
        progress
            .clock_ms
            .store(simulation.clock_ms(), Ordering::Relaxed);
    };
    while !stop.load(Ordering::Relaxed) {
        let not_after = match pacing {
            Pacing::WallClock => Some(now_ms()),
            Pacing::Simulated => None,
        };
        match simulation.next_record(&mut record, not_after) {
            Step::Done => break,
            Step::NotYet(due) => {
                sink.flush()?;
                publish(simulation);
                let wait = (due - now_ms()).clamp(1, 100);
                std::thread::sleep(Duration::from_millis(wait as u64));
            }
            Step::Record(_) => {
                sink.write(&record)?;
                if simulation.records().is_multiple_of(256) {
                    publish(simulation);
                    if flushed.elapsed() >= FLUSH_EVERY {
                        sink.flush()?;
                        flushed = Instant::now();
                    }
                }
            }
        }
    }
    sink.flush()?;
    publish(simulation);
    Ok(())
}

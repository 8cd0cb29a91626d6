//! Watching Python calls from outside the threads that make them: a call that runs long is
//! reported with what it was working on, and when a run stops, calls still in progress are
//! interrupted by raising `KeyboardInterrupt` in them, so that an endless function cannot
//! keep the process from stopping.
//!
//! Threads only bump counters around each call (no clock, no lock), and a watchdog thread
//! samples them a few times a second.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// How often the watchdog looks at the threads.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// `offset` of a thread that is not working on a record.
const NO_OFFSET: u64 = u64::MAX;

/// What one thread is doing in Python, as the watchdog sees it.
pub struct WatchedThread {
    /// Python's identifier of the thread (`threading.get_ident()`), to raise in it.
    ident: u64,
    /// Calls begun plus calls ended: odd while a call is in progress.
    calls: AtomicU64,
    /// The function being called: an index into the watch's function names.
    function: AtomicUsize,
    /// The offset of the record being processed, or [`NO_OFFSET`].
    offset: AtomicU64,
    /// What the thread works on, e.g. "topic 'input' partition 3".
    place: Mutex<Arc<str>>,
    /// The run's stop flag.
    stop: Arc<AtomicBool>,
}

impl WatchedThread {
    /// Says what the thread works on now; reports name it.
    pub fn set_place(&self, place: Arc<str>) {
        *self.place.lock().unwrap_or_else(|p| p.into_inner()) = place;
    }

    /// Whether the run is stopping: a call failing now may have been interrupted, and what
    /// it was doing is left for the next run.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Says which record the thread processes now.
    pub fn set_offset(&self, offset: u64) {
        self.offset.store(offset, Ordering::Relaxed);
    }

    /// Marks the start of a call of function `function`; the call ends when the guard drops.
    pub fn enter(&self, function: usize) -> CallGuard<'_> {
        self.function.store(function, Ordering::Relaxed);
        self.count_call_edge();
        CallGuard(self)
    }

    /// Counts a call's start or end. Only the watched thread writes the counter, so a load
    /// and a store do, without the cost of an atomic read-modify-write on every call.
    fn count_call_edge(&self) {
        let calls = self.calls.load(Ordering::Relaxed);
        self.calls.store(calls + 1, Ordering::Release);
    }
}

/// A call in progress; dropping it marks the call's end.
pub struct CallGuard<'a>(&'a WatchedThread);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.0.count_call_edge();
    }
}

/// The watchdog thread of a [`CallWatch`].
pub struct Watchdog {
    /// Dropped to finish: the watchdog waits between looks on its receiver, so the drop ends
    /// the wait at once instead of adding up to a look's interval to every run's shutdown.
    finish: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Watchdog {
    /// Ends the watchdog and waits for it.
    pub fn finish(self) {
        drop(self.finish);
        let _ = self.thread.join();
    }
}

/// The threads of a run that call Python functions, and the names of those functions.
pub struct CallWatch {
    /// What each function index stands for, e.g. "function 'f' in app.yaml".
    functions: Vec<String>,
    threads: Mutex<Vec<Arc<WatchedThread>>>,
    /// Calls running longer than this are reported (then again at each doubling).
    slow_after: Duration,
    /// The run's stop flag: once set, calls in progress are interrupted.
    stop: Arc<AtomicBool>,
    /// Per function, how many of the watchdog's looks found a thread in it: an estimate of
    /// where Python time goes that costs the calls nothing.
    busy_samples: Vec<AtomicU64>,
}

impl CallWatch {
    pub fn new(functions: Vec<String>, slow_after: Duration, stop: Arc<AtomicBool>) -> CallWatch {
        CallWatch {
            busy_samples: functions.iter().map(|_| AtomicU64::new(0)).collect(),
            functions,
            threads: Mutex::new(Vec::new()),
            slow_after,
            stop,
        }
    }

    /// Registers the calling thread; it reports its calls on the returned handle.
    pub fn register(&self, py: Python<'_>) -> PyResult<Arc<WatchedThread>> {
        let ident: u64 = py
            .import("threading")?
            .getattr("get_ident")?
            .call0()?
            .extract()?;
        let thread = Arc::new(WatchedThread {
            ident,
            calls: AtomicU64::new(0),
            function: AtomicUsize::new(0),
            offset: AtomicU64::new(NO_OFFSET),
            place: Mutex::new(Arc::from("")),
            stop: self.stop.clone(),
        });
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(thread.clone());
        Ok(thread)
    }

    /// Starts the watchdog: it reports slow calls and interrupts calls in progress once the
    /// run stops, until [`Watchdog::finish`].
    pub fn start_watchdog(self: &Arc<Self>) -> std::io::Result<Watchdog> {
        let watch = self.clone();
        let (finish, finished) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("python-watchdog".into())
            .spawn(move || watch.watch(&finished))?;
        Ok(Watchdog { finish, thread })
    }

    fn watch(&self, finished: &mpsc::Receiver<()>) {
        // Per thread: the call counter last seen, since when, and when to report next.
        let mut seen: Vec<(u64, Instant, Duration)> = Vec::new();
        // Nothing is ever sent: the wait ends by timing out (time for a look) or by
        // `Watchdog::finish` dropping the sender.
        while let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(SAMPLE_EVERY) {
            let threads = self
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            seen.resize(threads.len(), (0, Instant::now(), self.slow_after));
            for (thread, (last_calls, since, report_at)) in threads.iter().zip(seen.iter_mut()) {
                let calls = thread.calls.load(Ordering::Acquire);
                if calls % 2 == 0 {
                    continue;
                }
                if let Some(samples) = self
                    .busy_samples
                    .get(thread.function.load(Ordering::Relaxed))
                {
                    samples.fetch_add(1, Ordering::Relaxed);
                }
                if calls != *last_calls {
                    (*last_calls, *since, *report_at) = (calls, Instant::now(), self.slow_after);
                }
                if self.stop.load(Ordering::SeqCst) {
                    interrupt(thread, calls);
                } else if since.elapsed() >= *report_at {
                    self.report_slow(thread, since.elapsed());
                    *report_at *= 2;
                }
            }
        }
    }

    /// Each function (as reports name it) and the seconds threads were seen running it,
    /// estimated from the watchdog's looks every [`SAMPLE_EVERY`].
    pub fn busy_seconds(&self) -> Vec<(String, f64)> {
        self.functions
            .iter()
            .zip(&self.busy_samples)
            .map(|(name, samples)| {
                let seen = samples.load(Ordering::Relaxed) as f64;
                (name.clone(), seen * SAMPLE_EVERY.as_secs_f64())
            })
            .collect()
    }

    fn report_slow(&self, thread: &WatchedThread, running: Duration) {
        let function = self
            .functions
            .get(thread.function.load(Ordering::Relaxed))
            .map_or("a function", String::as_str);
        let place = thread
            .place
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let offset = match thread.offset.load(Ordering::Relaxed) {
            NO_OFFSET => String::new(),
            offset => format!(" offset {offset}"),
        };
        tracing::warn!(
            "{function} has been running for {:.1}s on {place}{offset}",
            running.as_secs_f64()
        );
    }
}

/// Raises `KeyboardInterrupt` in a thread's Python call at its next bytecode, if the call seen
/// as `calls` is still in progress once the interpreter lock is taken (CPython hands the lock
/// over at its switch interval while that thread runs Python code). A call that ended
/// meanwhile is left alone, so the exception cannot land in code after it.
fn interrupt(thread: &WatchedThread, calls: u64) {
    Python::attach(|py| {
        if thread.calls.load(Ordering::Acquire) != calls {
            return;
        }
        let exception = py.get_type::<pyo3::exceptions::PyKeyboardInterrupt>();
        // SAFETY: the interpreter lock is held, and the exception type is a live object.
        // CPython takes its own reference to it.
        unsafe {
            pyo3::ffi::PyThreadState_SetAsyncExc(thread.ident as _, exception.as_ptr());
        }
    });
}

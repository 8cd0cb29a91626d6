//! The `millrace_native` module: what Python's `log` and `metrics` objects call into.

use std::collections::BTreeMap;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyModule;
use tracing::Level;

/// Log levels as the support module numbers them.
fn level(n: u8) -> Level {
    match n {
        0 => Level::TRACE,
        1 => Level::DEBUG,
        2 => Level::INFO,
        3 => Level::WARN,
        _ => Level::ERROR,
    }
}

#[pyfunction]
fn emit(level_number: u8, logger: &str, message: &str) {
    match level(level_number) {
        Level::TRACE => tracing::trace!(target: "ksml", "{logger}: {message}"),
        Level::DEBUG => tracing::debug!(target: "ksml", "{logger}: {message}"),
        Level::INFO => tracing::info!(target: "ksml", "{logger}: {message}"),
        Level::WARN => tracing::warn!(target: "ksml", "{logger}: {message}"),
        _ => tracing::error!(target: "ksml", "{logger}: {message}"),
    }
}

#[pyfunction]
fn enabled(level_number: u8) -> bool {
    match level(level_number) {
        Level::TRACE => tracing::enabled!(target: "ksml", Level::TRACE),
        Level::DEBUG => tracing::enabled!(target: "ksml", Level::DEBUG),
        Level::INFO => tracing::enabled!(target: "ksml", Level::INFO),
        Level::WARN => tracing::enabled!(target: "ksml", Level::WARN),
        _ => tracing::enabled!(target: "ksml", Level::ERROR),
    }
}

/// A user-defined metric's totals.
#[derive(Debug, Clone, PartialEq)]
pub struct UserMetric {
    /// `counter`, `meter` or `timer`.
    pub kind: String,
    pub name: String,
    /// `k=v,k=v`.
    pub tags: String,
    /// How many updates (increments, marks, timings).
    pub updates: u64,
    /// Sum of the amounts (counts, marks, milliseconds).
    pub total: f64,
}

/// (kind, name, tags) of a user metric.
type MetricKey = (String, String, String);

/// Updates and total amount per user metric.
static USER_METRICS: Mutex<BTreeMap<MetricKey, (u64, f64)>> = Mutex::new(BTreeMap::new());

#[pyfunction]
fn metric(kind: &str, name: &str, tags: &str, amount: f64) {
    let mut metrics = USER_METRICS.lock().unwrap_or_else(|p| p.into_inner());
    let entry = metrics
        .entry((kind.to_string(), name.to_string(), tags.to_string()))
        .or_insert((0, 0.0));
    entry.0 += 1;
    entry.1 += amount;
}

/// The user-defined metrics recorded so far.
pub fn user_metrics() -> Vec<UserMetric> {
    USER_METRICS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|((kind, name, tags), (updates, total))| UserMetric {
            kind: kind.clone(),
            name: name.clone(),
            tags: tags.clone(),
            updates: *updates,
            total: *total,
        })
        .collect()
}

/// Registers the module in `sys.modules` so the support code can import it.
pub fn install(py: Python<'_>) -> PyResult<()> {
    let module = PyModule::new(py, "millrace_native")?;
    module.add_function(wrap_pyfunction!(emit, &module)?)?;
    module.add_function(wrap_pyfunction!(enabled, &module)?)?;
    module.add_function(wrap_pyfunction!(metric, &module)?)?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("millrace_native", module)?;
    Ok(())
}

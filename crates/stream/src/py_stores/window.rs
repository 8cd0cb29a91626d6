//! Window stores in Python, plain and timestamped.

// pyo3's class macros expand to fully qualified paths through the re-exported crate.
#![allow(unused_qualifications)]

use bytes::Bytes;
use millrace_python::pyo3::prelude::*;
use millrace_python::pyo3::types::PyList;
use millrace_stores::keys;
use millrace_types::DataType;

use super::{EntryFormat, StoreAccess, key_value, reversed};
use crate::task_stores::StoreId;

/// A window store as Python sees it, as on Kafka Streams' `WindowStore`:
/// `put(key, value, windowStartTimestamp)`, `fetch(key, time)` (the value of the window
/// starting then), `fetch(key, timeFrom, timeTo)` and `backwardFetch(...)` (`(windowStart,
/// value)` entries), `fetchAll(timeFrom, timeTo)` and `all()` (entries keyed by
/// `{start, end, startTime, endTime, key}`). A timestamped window store gives values as
/// `{value, timestamp}`, and `put` takes the timestamp after the window start (the window
/// start when left out).
#[pyclass(crate = "millrace_python::pyo3", name = "WindowStore", frozen)]
pub struct WindowStoreHandle {
    access: StoreAccess,
    /// Milliseconds from a window's start to its end.
    window_size: i64,
}

impl WindowStoreHandle {
    pub fn new(
        name: &str,
        store: StoreId,
        key_type: DataType,
        value_type: DataType,
        window_size: i64,
        timestamped: bool,
    ) -> WindowStoreHandle {
        let format = match timestamped {
            true => EntryFormat::Timestamped,
            false => EntryFormat::Plain,
        };
        WindowStoreHandle {
            access: StoreAccess::new(name, store, key_type, value_type, format),
            window_size,
        }
    }

    /// The windows of `key` starting from `from` to `to`, as (start, entry) in time order.
    fn windows_of(&self, key: &Bytes, from: i64, to: i64) -> PyResult<Vec<(i64, Bytes)>> {
        let (lower, upper) = (
            keys::window_lower_bound(key, from),
            keys::window_upper_bound(key, to),
        );
        Ok(self
            .access
            .scan(&lower, &upper)?
            .into_iter()
            .filter_map(|(k, v)| keys::parse_window_key(&k).map(|(_, start, _)| (start, v)))
            .collect())
    }

    /// Entries keyed by the windowed key dict, for windows starting from `from` to `to`.
    fn windowed_entries<'py>(
        &self,
        py: Python<'py>,
        from: i64,
        to: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        let entries = self.access.with(|store| store.all())?;
        let list = PyList::empty(py);
        for (stored, entry) in entries {
            let Some((key, start, _)) = keys::parse_window_key(&stored) else {
                continue;
            };
            if start < from || start > to {
                continue;
            }
            let windowed = self
                .access
                .windowed_py(py, key, start, start + self.window_size)?;
            list.append(key_value(
                py,
                windowed,
                self.access.entry_py(py, Some(entry))?,
            )?)?;
        }
        Ok(list)
    }
}

#[pymethods(crate = "millrace_python::pyo3")]
impl WindowStoreHandle {
    /// Sets the value of `key`'s window starting at `windowStartTimestamp`; None deletes it.
    #[pyo3(name = "put", signature = (key, value, window_start, timestamp = None))]
    fn put_window(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        window_start: i64,
        timestamp: Option<i64>,
    ) -> PyResult<()> {
        let entry = self
            .access
            .entry(key, value, timestamp.unwrap_or(window_start))?;
        let key = self.access.key_bytes(key)?;
        self.access
            .put_stored(keys::window_key(&key, window_start, 0), entry)
    }

    /// `fetch(key, time)`: the value of the window starting at `time`, or None;
    /// `fetch(key, timeFrom, timeTo)`: `(windowStart, value)` entries in time order.
    #[pyo3(signature = (key, time_from, time_to = None))]
    fn fetch<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        time_from: i64,
        time_to: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = self.access.key_bytes(key)?;
        let Some(time_to) = time_to else {
            let found = self.windows_of(&key, time_from, time_from)?;
            return self
                .access
                .entry_py(py, found.into_iter().next().map(|(_, v)| v));
        };
        let list = PyList::empty(py);
        for (start, entry) in self.windows_of(&key, time_from, time_to)? {
            let start = start.into_pyobject(py)?.into_any();
            list.append(key_value(
                py,
                start,
                self.access.entry_py(py, Some(entry))?,
            )?)?;
        }
        Ok(list.into_any())
    }

    /// `fetch(key, timeFrom, timeTo)` in reverse time order.
    #[pyo3(name = "backwardFetch")]
    fn backward_fetch<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        time_from: i64,
        time_to: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        reversed(
            self.fetch(py, key, time_from, Some(time_to))?
                .cast_into::<PyList>()?,
        )
    }

    /// Entries of every key's windows starting from `timeFrom` to `timeTo`.
    #[pyo3(name = "fetchAll")]
    fn fetch_all<'py>(
        &self,
        py: Python<'py>,
        time_from: i64,
        time_to: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        self.windowed_entries(py, time_from, time_to)
    }

    /// Every window of every key.
    fn all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.windowed_entries(py, i64::MIN, i64::MAX)
    }

    fn __repr__(&self) -> String {
        format!("<window store '{}'>", self.access.name)
    }
}

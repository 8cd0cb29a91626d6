//! Python handles of state stores, bound to the names functions list in `stores:`. A handle
//! names a store of the application; each call reaches that store in the task whose batch the
//! calling thread is running (see [`crate::task_stores`]), converting keys and values with the
//! store's types.

// pyo3's class macros expand to fully qualified paths through the re-exported crate.
#![allow(unused_qualifications)]

use bytes::Bytes;
use millrace_python::convert::{bytes_to_py, py_to_bytes};
use millrace_python::pyo3;
use millrace_python::pyo3::exceptions::{PyRuntimeError, PyValueError};
use millrace_python::pyo3::prelude::*;
use millrace_python::pyo3::types::{PyList, PyTuple};
use millrace_types::DataType;

use millrace_stores::keys;
use millrace_types::time::format_instant;

use crate::task_stores::{StoreId, with_store};

/// A keyValue store as Python sees it: `get`, `put`, `putIfAbsent`, `delete`, `range`, `all`
/// and `approximateNumEntries`, as on Kafka Streams' `KeyValueStore`.
#[pyclass(crate = "millrace_python::pyo3", name = "KeyValueStore", frozen)]
pub struct KeyValueStoreHandle {
    access: StoreAccess,
}

/// How a handle reaches its store and converts keys and values.
struct StoreAccess {
    name: String,
    store: StoreId,
    key_type: DataType,
    value_type: DataType,
    /// Values carry an 8-byte timestamp first (stores that operations write): reads skip it,
    /// writes put 0.
    timestamped: bool,
}

impl KeyValueStoreHandle {
    pub fn new(
        name: &str,
        store: StoreId,
        key_type: DataType,
        value_type: DataType,
        timestamped: bool,
    ) -> KeyValueStoreHandle {
        KeyValueStoreHandle {
            access: StoreAccess {
                name: name.to_string(),
                store,
                key_type,
                value_type,
                timestamped,
            },
        }
    }
}

impl StoreAccess {
    fn key_bytes(&self, key: &Bound<'_, PyAny>) -> PyResult<Bytes> {
        let bytes = py_to_bytes(key, &self.key_type)
            .map_err(|e| PyValueError::new_err(format!("store '{}': key: {e}", self.name)))?;
        bytes.map(Bytes::from).ok_or_else(|| {
            PyValueError::new_err(format!("store '{}': a key cannot be None", self.name))
        })
    }

    fn value_bytes(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Bytes>> {
        let bytes = py_to_bytes(value, &self.value_type).map_err(|e| {
            PyValueError::new_err(format!(
                "store '{}': the value for key {} does not fit type {}: {e}",
                self.name,
                key.repr().map(|r| r.to_string()).unwrap_or_default(),
                self.value_type
            ))
        })?;
        Ok(bytes.map(|value| match self.timestamped {
            true => {
                let mut entry = vec![0; 8];
                entry.extend_from_slice(&value);
                Bytes::from(entry)
            }
            false => Bytes::from(value),
        }))
    }

    fn value_py<'py>(&self, py: Python<'py>, bytes: Option<Bytes>) -> PyResult<Bound<'py, PyAny>> {
        let bytes = match (bytes, self.timestamped) {
            (Some(entry), true) => Some(entry.slice(8.min(entry.len())..)),
            (bytes, _) => bytes,
        };
        match bytes {
            None => Ok(py.None().into_bound(py)),
            Some(bytes) => bytes_to_py(py, Some(&bytes), &self.value_type).map_err(|e| {
                PyValueError::new_err(format!("store '{}': stored value: {e}", self.name))
            }),
        }
    }

    fn key_py<'py>(&self, py: Python<'py>, bytes: &Bytes) -> PyResult<Bound<'py, PyAny>> {
        bytes_to_py(py, Some(bytes), &self.key_type)
            .map_err(|e| PyValueError::new_err(format!("store '{}': stored key: {e}", self.name)))
    }

    /// Runs `f` on this store in the current task.
    fn with<R>(
        &self,
        f: impl FnOnce(&mut millrace_stores::Store) -> Result<R, millrace_stores::StoreError>,
    ) -> PyResult<R> {
        with_store(self.store, f)
            .map_err(|e| PyRuntimeError::new_err(format!("store '{}': {e}", self.name)))?
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    fn pairs<'py>(
        &self,
        py: Python<'py>,
        entries: Vec<(Bytes, Bytes)>,
    ) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for (key, value) in entries {
            let pair = KeyValuePair {
                key: self.key_py(py, &key)?.unbind(),
                value: self.value_py(py, Some(value))?.unbind(),
            };
            list.append(Bound::new(py, pair)?)?;
        }
        Ok(list)
    }
}

#[pymethods(crate = "millrace_python::pyo3")]
impl KeyValueStoreHandle {
    /// The value of a key, or None.
    fn get<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let key = self.access.key_bytes(key)?;
        let value = self.access.with(|store| store.get(&key))?;
        self.access.value_py(py, value)
    }

    /// Sets a key's value; None deletes the key.
    fn put(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = self.access.value_bytes(key, value)?;
        let key = self.access.key_bytes(key)?;
        self.access.with(|store| {
            store.put(key, value);
            Ok(())
        })
    }

    /// Sets a key's value unless it has one; returns the value it had (None when set).
    #[pyo3(name = "putIfAbsent")]
    fn put_if_absent<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let value = self.access.value_bytes(key, value)?;
        let key = self.access.key_bytes(key)?;
        let existing = self.access.with(|store| {
            let existing = store.get(&key)?;
            if existing.is_none() {
                store.put(key, value);
            }
            Ok(existing)
        })?;
        self.access.value_py(py, existing)
    }

    /// Deletes a key; returns the value it had.
    fn delete<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let key = self.access.key_bytes(key)?;
        let old = self.access.with(|store| {
            let old = store.get(&key)?;
            if old.is_some() {
                store.put(key, None);
            }
            Ok(old)
        })?;
        self.access.value_py(py, old)
    }

    /// `(key, value)` pairs with keys from `from` to `to` (both included), in the order of the
    /// keys' serialized bytes.
    #[pyo3(name = "range")]
    fn range_of<'py>(
        &self,
        py: Python<'py>,
        from: &Bound<'py, PyAny>,
        to: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let (from, to) = (self.access.key_bytes(from)?, self.access.key_bytes(to)?);
        let entries = self.access.with(|store| {
            store.scan(
                std::ops::Bound::Included(from.as_ref()),
                std::ops::Bound::Included(to.as_ref()),
            )
        })?;
        self.access.pairs(py, entries)
    }

    /// Every `(key, value)` pair, in the order of the keys' serialized bytes.
    fn all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let entries = self.access.with(|store| store.all())?;
        self.access.pairs(py, entries)
    }

    #[pyo3(name = "approximateNumEntries")]
    fn approximate_num_entries(&self) -> PyResult<u64> {
        self.access.with(|store| Ok(store.approximate_len()))
    }

    fn __repr__(&self) -> String {
        format!("<keyValue store '{}'>", self.access.name)
    }
}

/// An entry returned by `all()` and `range()`: `.key` and `.value` as on Kafka Streams'
/// `KeyValue`, and unpackable as `key, value`.
#[pyclass(crate = "millrace_python::pyo3", name = "KeyValue", frozen)]
pub struct KeyValuePair {
    #[pyo3(get)]
    key: Py<PyAny>,
    #[pyo3(get)]
    value: Py<PyAny>,
}

#[pymethods(crate = "millrace_python::pyo3")]
impl KeyValuePair {
    fn __len__(&self) -> usize {
        2
    }

    fn __getitem__(&self, py: Python<'_>, index: isize) -> PyResult<Py<PyAny>> {
        match index {
            0 | -2 => Ok(self.key.clone_ref(py)),
            1 | -1 => Ok(self.value.clone_ref(py)),
            _ => Err(pyo3::exceptions::PyIndexError::new_err(
                "a KeyValue has two items",
            )),
        }
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(
            PyTuple::new(py, [self.key.clone_ref(py), self.value.clone_ref(py)])?
                .try_iter()?
                .into_any(),
        )
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "KeyValue({}, {})",
            self.key.bind(py).repr()?,
            self.value.bind(py).repr()?
        ))
    }
}

/// A window store as Python sees it, as on Kafka Streams' `WindowStore`:
/// `put(key, value, windowStartTimestamp)`, `fetch(key, time)` (the value of the window
/// starting then), `fetch(key, timeFrom, timeTo)` and `backwardFetch(...)` (`(windowStart,
/// value)` entries), `fetchAll(timeFrom, timeTo)` and `all()` (entries keyed by
/// `{start, end, startTime, endTime, key}`).
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
    ) -> WindowStoreHandle {
        WindowStoreHandle {
            access: StoreAccess {
                name: name.to_string(),
                store,
                key_type,
                value_type,
                timestamped: false,
            },
            window_size,
        }
    }

    /// The windows of `key` starting from `from` to `to`, as (start, value) in time order.
    fn windows_of(&self, key: &Bytes, from: i64, to: i64) -> PyResult<Vec<(i64, Bytes)>> {
        let (lower, upper) = (
            keys::window_lower_bound(key, from),
            keys::window_upper_bound(key, to),
        );
        let entries = self.access.with(|store| {
            store.scan(
                std::ops::Bound::Included(lower.as_ref()),
                std::ops::Bound::Included(upper.as_ref()),
            )
        })?;
        Ok(entries
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
        for (stored, value) in entries {
            let Some((key, start, _)) = keys::parse_window_key(&stored) else {
                continue;
            };
            if start < from || start > to {
                continue;
            }
            let windowed = pyo3::types::PyDict::new(py);
            windowed.set_item("start", start)?;
            windowed.set_item("end", start + self.window_size)?;
            windowed.set_item("startTime", format_instant(start))?;
            windowed.set_item("endTime", format_instant(start + self.window_size))?;
            windowed.set_item("key", self.access.key_py(py, &Bytes::copy_from_slice(key))?)?;
            let pair = KeyValuePair {
                key: windowed.into_any().unbind(),
                value: self.access.value_py(py, Some(value))?.unbind(),
            };
            list.append(Bound::new(py, pair)?)?;
        }
        Ok(list)
    }
}

#[pymethods(crate = "millrace_python::pyo3")]
impl WindowStoreHandle {
    /// Sets the value of `key`'s window starting at `windowStartTimestamp`; None deletes it.
    #[pyo3(name = "put")]
    fn put_window(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        window_start: i64,
    ) -> PyResult<()> {
        let value = self.access.value_bytes(key, value)?;
        let key = self.access.key_bytes(key)?;
        let stored = keys::window_key(&key, window_start, 0);
        self.access.with(|store| {
            store.put(stored, value);
            Ok(())
        })
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
                .value_py(py, found.into_iter().next().map(|(_, v)| v));
        };
        let list = PyList::empty(py);
        for (start, value) in self.windows_of(&key, time_from, time_to)? {
            let pair = KeyValuePair {
                key: start.into_pyobject(py)?.into_any().unbind(),
                value: self.access.value_py(py, Some(value))?.unbind(),
            };
            list.append(Bound::new(py, pair)?)?;
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
        let forward = self.fetch(py, key, time_from, Some(time_to))?;
        let list = forward.cast_into::<PyList>()?;
        list.reverse()?;
        Ok(list)
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

//! Python handles of state stores, bound to the names functions list in `stores:`. A handle
//! names a store of the application; each call reaches that store in the task whose batch the
//! calling thread is running (see [`crate::task_stores`]), converting keys and values with the
//! store's types. The handles have the methods of KSML's store proxies: results that Kafka
//! Streams gives as `ValueAndTimestamp` or `VersionedRecord` are dicts (`{value, timestamp}`,
//! plus `validTo`), iterators are lists of [`KeyValuePair`].

// pyo3's class macros expand to fully qualified paths through the re-exported crate.
#![allow(unused_qualifications)]

mod key_value;
mod session;
mod versioned;
mod window;

pub use key_value::KeyValueStoreHandle;
pub use session::SessionStoreHandle;
pub use versioned::VersionedKeyValueStoreHandle;
pub use window::WindowStoreHandle;

use bytes::Bytes;
use millrace_python::convert::{bytes_to_py, py_to_bytes};
use millrace_python::pyo3;
use millrace_python::pyo3::exceptions::{PyRuntimeError, PyValueError};
use millrace_python::pyo3::prelude::*;
use millrace_python::pyo3::types::{PyDict, PyList, PyString, PyTuple};
use millrace_types::DataType;
use millrace_types::time::format_instant;

use millrace_stores::entries::{split_timestamped, timestamped};

use crate::task_stores::{StoreId, with_store};

/// How a store's entries hold their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryFormat {
    /// The value's bytes.
    Plain,
    /// An 8-byte timestamp, then the value (stores that operations write): the handle reads
    /// past the timestamp, and writes 0.
    TimestampHidden,
    /// An 8-byte timestamp, then the value (timestamped stores): Python sees
    /// `{value, timestamp}`.
    Timestamped,
}

/// How a handle reaches its store and converts keys and values.
struct StoreAccess {
    name: String,
    store: StoreId,
    key_type: DataType,
    value_type: DataType,
    format: EntryFormat,
}

impl StoreAccess {
    fn new(
        name: &str,
        store: StoreId,
        key_type: DataType,
        value_type: DataType,
        format: EntryFormat,
    ) -> StoreAccess {
        StoreAccess {
            name: name.to_string(),
            store,
            key_type,
            value_type,
            format,
        }
    }

    fn key_bytes(&self, key: &Bound<'_, PyAny>) -> PyResult<Bytes> {
        let bytes = py_to_bytes(key, &self.key_type)
            .map_err(|e| PyValueError::new_err(format!("store '{}': key: {e}", self.name)))?;
        bytes.map(Bytes::from).ok_or_else(|| {
            PyValueError::new_err(format!("store '{}': a key cannot be None", self.name))
        })
    }

    /// The entry for a value (None for None), with `timestamp` where entries keep one.
    fn entry(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        timestamp: i64,
    ) -> PyResult<Option<Bytes>> {
        let bytes = py_to_bytes(value, &self.value_type).map_err(|e| {
            PyValueError::new_err(format!(
                "store '{}': the value for key {} does not fit type {}: {e}",
                self.name,
                key.repr().map(|r| r.to_string()).unwrap_or_default(),
                self.value_type
            ))
        })?;
        Ok(bytes.map(|value| match self.format {
            EntryFormat::Plain => Bytes::from(value),
            EntryFormat::TimestampHidden | EntryFormat::Timestamped => {
                timestamped(timestamp, &value)
            }
        }))
    }

    /// A stored value's bytes as Python.
    fn value_py<'py>(&self, py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        bytes_to_py(py, Some(bytes), &self.value_type)
            .map_err(|e| PyValueError::new_err(format!("store '{}': stored value: {e}", self.name)))
    }

    /// An entry as Python: the value, or `{value, timestamp}` for timestamped stores; None
    /// for no entry.
    fn entry_py<'py>(&self, py: Python<'py>, entry: Option<Bytes>) -> PyResult<Bound<'py, PyAny>> {
        let Some(entry) = entry else {
            return Ok(py.None().into_bound(py));
        };
        if self.format == EntryFormat::Plain {
            return self.value_py(py, &entry);
        }
        let (timestamp, value) = split_timestamped(&entry).ok_or_else(|| {
            PyValueError::new_err(format!(
                "store '{}': a stored entry has no timestamp",
                self.name
            ))
        })?;
        let value = self.value_py(py, &value)?;
        match self.format {
            EntryFormat::Timestamped => value_and_timestamp(py, value, timestamp),
            EntryFormat::Plain | EntryFormat::TimestampHidden => Ok(value),
        }
    }

    fn key_py<'py>(&self, py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        bytes_to_py(py, Some(bytes), &self.key_type)
            .map_err(|e| PyValueError::new_err(format!("store '{}': stored key: {e}", self.name)))
    }

    /// A stored key's window as KSML shows it (see [`windowed_key`]).
    fn windowed_py<'py>(
        &self,
        py: Python<'py>,
        key: &[u8],
        start: i64,
        end: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        windowed_key(self.key_py(py, key)?, start, end)
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

    /// The entries of keys from `from` to `to` (both included).
    fn scan(&self, from: &[u8], to: &[u8]) -> PyResult<Vec<(Bytes, Bytes)>> {
        self.with(|store| {
            store.scan(
                std::ops::Bound::Included(from),
                std::ops::Bound::Included(to),
            )
        })
    }

    fn pairs<'py>(
        &self,
        py: Python<'py>,
        entries: Vec<(Bytes, Bytes)>,
    ) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for (key, entry) in entries {
            let key = self.key_py(py, &key)?;
            list.append(key_value(py, key, self.entry_py(py, Some(entry))?)?)?;
        }
        Ok(list)
    }

    /// The entry of a key, as Python.
    fn get<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let key = self.key_bytes(key)?;
        let entry = self.with(|store| store.get(&key))?;
        self.entry_py(py, entry)
    }

    /// Writes an entry (None deletes the key).
    fn put(&self, key: &Bound<'_, PyAny>, entry: Option<Bytes>) -> PyResult<()> {
        self.put_stored(self.key_bytes(key)?, entry)
    }

    /// Writes an entry at a stored key (None deletes it).
    fn put_stored(&self, stored: Bytes, entry: Option<Bytes>) -> PyResult<()> {
        self.with(|store| {
            store.put(stored, entry);
            Ok(())
        })
    }

    /// Writes an entry unless the key has one; returns the one it had.
    fn put_if_absent<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        entry: Option<Bytes>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = self.key_bytes(key)?;
        let existing = self.with(|store| {
            let existing = store.get(&key)?;
            if existing.is_none() {
                store.put(key, entry);
            }
            Ok(existing)
        })?;
        self.entry_py(py, existing)
    }

    /// Deletes a key; returns the entry it had.
    fn delete<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let key = self.key_bytes(key)?;
        let old = self.with(|store| {
            let old = store.get(&key)?;
            if old.is_some() {
                store.put(key, None);
            }
            Ok(old)
        })?;
        self.entry_py(py, old)
    }

    /// Pairs of keys from `from` to `to` (both included), in the order of their bytes.
    fn range<'py>(
        &self,
        py: Python<'py>,
        from: &Bound<'py, PyAny>,
        to: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let (from, to) = (self.key_bytes(from)?, self.key_bytes(to)?);
        let entries = self.scan(&from, &to)?;
        self.pairs(py, entries)
    }

    /// Every pair, in the order of the keys' bytes.
    fn all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let entries = self.with(|store| store.all())?;
        self.pairs(py, entries)
    }

    fn approximate_len(&self) -> PyResult<u64> {
        self.with(|store| Ok(store.approximate_len()))
    }
}

/// A windowed key as KSML shows it to Python: `{start, end, startTime, endTime, key}` (times
/// as Java's `Instant.toString` writes them).
pub(crate) fn windowed_key<'py>(
    key: Bound<'py, PyAny>,
    start: i64,
    end: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let windowed = PyDict::new(key.py());
    windowed.set_item("start", start)?;
    windowed.set_item("end", end)?;
    windowed.set_item("startTime", format_instant(start))?;
    windowed.set_item("endTime", format_instant(end))?;
    windowed.set_item("key", key)?;
    Ok(windowed.into_any())
}

/// Kafka Streams' `ValueAndTimestamp` as KSML gives it to Python: `{value, timestamp}`.
fn value_and_timestamp<'py>(
    py: Python<'py>,
    value: Bound<'py, PyAny>,
    timestamp: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let dict = PyDict::new(py);
    dict.set_item("value", value)?;
    dict.set_item("timestamp", timestamp)?;
    Ok(dict.into_any())
}

/// A list in reverse order (the `backward...` methods).
fn reversed(list: Bound<'_, PyList>) -> PyResult<Bound<'_, PyList>> {
    list.reverse()?;
    Ok(list)
}

fn key_value<'py>(
    py: Python<'py>,
    key: Bound<'py, PyAny>,
    value: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, KeyValuePair>> {
    Bound::new(
        py,
        KeyValuePair {
            key: key.unbind(),
            value: value.unbind(),
        },
    )
}

/// An entry of the lists stores return: `.key` and `.value` as on Kafka Streams' `KeyValue`,
/// `["key"]` and `["value"]` as on KSML's dicts, and unpackable as `key, value`.
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

    fn __getitem__(&self, py: Python<'_>, index: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if let Ok(name) = index.cast::<PyString>() {
            return match name.to_str()? {
                "key" => Ok(self.key.clone_ref(py)),
                "value" => Ok(self.value.clone_ref(py)),
                other => Err(pyo3::exceptions::PyKeyError::new_err(other.to_string())),
            };
        }
        match index.extract::<isize>()? {
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

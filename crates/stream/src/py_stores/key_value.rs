//! keyValue stores in Python: plain and timestamped.

// pyo3's class macros expand to fully qualified paths through the re-exported crate.
#![allow(unused_qualifications)]

use millrace_python::pyo3::prelude::*;
use millrace_python::pyo3::types::PyList;
use millrace_types::DataType;

use super::{EntryFormat, StoreAccess};
use crate::task_stores::StoreId;

/// A keyValue store as Python sees it: `get`, `put`, `putIfAbsent`, `delete`, `range`, `all`
/// and `approximateNumEntries`, as on Kafka Streams' `KeyValueStore`.
#[pyclass(crate = "millrace_python::pyo3", name = "KeyValueStore", frozen)]
pub struct KeyValueStoreHandle {
    access: StoreAccess,
}

impl KeyValueStoreHandle {
    /// `timestamped`: the store is an operation's, whose entries start with a timestamp that
    /// this handle reads past.
    pub fn new(
        name: &str,
        store: StoreId,
        key_type: DataType,
        value_type: DataType,
        timestamped: bool,
    ) -> KeyValueStoreHandle {
        let format = match timestamped {
            true => EntryFormat::TimestampHidden,
            false => EntryFormat::Plain,
        };
        KeyValueStoreHandle {
            access: StoreAccess::new(name, store, key_type, value_type, format),
        }
    }
}

#[pymethods(crate = "millrace_python::pyo3")]
impl KeyValueStoreHandle {
    /// The value of a key, or None.
    fn get<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.access.get(py, key)
    }

    /// Sets a key's value; None deletes the key.
    fn put(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let entry = self.access.entry(key, value, 0)?;
        self.access.put(key, entry)
    }

    /// Sets a key's value unless it has one; returns the value it had (None when set).
    #[pyo3(name = "putIfAbsent")]
    fn put_if_absent<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let entry = self.access.entry(key, value, 0)?;
        self.access.put_if_absent(py, key, entry)
    }

    /// Deletes a key; returns the value it had.
    fn delete<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.access.delete(py, key)
    }

    /// `(key, value)` pairs with keys from `from` to `to` (both included), in the order of the
    /// keys' serialized bytes.
    fn range<'py>(
        &self,
        py: Python<'py>,
        from: &Bound<'py, PyAny>,
        to: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.access.range(py, from, to)
    }

    /// Every `(key, value)` pair, in the order of the keys' serialized bytes.
    fn all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.access.all(py)
    }

    #[pyo3(name = "approximateNumEntries")]
    fn approximate_num_entries(&self) -> PyResult<u64> {
        self.access.approximate_len()
    }

    fn __repr__(&self) -> String {
        format!("<keyValue store '{}'>", self.access.name)
    }
}

/// A timestamped keyValue store as Python sees it, as on Kafka Streams'
/// `TimestampedKeyValueStore`: values come as `{value, timestamp}`, and `put(key, value,
/// timestamp)` and `putIfAbsent(key, value, timestamp)` take the timestamp.
#[pyclass(
    crate = "millrace_python::pyo3",
    name = "TimestampedKeyValueStore",
    frozen
)]
pub struct TimestampedKeyValueStoreHandle {
    access: StoreAccess,
}

impl TimestampedKeyValueStoreHandle {
    pub fn new(
        name: &str,
        store: StoreId,
        key_type: DataType,
        value_type: DataType,
    ) -> TimestampedKeyValueStoreHandle {
        TimestampedKeyValueStoreHandle {
            access: StoreAccess::new(name, store, key_type, value_type, EntryFormat::Timestamped),
        }
    }
}

#[pymethods(crate = "millrace_python::pyo3")]
impl TimestampedKeyValueStoreHandle {
    /// `{value, timestamp}` of a key, or None.
    fn get<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.access.get(py, key)
    }

    /// Sets a key's value and its timestamp; a None value deletes the key.
    fn put(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        timestamp: i64,
    ) -> PyResult<()> {
        let entry = self.access.entry(key, value, timestamp)?;
        self.access.put(key, entry)
    }

    /// Sets a key's value and timestamp unless it has a value; returns what it had.
    #[pyo3(name = "putIfAbsent")]
    fn put_if_absent<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        timestamp: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let entry = self.access.entry(key, value, timestamp)?;
        self.access.put_if_absent(py, key, entry)
    }

    /// Deletes a key; returns the `{value, timestamp}` it had.
    fn delete<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.access.delete(py, key)
    }

    /// Pairs of keys from `from` to `to` (both included), values as `{value, timestamp}`.
    fn range<'py>(
        &self,
        py: Python<'py>,
        from: &Bound<'py, PyAny>,
        to: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.access.range(py, from, to)
    }

    /// Every pair, values as `{value, timestamp}`.
    fn all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.access.all(py)
    }

    #[pyo3(name = "approximateNumEntries")]
    fn approximate_num_entries(&self) -> PyResult<u64> {
        self.access.approximate_len()
    }

    fn __repr__(&self) -> String {
        format!("<timestamped keyValue store '{}'>", self.access.name)
    }
}

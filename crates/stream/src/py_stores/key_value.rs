//! keyValue stores in Python, plain and timestamped.

// pyo3's class macros expand to fully qualified paths through the re-exported crate.
#![allow(unused_qualifications)]

use millrace_python::pyo3::prelude::*;
use millrace_python::pyo3::types::PyList;
use millrace_types::DataType;

use super::{EntryFormat, StoreAccess};
use crate::task_stores::StoreId;

/// A keyValue store as Python sees it: `get`, `put`, `putIfAbsent`, `delete`, `range`, `all`
/// and `approximateNumEntries`, as on Kafka Streams' `KeyValueStore`. A timestamped store
/// (`TimestampedKeyValueStore`) gives values as `{value, timestamp}`, and `put` and
/// `putIfAbsent` take the timestamp after the value.
#[pyclass(crate = "millrace_python::pyo3", name = "KeyValueStore", frozen)]
pub struct KeyValueStoreHandle {
    access: StoreAccess,
}

impl KeyValueStoreHandle {
    /// `format`: how the store's entries hold values (plain; timestamped by an operation,
    /// which the handle reads past; or timestamped for Python to see).
    pub fn new(
        name: &str,
        store: StoreId,
        key_type: DataType,
        value_type: DataType,
        format: EntryFormat,
    ) -> KeyValueStoreHandle {
        KeyValueStoreHandle {
            access: StoreAccess::new(name, store, key_type, value_type, format),
        }
    }
}

#[pymethods(crate = "millrace_python::pyo3")]
impl KeyValueStoreHandle {
    /// The value of a key (`{value, timestamp}` when timestamped), or None.
    fn get<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.access.get(py, key)
    }

    /// Sets a key's value (and timestamp, in a timestamped store); None deletes the key.
    #[pyo3(signature = (key, value, timestamp = 0))]
    fn put(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        timestamp: i64,
    ) -> PyResult<()> {
        let entry = self.access.entry(key, value, timestamp)?;
        self.access.put(key, entry)
    }

    /// Sets a key's value unless it has one; returns the value it had (None when set).
    #[pyo3(name = "putIfAbsent", signature = (key, value, timestamp = 0))]
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
        let kind = match self.access.format {
            EntryFormat::Timestamped => "timestamped keyValue",
            EntryFormat::Plain | EntryFormat::TimestampHidden => "keyValue",
        };
        format!("<{kind} store '{}'>", self.access.name)
    }
}

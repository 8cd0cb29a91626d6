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

use crate::task_stores::{StoreId, with_store};

/// A keyValue store as Python sees it: `get`, `put`, `putIfAbsent`, `delete`, `range`, `all`
/// and `approximateNumEntries`, as on Kafka Streams' `KeyValueStore`.
#[pyclass(crate = "millrace_python::pyo3", name = "KeyValueStore", frozen)]
pub struct KeyValueStoreHandle {
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
            name: name.to_string(),
            store,
            key_type,
            value_type,
            timestamped,
        }
    }

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
        let key = self.key_bytes(key)?;
        let value = self.with(|store| store.get(&key))?;
        self.value_py(py, value)
    }

    /// Sets a key's value; None deletes the key.
    fn put(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = self.value_bytes(key, value)?;
        let key = self.key_bytes(key)?;
        self.with(|store| {
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
        let value = self.value_bytes(key, value)?;
        let key = self.key_bytes(key)?;
        let existing = self.with(|store| {
            let existing = store.get(&key)?;
            if existing.is_none() {
                store.put(key, value);
            }
            Ok(existing)
        })?;
        self.value_py(py, existing)
    }

    /// Deletes a key; returns the value it had.
    fn delete<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let key = self.key_bytes(key)?;
        let old = self.with(|store| {
            let old = store.get(&key)?;
            if old.is_some() {
                store.put(key, None);
            }
            Ok(old)
        })?;
        self.value_py(py, old)
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
        let (from, to) = (self.key_bytes(from)?, self.key_bytes(to)?);
        let entries = self.with(|store| {
            store.scan(
                std::ops::Bound::Included(from.as_ref()),
                std::ops::Bound::Included(to.as_ref()),
            )
        })?;
        self.pairs(py, entries)
    }

    /// Every `(key, value)` pair, in the order of the keys' serialized bytes.
    fn all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let entries = self.with(|store| store.all())?;
        self.pairs(py, entries)
    }

    #[pyo3(name = "approximateNumEntries")]
    fn approximate_num_entries(&self) -> PyResult<u64> {
        self.with(|store| Ok(store.approximate_len()))
    }

    fn __repr__(&self) -> String {
        format!("<keyValue store '{}'>", self.name)
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

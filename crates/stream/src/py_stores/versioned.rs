//! Versioned keyValue stores in Python.

// pyo3's class macros expand to fully qualified paths through the re-exported crate.
#![allow(unused_qualifications)]

use bytes::Bytes;
use millrace_python::pyo3::prelude::*;
use millrace_python::pyo3::types::PyDict;
use millrace_stores::keys;
use millrace_types::DataType;

use super::{EntryFormat, StoreAccess, value_and_timestamp};
use crate::task_stores::StoreId;

/// Kafka Streams' `VersionedKeyValueStore.put` result for the latest version.
const VALID_TO_UNDEFINED: i64 = -1;
/// Kafka Streams' `VersionedKeyValueStore.put` result for a version older than the history.
const NOT_PUT: i64 = i64::MIN;
/// Where the store keeps its stream time: a key no version's key can be (those are at least
/// 16 bytes long).
const STREAM_TIME_KEY: &[u8] = &[0xff];

/// A versioned keyValue store as Python sees it, as on Kafka Streams'
/// `VersionedKeyValueStore`: each key keeps its values with the time each became valid.
/// `put(key, value, timestamp)` returns the next version's time (-1 for the latest version,
/// the lowest long when older than the history kept); `get(key)` gives the latest
/// `{value, timestamp}`, `get(key, asOfTimestamp)` the one valid then, with `validTo` when a
/// later version exists; `delete(key, timestamp)` ends the value at `timestamp` and returns
/// the one valid then. The history kept (`historyRetention`) is measured back from the
/// store's stream time (the latest timestamp put), as in Kafka Streams; a key's latest
/// version is always kept.
#[pyclass(
    crate = "millrace_python::pyo3",
    name = "VersionedKeyValueStore",
    frozen
)]
pub struct VersionedKeyValueStoreHandle {
    access: StoreAccess,
    /// Milliseconds of history kept behind the key's latest version.
    history: i64,
}

/// One version of a key: when it became valid, and its value (None: deleted then).
struct Version {
    time: i64,
    value: Option<Bytes>,
}

impl VersionedKeyValueStoreHandle {
    pub fn new(
        name: &str,
        store: StoreId,
        key_type: DataType,
        value_type: DataType,
        history: i64,
    ) -> VersionedKeyValueStoreHandle {
        VersionedKeyValueStoreHandle {
            access: StoreAccess::new(name, store, key_type, value_type, EntryFormat::Plain),
            history,
        }
    }

    /// A key's versions, oldest first.
    fn versions(&self, key: &Bytes) -> PyResult<Vec<Version>> {
        let lower = keys::window_lower_bound(key, i64::MIN);
        let upper = keys::window_upper_bound(key, i64::MAX);
        Ok(self
            .access
            .scan(&lower, &upper)?
            .into_iter()
            .filter_map(|(stored, entry)| {
                let (_, time, _) = keys::parse_window_key(&stored)?;
                let value = match entry.first() {
                    Some(1) => Some(entry.slice(1..)),
                    _ => None,
                };
                Some(Version { time, value })
            })
            .collect())
    }

    /// The store's stream time: the latest timestamp put (None before any).
    fn stream_time(&self) -> PyResult<Option<i64>> {
        let entry = self.access.with(|store| store.get(STREAM_TIME_KEY))?;
        Ok(entry
            .and_then(|bytes| bytes.as_ref().try_into().ok())
            .map(i64::from_be_bytes))
    }

    /// The oldest time reads within the history reach.
    fn horizon(&self, stream_time: Option<i64>) -> i64 {
        stream_time.map_or(i64::MIN, |time| time.saturating_sub(self.history))
    }

    /// Writes a version and drops those no read within the history can reach; returns the
    /// `put` result code.
    fn write(&self, key: &Bytes, time: i64, value: Option<Bytes>) -> PyResult<i64> {
        let stream_time = self.stream_time()?;
        if time < self.horizon(stream_time) {
            return Ok(NOT_PUT);
        }
        let stream_time = stream_time.map_or(time, |known| known.max(time));
        let horizon = self.horizon(Some(stream_time));
        let versions = self.versions(key)?;
        let next = versions.iter().map(|v| v.time).find(|t| *t > time);
        let entry = match value {
            Some(value) => [&[1u8][..], &value].concat(),
            None => vec![0],
        };
        // Versions replaced by a later one at or before the horizon can no longer be read.
        let reachable_from = versions
            .iter()
            .map(|v| v.time)
            .filter(|t| *t <= horizon)
            .chain((time <= horizon).then_some(time))
            .max();
        self.access.with(|store| {
            let time_entry = Bytes::copy_from_slice(&stream_time.to_be_bytes());
            store.put(Bytes::from_static(STREAM_TIME_KEY), Some(time_entry));
            store.put(keys::window_key(key, time, 0), Some(Bytes::from(entry)));
            for version in &versions {
                if reachable_from.is_some_and(|from| version.time < from) {
                    store.put(keys::window_key(key, version.time, 0), None);
                }
            }
            Ok(())
        })?;
        Ok(next.unwrap_or(VALID_TO_UNDEFINED))
    }

    /// The version valid at `as_of` (with the next version's time), as a dict; None when the
    /// key had no value then.
    fn valid_at<'py>(
        &self,
        py: Python<'py>,
        key: &Bytes,
        as_of: i64,
        with_valid_to: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let versions = self.versions(key)?;
        let none = py.None().into_bound(py);
        let Some(at) = versions.iter().rposition(|v| v.time <= as_of) else {
            return Ok(none);
        };
        // Past the history only the latest version still answers.
        let latest = at + 1 == versions.len();
        if !latest && as_of < self.horizon(self.stream_time()?) {
            return Ok(none);
        }
        let Some(value) = &versions[at].value else {
            return Ok(none);
        };
        let record = value_and_timestamp(py, self.access.value_py(py, value)?, versions[at].time)?;
        if with_valid_to && let Some(next) = versions.get(at + 1) {
            record.cast::<PyDict>()?.set_item("validTo", next.time)?;
        }
        Ok(record)
    }
}

#[pymethods(crate = "millrace_python::pyo3")]
impl VersionedKeyValueStoreHandle {
    /// The latest `{value, timestamp}` of a key, or with `asOfTimestamp` the one valid then
    /// (`validTo` included when a later version exists); None when there is none.
    #[pyo3(signature = (key, as_of_timestamp = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        as_of_timestamp: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = self.access.key_bytes(key)?;
        match as_of_timestamp {
            Some(as_of) => self.valid_at(py, &key, as_of, true),
            None => self.valid_at(py, &key, i64::MAX, false),
        }
    }

    /// Adds a version of a key valid from `timestamp` (None: deleted from then); returns the
    /// next version's time, -1 when this is the latest, the lowest long when not put.
    fn put(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        timestamp: i64,
    ) -> PyResult<i64> {
        let entry = self.access.entry(key, value, timestamp)?;
        let key = self.access.key_bytes(key)?;
        self.write(&key, timestamp, entry)
    }

    /// Ends a key's value at `timestamp`; returns the `{value, timestamp}` valid then.
    fn delete<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        timestamp: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = self.access.key_bytes(key)?;
        let before = self.valid_at(py, &key, timestamp, false)?;
        self.write(&key, timestamp, None)?;
        Ok(before)
    }

    fn __repr__(&self) -> String {
        format!("<versioned keyValue store '{}'>", self.access.name)
    }
}

//! Session stores in Python.

// pyo3's class macros expand to fully qualified paths through the re-exported crate.
#![allow(unused_qualifications)]

use bytes::Bytes;
use millrace_python::pyo3::exceptions::PyValueError;
use millrace_python::pyo3::prelude::*;
use millrace_python::pyo3::types::PyList;
use millrace_stores::keys;
use millrace_types::DataType;

use super::{EntryFormat, StoreAccess, key_value, reversed};
use crate::task_stores::StoreId;

/// A session store as Python sees it, as on Kafka Streams' `SessionStore`: sessions are keyed
/// by a windowed key `{start, end, key}` (with `startTime` and `endTime` when read):
/// `put(sessionKey, aggregate)`, `remove(sessionKey)`, `fetchSession(key, start, end)`,
/// `fetch(key)` and `findSessions(key, earliestSessionEndTime, latestSessionStartTime)`
/// (entries in time order), `backwardFetch` and `backwardFindSessions` (reverse order).
#[pyclass(crate = "millrace_python::pyo3", name = "SessionStore", frozen)]
pub struct SessionStoreHandle {
    access: StoreAccess,
}

impl SessionStoreHandle {
    pub fn new(
        name: &str,
        store: StoreId,
        key_type: DataType,
        value_type: DataType,
    ) -> SessionStoreHandle {
        SessionStoreHandle {
            access: StoreAccess::new(name, store, key_type, value_type, EntryFormat::Plain),
        }
    }

    /// The stored key of a session key dict `{start, end, key}`.
    fn session_bytes(&self, session: &Bound<'_, PyAny>) -> PyResult<Bytes> {
        let bad = || {
            PyValueError::new_err(format!(
                "store '{}': a session key is a dict {{start, end, key}} with start and end in \
                 milliseconds, not {}",
                self.access.name,
                session.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        };
        let field = |name: &str| session.get_item(name).map_err(|_| bad());
        let time = |name: &str| field(name)?.extract::<i64>().map_err(|_| bad());
        let key = self.access.key_bytes(&field("key")?)?;
        let (start, end) = (time("start")?, time("end")?);
        Ok(keys::session_key(&key, start, end))
    }

    /// The sessions of `key` ending at or after `earliest_end` and starting at or before
    /// `latest_start`, in time order.
    fn sessions<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        earliest_end: i64,
        latest_start: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        let key = self.access.key_bytes(key)?;
        let lower = keys::session_key(&key, i64::MIN, earliest_end);
        let upper = keys::session_key(&key, i64::MAX, i64::MAX);
        let list = PyList::empty(py);
        for (stored, value) in self.access.scan(&lower, &upper)? {
            let Some((key, start, end)) = keys::parse_session_key(&stored) else {
                continue;
            };
            if start > latest_start {
                continue;
            }
            let session = self.access.windowed_py(py, key, start, end)?;
            list.append(key_value(
                py,
                session,
                self.access.entry_py(py, Some(value))?,
            )?)?;
        }
        Ok(list)
    }
}

#[pymethods(crate = "millrace_python::pyo3")]
impl SessionStoreHandle {
    /// Sets a session's aggregate; None removes the session.
    fn put(&self, session: &Bound<'_, PyAny>, aggregate: &Bound<'_, PyAny>) -> PyResult<()> {
        let stored = self.session_bytes(session)?;
        let entry = self.access.entry(&session.get_item("key")?, aggregate, 0)?;
        self.access.put_stored(stored, entry)
    }

    /// Removes a session.
    fn remove(&self, session: &Bound<'_, PyAny>) -> PyResult<()> {
        self.access.put_stored(self.session_bytes(session)?, None)
    }

    /// The aggregate of the session of `key` from `start` to `end`, or None.
    #[pyo3(name = "fetchSession")]
    fn fetch_session<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        start: i64,
        end: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = self.access.key_bytes(key)?;
        let stored = keys::session_key(&key, start, end);
        let entry = self.access.with(|store| store.get(&stored))?;
        self.access.entry_py(py, entry)
    }

    /// Every session of `key`, in time order.
    fn fetch<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        self.sessions(py, key, i64::MIN, i64::MAX)
    }

    /// Every session of `key`, latest first.
    #[pyo3(name = "backwardFetch")]
    fn backward_fetch<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        reversed(self.sessions(py, key, i64::MIN, i64::MAX)?)
    }

    /// The sessions of `key` ending at or after `earliestSessionEndTime` and starting at or
    /// before `latestSessionStartTime`, in time order.
    #[pyo3(name = "findSessions")]
    fn find_sessions<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        earliest_session_end_time: i64,
        latest_session_start_time: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        self.sessions(
            py,
            key,
            earliest_session_end_time,
            latest_session_start_time,
        )
    }

    /// findSessions, latest first.
    #[pyo3(name = "backwardFindSessions")]
    fn backward_find_sessions<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        earliest_session_end_time: i64,
        latest_session_start_time: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        let sessions = self.sessions(
            py,
            key,
            earliest_session_end_time,
            latest_session_start_time,
        )?;
        reversed(sessions)
    }

    fn __repr__(&self) -> String {
        format!("<session store '{}'>", self.access.name)
    }
}

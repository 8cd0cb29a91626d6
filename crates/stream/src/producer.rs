//! Producers: generator functions called on a schedule, as KSML's runner does it.
//!
//! With none of interval, count and until a producer sends one message. Otherwise count
//! defaults to unlimited and interval to 0. Each tick fills up to `batchSize` message slots; a
//! slot gets up to 10 tries to pass `condition`; the message for which `until` holds is still
//! sent, and then the producer stops.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use millrace_log::{KeyPartitioner, Log, LogError, Record, murmur2_partition};
use millrace_python::Python;
use millrace_python::convert::{py_to_bytes, py_to_value};
use millrace_python::pyo3::prelude::*;
use millrace_python::pyo3::types::{PyList, PyString};
use millrace_python::watch::WatchedThread;
use millrace_types::Value;

use crate::datum::conform;
use crate::stalls::{RETRY_PAUSE, Stall, sleep_until};
use crate::topology::{FnId, ProducerPlan, Topology};
use millrace_ksml::config::{ErrorHandler, Handler};

/// How many times a message slot may be regenerated when `condition` rejects it.
const TRIES_PER_MESSAGE: usize = 10;

/// Why a producer stopped early.
#[derive(Debug, thiserror::Error)]
#[error("producer '{producer}': {message}")]
pub struct ProducerError {
    pub producer: String,
    pub message: String,
    /// A function failed while the run was stopping (it may have been interrupted): not a
    /// failure of the producer.
    pub interrupted: bool,
}

/// A generated message: key and value.
type Message<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>);

/// What one tick decided.
struct Tick {
    records: Vec<(u32, Record)>,
    finished: bool,
}

/// One producer's run: its plan and what it needs from the runner.
pub struct ProducerRun<'a> {
    pub plan: &'a ProducerPlan,
    pub topology: &'a Topology,
    pub log: &'a dyn Log,
    pub handler: &'a ErrorHandler,
    pub stop: &'a AtomicBool,
    /// How long the producer retries sending to a cluster that does not answer
    /// (`task.timeout.ms`).
    pub task_timeout: Duration,
    /// Where this producer's thread reports its Python calls.
    pub watched: &'a WatchedThread,
}

impl ProducerRun<'_> {
    /// Runs the producer to its end (or until `stop`); returns how many messages it sent.
    pub fn run(&self) -> Result<u64, ProducerError> {
        let plan = self.plan;
        let once = plan.interval.is_none() && plan.count.is_none() && plan.until.is_none();
        let count = if once {
            Some(1)
        } else {
            plan.count.map(|c| c.max(1))
        };
        let batch_size = if once {
            1
        } else {
            plan.batch_size.max(1) as u64
        };
        let interval = plan.interval.unwrap_or(Duration::ZERO);
        let partitions = self
            .log
            .ensure_topic(&plan.target.topic)
            .map_err(|e| self.error(e.to_string()))?;
        let mut keyless = KeyPartitioner::default();
        let mut pending: VecDeque<Py<PyAny>> = VecDeque::new();
        let mut produced = 0u64;
        let mut next_tick = Instant::now();
        self.watched
            .set_place(format!("producer '{}'", plan.name).into());
        while !self.stop.load(Ordering::Relaxed) {
            let slots = count.map_or(batch_size, |c| batch_size.min(c - produced));
            let tick = match Python::attach(|py| {
                self.tick(py, slots, once, partitions, &mut keyless, &mut pending)
            }) {
                Err(e) if e.interrupted => break,
                tick => tick?,
            };
            produced += tick.records.len() as u64;
            self.append(tick.records)?;
            if tick.finished || count.is_some_and(|c| produced >= c) {
                break;
            }
            next_tick += interval;
            sleep_until(self.stop, next_tick);
        }
        Ok(produced)
    }

    fn error(&self, message: String) -> ProducerError {
        ProducerError {
            producer: self.plan.name.clone(),
            message,
            interrupted: false,
        }
    }

    fn append(&self, records: Vec<(u32, Record)>) -> Result<(), ProducerError> {
        let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        for (partition, record) in records {
            by_partition.entry(partition).or_default().push(record);
        }
        let topic = &self.plan.target.topic;
        let mut stall = Stall::default();
        for (partition, records) in by_partition {
            // Sent again while the cluster does not answer: at least once, as a Kafka
            // producer whose send timed out.
            while let Err(e) = self.log.append(topic, partition, records.clone()) {
                let LogError::Unavailable { .. } = e else {
                    return Err(self.error(e.to_string()));
                };
                let what = format!("producer '{}'", self.plan.name);
                stall
                    .failed(self.task_timeout, &what, &e.to_string())
                    .map_err(|message| self.error(message))?;
                sleep_until(self.stop, Instant::now() + RETRY_PAUSE);
                if self.stop.load(Ordering::SeqCst) {
                    tracing::warn!(
                        "{what}: stopped before the cluster took {} message(s): {e}",
                        records.len()
                    );
                    return Ok(());
                }
            }
            stall.progressed();
        }
        Ok(())
    }

    /// Reports a failed call or message through the process error handler; returns an error
    /// when the handler stops the application.
    fn failed(&self, message: String) -> Result<(), ProducerError> {
        if self.handler.log {
            tracing::error!(target: "ksml", producer = %self.plan.name, "{message}");
        }
        match self.handler.handler {
            Handler::StopOnFail => Err(self.error(message)),
            Handler::ContinueOnFail => Ok(()),
        }
    }

    fn call<'py>(
        &self,
        py: Python<'py>,
        f: FnId,
        args: &[Bound<'py, PyAny>],
    ) -> Result<Option<Bound<'py, PyAny>>, ProducerError> {
        let _call = self.watched.enter(f);
        match self.topology.functions[f].py.call(py, args) {
            Ok(result) => Ok(Some(result)),
            Err(e) if self.watched.stopping() => Err(ProducerError {
                interrupted: true,
                ..self.error(e.to_string())
            }),
            Err(e) => self.failed(e.to_string()).map(|()| None),
        }
    }

    /// The next generated message: queued ones from an earlier list first.
    fn next_message<'py>(
        &self,
        py: Python<'py>,
        pending: &mut VecDeque<Py<PyAny>>,
    ) -> Result<Option<Bound<'py, PyAny>>, ProducerError> {
        if pending.is_empty() {
            let Some(result) = self.call(py, self.plan.generator, &[])? else {
                return Ok(None);
            };
            if let Ok(list) = result.cast::<PyList>() {
                pending.extend(list.iter().map(Bound::unbind));
            } else if !result.is_none() {
                return Ok(Some(result));
            }
        }
        Ok(pending.pop_front().map(|m| m.into_bound(py)))
    }

    fn tick(
        &self,
        py: Python<'_>,
        slots: u64,
        once: bool,
        partitions: u32,
        keyless: &mut KeyPartitioner,
        pending: &mut VecDeque<Py<PyAny>>,
    ) -> Result<Tick, ProducerError> {
        let plan = self.plan;
        let mut records = Vec::new();
        for _ in 0..slots {
            let mut accepted = None;
            for _ in 0..TRIES_PER_MESSAGE {
                let Some(message) = self.next_message(py, pending)? else {
                    continue;
                };
                let Some((key, value)) = self.split(&message)? else {
                    continue;
                };
                if let (Some(condition), false) = (plan.condition, once) {
                    let verdict = self.call(py, condition, &[key.clone(), value.clone()])?;
                    if !verdict.is_some_and(|v| v.is_truthy().unwrap_or(false)) {
                        tracing::warn!(target: "ksml", producer = %plan.name, "Skipping invalid message: key={key} value={value}");
                        continue;
                    }
                }
                accepted = Some((key, value));
                break;
            }
            let Some((key, value)) = accepted else {
                tracing::warn!(target: "ksml", producer = %plan.name, "Could not generate a valid message after {TRIES_PER_MESSAGE} tries, skipping...");
                continue;
            };
            let finished = match (plan.until, once) {
                (Some(until), false) => self
                    .call(py, until, &[key.clone(), value.clone()])?
                    .is_some_and(|v| v.is_truthy().unwrap_or(false)),
                _ => false,
            };
            if let Some(record) = self.encode(&key, &value, partitions, keyless)? {
                records.push(record);
            }
            if finished {
                return Ok(Tick {
                    records,
                    finished: true,
                });
            }
        }
        Ok(Tick {
            records,
            finished: false,
        })
    }

    /// A generated message as (key, value) in the target's types; None when it is not a pair.
    fn split<'py>(
        &self,
        message: &Bound<'py, PyAny>,
    ) -> Result<Option<Message<'py>>, ProducerError> {
        let items: Option<Vec<Bound<'py, PyAny>>> = message
            .try_iter()
            .ok()
            .and_then(|it| it.collect::<PyResult<Vec<_>>>().ok());
        let Some([key, value]) = items.and_then(|v| <[_; 2]>::try_from(v).ok()) else {
            self.failed(format!(
                "Skipping invalid message: {message} (expected a (key, value) tuple)"
            ))?;
            return Ok(None);
        };
        let target = &self.plan.target;
        let conformed = conform(key, &target.key_type)
            .and_then(|k| Ok((k, conform(value, &target.value_type)?)));
        match conformed {
            Ok(pair) => Ok(Some(pair)),
            Err(e) => {
                self.failed(format!(
                    "message does not fit topic '{}': {e}",
                    target.topic
                ))?;
                Ok(None)
            }
        }
    }

    fn encode(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        partitions: u32,
        keyless: &mut KeyPartitioner,
    ) -> Result<Option<(u32, Record)>, ProducerError> {
        let target = &self.plan.target;
        let encoded = py_to_bytes(key, &target.key_type)
            .and_then(|k| Ok((k, py_to_bytes(value, &target.value_type)?)));
        let (key_bytes, value_bytes) = match encoded {
            Ok(pair) => pair,
            Err(e) => {
                self.failed(format!("cannot write to topic '{}': {e}", target.topic))?;
                return Ok(None);
            }
        };
        let partition = match target.partitioner {
            Some(partitioner) => {
                let py = key.py();
                let args = [
                    PyString::new(py, &target.topic).into_any(),
                    key.clone(),
                    value.clone(),
                    partitions.into_pyobject(py).expect("int").into_any(),
                ];
                let Some(result) = self.call(py, partitioner, &args)? else {
                    return Ok(None);
                };
                match py_to_value(&result).ok().as_ref().and_then(Value::as_i64) {
                    Some(p) => p.rem_euclid(i64::from(partitions)) as u32,
                    None => {
                        self.failed("a streamPartitioner must return a partition number".into())?;
                        return Ok(None);
                    }
                }
            }
            None => match &key_bytes {
                Some(k) => murmur2_partition(k, partitions),
                None => {
                    keyless.partition(None, value_bytes.as_ref().map_or(0, Vec::len), partitions)
                }
            },
        };
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Ok(Some((
            partition,
            Record {
                key: key_bytes.map(Into::into),
                value: value_bytes.map(Into::into),
                timestamp,
                headers: Vec::new(),
            },
        )))
    }
}

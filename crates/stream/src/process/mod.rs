//! Running records through the topology: one batch of one task at a time, under one hold of
//! Python's lock. Results are collected, not written: the caller appends them
//! together with the input offsets in one atomic step.

use std::sync::Arc;

use bytes::Bytes;
use millrace_log::{Header, Log, Record, StoredRecord, murmur2_partition};
use millrace_python::convert::{py_to_value, value_to_py};
use millrace_python::pyo3::prelude::*;
use millrace_python::pyo3::types::{PyDict, PyList, PyString};
use millrace_python::watch::WatchedThread;
use millrace_types::codec::CodecError;
use millrace_types::{DataType, Value};

use crate::datum::{Datum, conform};
use crate::suppress::{Held, HeldKeys};
use crate::task::Task;

mod foreign_key;
mod joins;
mod suppressing;
mod table_ops;
mod tables;
use crate::task_stores;
use crate::task_stores::{StoreId, StoreSlot};
use crate::topology::{
    Aggregation, AggregationKind, FnId, GlobalJoin, NodeId, OLD_VALUE_HEADER, OpNode,
    SessionWindows, SlidingWindows, Step, StreamJoinSide, SuppressUntil, Suppression, TableJoin,
    TableTableJoinSide, TopicTarget, Topology, Windows,
};
use millrace_ksml::config::{ErrorHandler, ErrorHandling, Handler};
use millrace_stores::entries::{split_timestamped, timestamped};
use millrace_stores::{Store, StoreError};

/// A record on its way through the operators. A table update also has the key's old value,
/// where a node downstream reads it (null otherwise, and on streams).
#[derive(Clone)]
struct Rec<'py> {
    key: Datum<'py>,
    value: Datum<'py>,
    old: Datum<'py>,
    timestamp: i64,
    headers: Vec<Header>,
}

/// A record produced for a topic.
pub struct Emitted {
    pub topic: Arc<str>,
    pub partition: u32,
    pub record: Record,
}

/// What went wrong with a record, and which error handler decides what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The key or value could not be read as the stream's type.
    Consume,
    /// A function raised or returned something unusable.
    Process,
    /// A result could not be written as the target's type.
    Produce,
}

impl FailureKind {
    fn title(self) -> &'static str {
        match self {
            FailureKind::Consume => "Deserialization",
            FailureKind::Process => "Processing",
            FailureKind::Produce => "Produce",
        }
    }

    fn handler(self, handling: &ErrorHandling) -> &ErrorHandler {
        match self {
            FailureKind::Consume => &handling.consume,
            FailureKind::Process => &handling.process,
            FailureKind::Produce => &handling.produce,
        }
    }
}

#[derive(Debug)]
struct Failure {
    kind: FailureKind,
    node: String,
    message: String,
}

/// The outcome of a batch.
pub struct BatchOutcome {
    pub outputs: Vec<Emitted>,
    /// The offset to commit for each of the task's inputs: after the last record handled, or
    /// at the record that stopped processing (so a restart retries it).
    pub next_offsets: Vec<u64>,
    pub records: usize,
    /// Records dropped for arriving after their windows closed (window end plus grace).
    pub late_records: u64,
    /// Records whose processing failed (handled by the error handler, logged or not).
    pub failed_records: u64,
    /// Caches were sent downstream: the task may commit.
    pub flushed: bool,
    /// Sending cached aggregations downstream failed: the task must not commit.
    pub flush_failed: Option<String>,
    /// Set when a stopOnFail handler stopped processing: the error as logged. (A record that
    /// fails while the run is stopping, its function perhaps interrupted, also ends the batch
    /// at that record, without a message: the next run processes it again.)
    pub stopped: Option<String>,
}

/// Processes one batch of a task.
pub struct BatchProcessor<'a, 'py> {
    py: Python<'py>,
    topology: &'a Topology,
    log: &'a dyn Log,
    task: &'a mut Task,
    outputs: Vec<Emitted>,
    /// The task input the current record came from, and the record's place.
    input: usize,
    topic: &'a str,
    partition: u32,
    offset: u64,
    /// Records dropped for arriving after their windows closed.
    late_records: u64,
    /// Where this thread reports its Python calls.
    watched: &'a WatchedThread,
}

impl<'a, 'py> BatchProcessor<'a, 'py> {
    /// Runs records (tagged with the index of the task input they came from) through the
    /// topology in the order given; with `commit`, or when a record ends the batch, then
    /// sends what cached aggregations hold downstream, since the task commits next.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        py: Python<'py>,
        topology: &'a Topology,
        log: &'a dyn Log,
        handling: &'a ErrorHandling,
        task: &'a mut Task,
        batch: Vec<(usize, StoredRecord)>,
        commit: bool,
        watched: &'a WatchedThread,
    ) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            failed_records: 0,
            outputs: Vec::new(),
            next_offsets: task.inputs.iter().map(|input| input.position).collect(),
            records: 0,
            late_records: 0,
            stopped: None,
            flushed: false,
            flush_failed: None,
        };
        let mut processor = BatchProcessor {
            py,
            topology,
            log,
            task,
            outputs: Vec::with_capacity(batch.len()),
            input: usize::MAX,
            topic: "",
            partition: 0,
            offset: 0,
            late_records: 0,
            watched,
        };
        let mut ended_early = false;
        for (input, stored) in batch {
            let source = processor.task.inputs[input].source;
            if input != processor.input {
                processor.topic = &topology.sources[source].topic;
                processor.partition = stored.partition;
                watched.set_place(processor.task.inputs[input].place.clone());
            }
            processor.input = input;
            processor.offset = stored.offset;
            watched.set_offset(stored.offset);
            let kept = processor.outputs.len();
            let partition_time = processor.task.inputs[input].partition_time;
            task_stores::each_lent(Store::savepoint);
            let result = processor.record(source, &stored.record);
            // A record that ends the batch unprocessed leaves no outputs, no store writes and
            // no mark on its input's partition time.
            let undo = |processor: &mut BatchProcessor<'_, '_>| {
                processor.outputs.truncate(kept);
                processor.task.inputs[input].partition_time = partition_time;
                task_stores::each_lent(Store::rollback);
            };
            if result.is_err() && watched.stopping() {
                undo(&mut processor);
                ended_early = true;
                break;
            }
            if let Err(failure) = result {
                outcome.failed_records += 1;
                let handler = failure.kind.handler(handling);
                let text = processor.describe(&failure, handler, &stored.record);
                if handler.log {
                    let logger = handler
                        .logger_name
                        .clone()
                        .unwrap_or_else(|| format!("{}Error", failure.kind.title()));
                    tracing::error!(target: "ksml", logger, "{text}");
                }
                if handler.handler == Handler::StopOnFail {
                    undo(&mut processor);
                    outcome.stopped = Some(text);
                    ended_early = true;
                    break;
                }
            }
            outcome.records += 1;
            outcome.next_offsets[input] = stored.offset + 1;
        }
        // A commit follows: what caches hold goes downstream first (also when the run is
        // stopping, whose worker commits next).
        if commit || ended_early || watched.stopping() {
            outcome.flushed = true;
            if let Err(failure) = processor.flush_caches(handling) {
                outcome.flush_failed = Some(format!(
                    "{} error while sending cached aggregations downstream at node {}: {}",
                    failure.kind.title(),
                    failure.node,
                    failure.message
                ));
            }
        }
        outcome.outputs = processor.outputs;
        outcome.late_records = processor.late_records;
        outcome
    }

    /// The error text KSML logs for a failed record.
    fn describe(&self, failure: &Failure, handler: &ErrorHandler, record: &Record) -> String {
        let show = |b: &Option<Bytes>| match (handler.log_payload, b) {
            (false, _) => "*****".to_string(),
            (true, None) => "<NULL>".to_string(),
            (true, Some(b)) => String::from_utf8_lossy(b).into_owned(),
        };
        format!(
            "{} error:\n  topic={}\n  partition={}\n  offset={}\n  processorNodeId={}\n  key={}\n  value={}\n  error={}",
            failure.kind.title(),
            self.topic,
            self.partition,
            self.offset,
            failure.node,
            show(&record.key),
            show(&record.value),
            failure.message
        )
    }

    fn record(&mut self, source: usize, record: &Record) -> Result<(), Failure> {
        let src = &self.topology.sources[source];
        let mut rec = Rec {
            key: Datum::from_bytes(record.key.clone()),
            value: Datum::from_bytes(record.value.clone()),
            old: Datum::Null,
            timestamp: record.timestamp,
            headers: record.headers.clone(),
        };
        if let Some(extractor) = src.timestamp_extractor {
            rec.timestamp =
                self.extract_timestamp(extractor, &mut rec, &src.key_type, &src.value_type)?;
        }
        let input = &mut self.task.inputs[self.input];
        input.partition_time = input.partition_time.max(rec.timestamp);
        let roots = &src.roots;
        match roots.as_slice() {
            [only] => self.node(*only, rec),
            _ => {
                for root in roots {
                    self.node(*root, rec.clone())?;
                }
                Ok(())
            }
        }
    }

    fn extract_timestamp(
        &mut self,
        extractor: FnId,
        rec: &mut Rec<'py>,
        key_type: &DataType,
        value_type: &DataType,
    ) -> Result<i64, Failure> {
        let py = self.py;
        let fail = |kind, message: String| Failure {
            kind,
            node: format!("{}_timestampExtractor", self.topic),
            message,
        };
        let key = rec
            .key
            .as_py(py, key_type)
            .map_err(|e| fail(FailureKind::Consume, e.to_string()))?;
        let value = rec
            .value
            .as_py(py, value_type)
            .map_err(|e| fail(FailureKind::Consume, e.to_string()))?;
        let build = || -> PyResult<Bound<'py, PyDict>> {
            let d = PyDict::new(py);
            d.set_item("timestamp", rec.timestamp)?;
            d.set_item("timestampType", "CreateTime")?;
            d.set_item("topic", self.topic)?;
            d.set_item("partition", self.partition)?;
            d.set_item("offset", self.offset)?;
            d.set_item("key", key)?;
            d.set_item("value", value)?;
            Ok(d)
        };
        let record = build().map_err(|e| fail(FailureKind::Process, e.to_string()))?;
        let result = self.call(
            extractor,
            &[
                record.into_any(),
                self.task.inputs[self.input]
                    .partition_time
                    .into_pyobject(py)
                    .expect("int")
                    .into_any(),
            ],
            "timestampExtractor",
        )?;
        result.extract::<i64>().map_err(|_| {
            fail(
                FailureKind::Process,
                "timestampExtractor must return a long (milliseconds)".into(),
            )
        })
    }

    /// Calls a function; an exception is a processing failure at the calling node.
    fn call(
        &self,
        f: FnId,
        args: &[Bound<'py, PyAny>],
        node: &str,
    ) -> Result<Bound<'py, PyAny>, Failure> {
        let _call = self.watched.enter(f);
        self.topology.functions[f]
            .py
            .call(self.py, args)
            .map_err(|e| Failure {
                kind: FailureKind::Process,
                node: node.to_string(),
                message: e.to_string(),
            })
    }

    /// Calls a `(key, value)` function of a node with a record.
    fn call_with_record(
        &self,
        node: &OpNode,
        rec: &mut Rec<'py>,
        f: FnId,
    ) -> Result<Bound<'py, PyAny>, Failure> {
        self.call_on(node, rec, f, false)
    }

    /// Calls a `(key, value)` function of a node with a record's key and its new value, or
    /// (`old`) its old value (a table update's).
    fn call_on(
        &self,
        node: &OpNode,
        rec: &mut Rec<'py>,
        f: FnId,
        old: bool,
    ) -> Result<Bound<'py, PyAny>, Failure> {
        let consume = |e| Self::consume_failure(node, e);
        let key = rec.key.as_py(self.py, &node.key_type).map_err(consume)?;
        let value = match old {
            true => &mut rec.old,
            false => &mut rec.value,
        };
        let value = value.as_py(self.py, &node.value_type).map_err(consume)?;
        self.call(f, &[key, value], &node.name)
    }

    /// A predicate's answer as Python's truth; an answer without one fails at the node.
    fn truthy(
        &self,
        node: &OpNode,
        predicate: FnId,
        answer: &Bound<'py, PyAny>,
    ) -> Result<bool, Failure> {
        answer.is_truthy().map_err(|e| {
            Self::process_failure(
                node,
                &self.topology.functions[predicate].name,
                e.to_string(),
            )
        })
    }

    /// A function's result made to fit `ty` (see [`conform`]); one that cannot fails at the
    /// node, naming the function.
    fn conformed(
        &self,
        node: &OpNode,
        f: FnId,
        result: Bound<'py, PyAny>,
        ty: &DataType,
    ) -> Result<Bound<'py, PyAny>, Failure> {
        conform(result, ty)
            .map_err(|e| Self::process_failure(node, &self.topology.functions[f].name, e))
    }

    /// Key and value of a record as Python objects, decoded with the node's input types.
    fn key_value(
        &self,
        node: &OpNode,
        rec: &mut Rec<'py>,
    ) -> Result<[Bound<'py, PyAny>; 2], Failure> {
        let consume = |e| Self::consume_failure(node, e);
        Ok([
            rec.key.as_py(self.py, &node.key_type).map_err(consume)?,
            rec.value
                .as_py(self.py, &node.value_type)
                .map_err(consume)?,
        ])
    }

    /// Bytes that are not of the node's declared type: a deserialization failure there.
    fn consume_failure(node: &OpNode, error: CodecError) -> Failure {
        Failure {
            kind: FailureKind::Consume,
            node: node.name.clone(),
            message: error.to_string(),
        }
    }

    fn process_failure(node: &OpNode, function: &str, message: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Process,
            node: node.name.clone(),
            message: format!("{function}: {}", message.into()),
        }
    }

    fn forward(&mut self, node: &OpNode, rec: Rec<'py>) -> Result<(), Failure> {
        match node.children.as_slice() {
            [] => Ok(()),
            [only] => self.node(*only, rec),
            children => {
                for child in children {
                    self.node(*child, rec.clone())?;
                }
                Ok(())
            }
        }
    }

    fn node(&mut self, id: NodeId, mut rec: Rec<'py>) -> Result<(), Failure> {
        let topology = self.topology;
        let node = &topology.nodes[id];
        let fname = |f: FnId| topology.functions[f].name.as_str();
        match &node.step {
            Step::Pass => self.forward(node, rec),
            Step::Aggregate(aggregation) => self.aggregate(node, aggregation, rec),
            Step::Suppress(suppression) => self.suppress(id, node, suppression, rec),
            Step::Materialize { store } => self.materialize(node, *store, rec),
            Step::TableJoin(join) => self.table_join(node, join, rec),
            Step::TableTableJoin(side) => self.table_table_join(node, side, rec),
            Step::ForeignKeyJoin(part) => self.foreign_key_join(node, part, rec),
            Step::TableFilter {
                predicate,
                keep_when,
            } => self.table_filter(node, *predicate, *keep_when, rec),
            Step::TableMapValues { mapper } => self.table_map_values(node, *mapper, rec),
            Step::TableGroupBy { mapper } => self.table_group_by(node, *mapper, rec),
            Step::ReadOldValues => {
                if let Some(at) = rec.headers.iter().position(|h| h.key == OLD_VALUE_HEADER) {
                    rec.old = Datum::from_bytes(rec.headers.remove(at).value);
                }
                self.forward(node, rec)
            }
            Step::GlobalJoin(join) => self.global_join(node, join, rec),
            Step::StreamJoin(side) => self.stream_join(node, side, rec),
            Step::Filter {
                predicate,
                keep_when,
            } => {
                let answer = self.call_with_record(node, &mut rec, *predicate)?;
                if self.truthy(node, *predicate, &answer)? == *keep_when {
                    self.forward(node, rec)?;
                }
                Ok(())
            }
            Step::Peek { action } => {
                self.call_with_record(node, &mut rec, *action)?;
                self.forward(node, rec)
            }
            Step::ForEach { action } => {
                self.call_with_record(node, &mut rec, *action)?;
                Ok(())
            }
            Step::MapValues { mapper } => {
                let result = self.call_with_record(node, &mut rec, *mapper)?;
                let result = self.conformed(node, *mapper, result, &node.out_value_type)?;
                rec.value = Datum::Py(result);
                self.forward(node, rec)
            }
            Step::MapKey { mapper } => {
                let result = self.call_with_record(node, &mut rec, *mapper)?;
                let result = self.conformed(node, *mapper, result, &node.out_key_type)?;
                rec.key = Datum::Py(result);
                self.forward(node, rec)
            }
            Step::Map { mapper } => {
                let result = self.call_with_record(node, &mut rec, *mapper)?;
                let (key, value) = self.pair(node, fname(*mapper), &result)?;
                rec.key = Datum::Py(key);
                rec.value = Datum::Py(value);
                self.forward(node, rec)
            }
            Step::FlatMap { mapper } => {
                let result = self.call_with_record(node, &mut rec, *mapper)?;
                for item in self.items(node, fname(*mapper), &result)? {
                    let (key, value) = self.pair(node, fname(*mapper), &item)?;
                    let mut out = rec.clone();
                    out.key = Datum::Py(key);
                    out.value = Datum::Py(value);
                    self.forward(node, out)?;
                }
                Ok(())
            }
            Step::FlatMapValues { mapper } => {
                let result = self.call_with_record(node, &mut rec, *mapper)?;
                for item in self.items(node, fname(*mapper), &result)? {
                    let item = self.conformed(node, *mapper, item, &node.out_value_type)?;
                    let mut out = rec.clone();
                    out.value = Datum::Py(item);
                    self.forward(node, out)?;
                }
                Ok(())
            }
            Step::TransformMetadata { mapper } => {
                let [key, value] = self.key_value(node, &mut rec)?;
                let metadata = self
                    .metadata(&rec)
                    .map_err(|e| Self::process_failure(node, fname(*mapper), e))?;
                let result = self.call(*mapper, &[key, value, metadata], &node.name)?;
                self.apply_metadata(&mut rec, &result)
                    .map_err(|e| Self::process_failure(node, fname(*mapper), e))?;
                self.forward(node, rec)
            }
            Step::ConvertKey => {
                rec.key = self.convert(node, rec.key, &node.key_type, &node.out_key_type)?;
                self.forward(node, rec)
            }
            Step::ConvertValue => {
                rec.value =
                    self.convert(node, rec.value, &node.value_type, &node.out_value_type)?;
                self.forward(node, rec)
            }
            Step::Branch { branches } => {
                for (condition, first) in branches {
                    let taken = match condition {
                        None => true,
                        Some(predicate) => {
                            let answer = self.call_with_record(node, &mut rec, *predicate)?;
                            self.truthy(node, *predicate, &answer)?
                        }
                    };
                    if taken {
                        return self.node(*first, rec);
                    }
                }
                Ok(())
            }
            Step::To(target) => self.emit(node, &mut rec, target),
            Step::ToTopicNameExtractor {
                extractor,
                partitioner,
            } => {
                let [key, value] = self.key_value(node, &mut rec)?;
                let context = self
                    .record_context(&rec)
                    .map_err(|e| Self::process_failure(node, fname(*extractor), e))?;
                let topic: String = self
                    .call(*extractor, &[key, value, context], &node.name)?
                    .extract()
                    .map_err(|_| {
                        Self::process_failure(
                            node,
                            fname(*extractor),
                            "expected a string result (the topic name)",
                        )
                    })?;
                let target = TopicTarget {
                    topic: topic.into(),
                    key_type: node.key_type.clone(),
                    value_type: node.value_type.clone(),
                    partitioner: *partitioner,
                    carries_old_values: false,
                };
                self.emit(node, &mut rec, &target)
            }
            Step::Print {
                target,
                label,
                mapper,
            } => {
                let text = match mapper {
                    Some(mapper) => {
                        let result = self.call_with_record(node, &mut rec, *mapper)?;
                        result.str().map(|s| s.to_string()).unwrap_or_default()
                    }
                    None => {
                        let [key, value] = self.key_value(node, &mut rec)?;
                        format!("{}, {}", display(&key), display(&value))
                    }
                };
                let label = label.as_deref().unwrap_or(&node.name);
                target
                    .write_line(&format!("[{label}]: {text}"))
                    .map_err(|e| Failure {
                        kind: FailureKind::Produce,
                        node: node.name.clone(),
                        message: format!("cannot print: {e}"),
                    })
            }
        }
    }

    /// A `(key, value)` result of a keyValueTransformer.
    fn pair(
        &self,
        node: &OpNode,
        function: &str,
        result: &Bound<'py, PyAny>,
    ) -> Result<(Bound<'py, PyAny>, Bound<'py, PyAny>), Failure> {
        let items: Vec<Bound<'py, PyAny>> = result
            .try_iter()
            .and_then(|it| it.collect::<PyResult<Vec<_>>>())
            .map_err(|_| Self::process_failure(node, function, "expected a (key, value) tuple"))?;
        let [key, value]: [Bound<'py, PyAny>; 2] = items.try_into().map_err(|_| {
            Self::process_failure(node, function, "expected a (key, value) tuple of two")
        })?;
        let key = conform(key, &node.out_key_type)
            .map_err(|e| Self::process_failure(node, function, e))?;
        let value = conform(value, &node.out_value_type)
            .map_err(|e| Self::process_failure(node, function, e))?;
        Ok((key, value))
    }

    fn items(
        &self,
        node: &OpNode,
        function: &str,
        result: &Bound<'py, PyAny>,
    ) -> Result<Vec<Bound<'py, PyAny>>, Failure> {
        if result.is_none() {
            return Ok(Vec::new());
        }
        result
            .try_iter()
            .and_then(|it| it.collect::<PyResult<Vec<_>>>())
            .map_err(|_| Self::process_failure(node, function, "expected a list"))
    }

    fn convert(
        &self,
        node: &OpNode,
        datum: Datum<'py>,
        from: &DataType,
        to: &DataType,
    ) -> Result<Datum<'py>, Failure> {
        let fail = |message: String| Failure {
            kind: FailureKind::Process,
            node: node.name.clone(),
            message: format!("cannot convert {from} to {to}: {message}"),
        };
        Ok(match datum {
            Datum::Null => Datum::Null,
            Datum::Raw(_) | Datum::Decoded(..) => {
                Datum::from_bytes(datum.to_bytes(from, to).map_err(|e| fail(e.to_string()))?)
            }
            Datum::Py(obj) => Datum::Py(conform(obj, to).map_err(fail)?),
        })
    }

    fn headers_list(&self, headers: &[Header]) -> PyResult<Bound<'py, PyList>> {
        let py = self.py;
        let list = PyList::empty(py);
        for h in headers {
            let d = PyDict::new(py);
            d.set_item("key", &h.key)?;
            match &h.value {
                None => d.set_item("value", py.None())?,
                Some(v) => match std::str::from_utf8(v) {
                    Ok(text) => d.set_item("value", text)?,
                    Err(_) => d.set_item("value", value_to_py(py, &Value::Bytes(v.to_vec()))?)?,
                },
            }
            list.append(d)?;
        }
        Ok(list)
    }

    fn metadata(&self, rec: &Rec<'py>) -> Result<Bound<'py, PyAny>, String> {
        let build = || -> PyResult<Bound<'py, PyAny>> {
            let d = PyDict::new(self.py);
            d.set_item("timestamp", rec.timestamp)?;
            d.set_item("headers", self.headers_list(&rec.headers)?)?;
            Ok(d.into_any())
        };
        build().map_err(|e| e.to_string())
    }

    fn record_context(&self, rec: &Rec<'py>) -> Result<Bound<'py, PyAny>, String> {
        let build = || -> PyResult<Bound<'py, PyAny>> {
            let d = PyDict::new(self.py);
            d.set_item("headers", self.headers_list(&rec.headers)?)?;
            d.set_item("offset", self.offset)?;
            d.set_item("partition", self.partition)?;
            d.set_item("timestamp", rec.timestamp)?;
            d.set_item("topic", self.topic)?;
            Ok(d.into_any())
        };
        build().map_err(|e| e.to_string())
    }

    /// Reads `timestamp` and `headers` back from a metadataTransformer's result.
    fn apply_metadata(&self, rec: &mut Rec<'py>, result: &Bound<'py, PyAny>) -> Result<(), String> {
        let value = py_to_value(result)?;
        let Value::Struct(fields) = value else {
            return Err("expected a metadata dict {timestamp, headers}".into());
        };
        for (name, field) in fields {
            match name.as_str() {
                "timestamp" => {
                    rec.timestamp = field.as_i64().ok_or("metadata timestamp must be a long")?;
                }
                "headers" => {
                    let Value::List(items) = field else {
                        return Err("metadata headers must be a list of {key, value}".into());
                    };
                    let mut headers = Vec::with_capacity(items.len());
                    for item in items {
                        let Value::Struct(parts) = item else {
                            return Err("each header must be a dict {key, value}".into());
                        };
                        let mut key = None;
                        let mut value = None;
                        for (k, v) in parts {
                            match (k.as_str(), v) {
                                ("key", Value::String(s)) => key = Some(s),
                                ("value", Value::Null) => {}
                                ("value", Value::String(s)) => value = Some(Bytes::from(s)),
                                ("value", other) => {
                                    let bytes = other
                                        .coerce(&DataType::Bytes)
                                        .map_err(|e| format!("header value: {}", e.0))?;
                                    if let Value::Bytes(b) = bytes {
                                        value = Some(Bytes::from(b));
                                    }
                                }
                                _ => {}
                            }
                        }
                        headers.push(Header {
                            key: key.ok_or("each header needs a string 'key'")?,
                            value,
                        });
                    }
                    rec.headers = headers;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Encodes a record for a topic and collects it.
    fn emit(
        &mut self,
        node: &OpNode,
        rec: &mut Rec<'py>,
        target: &TopicTarget,
    ) -> Result<(), Failure> {
        let topic = &target.topic;
        let consume = |e| Self::consume_failure(node, e);
        rec.key.check(&node.key_type).map_err(consume)?;
        rec.value.check(&node.value_type).map_err(consume)?;
        let produce = |e: CodecError| Failure {
            kind: FailureKind::Produce,
            node: node.name.clone(),
            message: format!("cannot write to topic '{topic}': {e}"),
        };
        let key = rec
            .key
            .to_bytes(&node.key_type, &target.key_type)
            .map_err(produce)?;
        let value = rec
            .value
            .to_bytes(&node.value_type, &target.value_type)
            .map_err(produce)?;
        let partitions = self.partition_count(topic).map_err(|e| Failure {
            kind: FailureKind::Produce,
            node: node.name.clone(),
            message: e,
        })?;
        let mut headers = rec.headers.clone();
        if target.carries_old_values && !rec.old.is_null() {
            headers.push(Header {
                key: OLD_VALUE_HEADER.into(),
                value: rec
                    .old
                    .to_bytes(&node.value_type, &target.value_type)
                    .map_err(produce)?,
            });
        }
        let record = Record {
            key,
            value,
            timestamp: rec.timestamp,
            headers,
        };
        let Some(partitioner) = target.partitioner else {
            let partition = match &record.key {
                Some(k) => murmur2_partition(k, partitions),
                None => {
                    let size = record.value.as_ref().map_or(0, |v| v.len());
                    self.task.state.keyless.partition(None, size, partitions)
                }
            };
            self.outputs.push(Emitted {
                topic: Arc::clone(topic),
                partition,
                record,
            });
            return Ok(());
        };
        let [k, v] = self.key_value(node, rec)?;
        let topic_arg = PyString::new(self.py, topic).into_any();
        let count = partitions.into_pyobject(self.py).expect("int").into_any();
        let result = self.call(partitioner, &[topic_arg, k, v, count], &node.name)?;
        // A partition number, or a list of them (an empty list drops the record).
        let picked = match py_to_value(&result) {
            Ok(Value::List(items)) => items.iter().map(Value::as_i64).collect::<Option<Vec<_>>>(),
            Ok(single) => single.as_i64().map(|p| vec![p]),
            Err(_) => None,
        }
        .ok_or_else(|| {
            Self::process_failure(
                node,
                &self.topology.functions[partitioner].name,
                "a streamPartitioner returns a partition number or a list of them",
            )
        })?;
        for p in picked {
            self.outputs.push(Emitted {
                topic: Arc::clone(topic),
                partition: p.rem_euclid(i64::from(partitions)) as u32,
                record: record.clone(),
            });
        }
        Ok(())
    }

    fn partition_count(&mut self, topic: &Arc<str>) -> Result<u32, String> {
        if let Some((last, n)) = &self.task.state.last_topic
            && Arc::ptr_eq(last, topic)
        {
            return Ok(*n);
        }
        let n = match self.task.state.partition_counts.get(topic) {
            Some(n) => *n,
            None => {
                let n = self.log.ensure_topic(topic).map_err(|e| e.to_string())?;
                self.task
                    .state
                    .partition_counts
                    .insert(Arc::clone(topic), n);
                n
            }
        };
        self.task.state.last_topic = Some((Arc::clone(topic), n));
        Ok(n)
    }
}

/// How `print` shows a key or value: strings as they are, everything else as JSON.
fn display(obj: &Bound<'_, PyAny>) -> String {
    if let Ok(s) = obj.extract::<String>() {
        return s;
    }
    if obj.is_none() {
        return "null".into();
    }
    let mut out = Vec::new();
    match millrace_python::convert::write_json(obj, &mut out) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => obj.str().map(|s| s.to_string()).unwrap_or_default(),
    }
}

impl<'py> BatchProcessor<'_, 'py> {
    /// Works on one of the task's stores; a failure names the node and the store.
    fn in_store<R>(
        &self,
        node: &OpNode,
        store: StoreId,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError>,
    ) -> Result<R, Failure> {
        let failed = |message: String| {
            let what = format!("state store '{}'", self.topology.stores[store].spec.name);
            Self::process_failure(node, &what, message)
        };
        match task_stores::with_store(store, f) {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(e) => Err(failed(e)),
        }
    }

    /// Calls a join's valueJoiner with (key, value1, value2); the result in the node's type.
    fn join_values(
        &self,
        node: &OpNode,
        joiner: FnId,
        args: [Bound<'py, PyAny>; 3],
    ) -> Result<Bound<'py, PyAny>, Failure> {
        let joined = self.call(joiner, &args, &node.name)?;
        self.conformed(node, joiner, joined, &node.out_value_type)
    }

    /// A record's key and value in a store's types; None for a record without a key, which
    /// no store keeps.
    fn stored_pair(
        node: &OpNode,
        slot: &StoreSlot,
        rec: &Rec<'py>,
    ) -> Result<Option<(Bytes, Option<Bytes>)>, Failure> {
        let consume = |e| Self::consume_failure(node, e);
        let Some(key) = rec
            .key
            .to_bytes(&node.key_type, &slot.key_type)
            .map_err(consume)?
        else {
            return Ok(None);
        };
        let value = rec
            .value
            .to_bytes(&node.value_type, &slot.value_type)
            .map_err(consume)?;
        Ok(Some((key, value)))
    }

    /// Bytes a store keeps, as Python (`ty`: the store's key or value type).
    fn stored_py(
        &self,
        node: &OpNode,
        bytes: &[u8],
        ty: &DataType,
    ) -> Result<Bound<'py, PyAny>, Failure> {
        millrace_python::convert::bytes_to_py(self.py, Some(bytes), ty).map_err(|e| {
            Self::process_failure(
                node,
                "state store",
                format!("stored data of type {ty}: {e}"),
            )
        })
    }

    /// A function's result as a store keeps it (`ty`: the store's value type).
    fn to_stored(
        &self,
        node: &OpNode,
        obj: &Bound<'py, PyAny>,
        ty: &DataType,
        function: FnId,
    ) -> Result<Option<Bytes>, Failure> {
        millrace_python::convert::py_to_bytes(obj, ty)
            .map(|b| b.map(Bytes::from))
            .map_err(|e| {
                let name = &self.topology.functions[function].name;
                Self::process_failure(node, name, e.to_string())
            })
    }

    /// Writes one entry of a store (None deletes the key).
    fn store_put(
        &self,
        node: &OpNode,
        store: StoreId,
        key: Bytes,
        entry: Option<Bytes>,
    ) -> Result<(), Failure> {
        self.in_store(node, store, |s| {
            s.put(key, entry);
            Ok(())
        })
    }

    /// The task's stream time: the highest timestamp processed from any of its inputs.
    fn stream_time(&self) -> i64 {
        self.task
            .inputs
            .iter()
            .map(|i| i.partition_time)
            .max()
            .unwrap_or(-1)
    }
}

//! Running records through the topology: one batch of one task at a time, under one hold of
//! Python's lock. Results are collected, not written: the caller appends them
//! together with the input offsets in one atomic step.

use std::sync::Arc;

use bytes::Bytes;
use millrace_log::{Header, Log, Record, StoredRecord, murmur2_partition};
use millrace_python::convert::{bytes_to_py, py_to_bytes, py_to_value, value_to_py};
use millrace_python::pyo3::prelude::*;
use millrace_python::pyo3::types::{PyDict, PyList, PyString};
use millrace_python::watch::WatchedThread;
use millrace_types::codec::CodecError;
use millrace_types::{DataType, Value};

use crate::datum::{Datum, conform};
use crate::suppress::{Held, HeldKeys};
use crate::task::Task;
use crate::task_stores;
use crate::task_stores::StoreId;
use crate::topology::{
    Aggregation, AggregationKind, FnId, GlobalJoin, NodeId, OpNode, SessionWindows, Step,
    StreamJoinSide, SuppressUntil, Suppression, TableJoin, TopicTarget, Topology, Windows,
};
use millrace_ksml::config::{ErrorHandler, ErrorHandling, Handler};
use millrace_stores::{Store, StoreError, keys};
use millrace_types::time::format_instant;

/// A record on its way through the operators.
#[derive(Clone)]
struct Rec<'py> {
    key: Datum<'py>,
    value: Datum<'py>,
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
            task_stores::each_lent(Store::savepoint);
            let result = processor.record(source, &stored.record);
            // A record that ends the batch unprocessed leaves no outputs and no store writes.
            let undo = |outputs: &mut Vec<Emitted>| {
                outputs.truncate(kept);
                task_stores::each_lent(Store::rollback);
            };
            if result.is_err() && watched.stopping() {
                undo(&mut processor.outputs);
                ended_early = true;
                break;
            }
            if let Err(failure) = result {
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
                    undo(&mut processor.outputs);
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
        let args = self.key_value(node, rec)?;
        self.call(f, &args, &node.name)
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
            Step::GlobalJoin(join) => self.global_join(node, join, rec),
            Step::StreamJoin(side) => self.stream_join(node, side, rec),
            Step::Filter {
                predicate,
                keep_when,
            } => {
                let result = self.call_with_record(node, &mut rec, *predicate)?;
                let truthy = result
                    .is_truthy()
                    .map_err(|e| Self::process_failure(node, fname(*predicate), e.to_string()))?;
                if truthy == *keep_when {
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
                let result = conform(result, &node.out_value_type)
                    .map_err(|e| Self::process_failure(node, fname(*mapper), e))?;
                rec.value = Datum::Py(result);
                self.forward(node, rec)
            }
            Step::MapKey { mapper } => {
                let result = self.call_with_record(node, &mut rec, *mapper)?;
                let result = conform(result, &node.out_key_type)
                    .map_err(|e| Self::process_failure(node, fname(*mapper), e))?;
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
                    let item = conform(item, &node.out_value_type)
                        .map_err(|e| Self::process_failure(node, fname(*mapper), e))?;
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
                        Some(predicate) => self
                            .call_with_record(node, &mut rec, *predicate)?
                            .is_truthy()
                            .map_err(|e| {
                                Self::process_failure(node, fname(*predicate), e.to_string())
                            })?,
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
        let record = Record {
            key,
            value,
            timestamp: rec.timestamp,
            headers: rec.headers.clone(),
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

/// A value kept by an aggregation: the timestamp of its latest update (8 bytes, big-endian, as
/// Kafka Streams' timestamped stores keep it) and the serialized value.
fn timestamped(time: i64, value: &[u8]) -> Bytes {
    let mut entry = Vec::with_capacity(8 + value.len());
    entry.extend_from_slice(&time.to_be_bytes());
    entry.extend_from_slice(value);
    Bytes::from(entry)
}

/// The timestamp and value of an entry written by [`timestamped`].
fn split_timestamped(entry: &Bytes) -> Option<(i64, Bytes)> {
    let time = i64::from_be_bytes(entry.get(..8)?.try_into().ok()?);
    Some((time, entry.slice(8..)))
}

impl<'py> BatchProcessor<'_, 'py> {
    /// Works on one of the task's stores; a failure names the node and the store.
    fn in_store<R>(
        &self,
        node: &OpNode,
        store: StoreId,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError>,
    ) -> Result<R, Failure> {
        let what = format!("state store '{}'", self.topology.stores[store].spec.name);
        match task_stores::with_store(store, f) {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(Self::process_failure(node, &what, e.to_string())),
            Err(e) => Err(Self::process_failure(node, &what, e)),
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
        conform(joined, &node.out_value_type)
            .map_err(|e| Self::process_failure(node, &self.topology.functions[joiner].name, e))
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

    /// count, reduce or aggregate of one record, into each of its windows when windowed.
    /// Records with a null key or value are skipped, and so are records for windows closed
    /// longer than the grace period, as in Kafka Streams.
    fn aggregate(
        &mut self,
        node: &OpNode,
        aggregation: &Aggregation,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let slot = &self.topology.stores[aggregation.store];
        if rec.value.is_null() {
            return Ok(());
        }
        let key = rec
            .key
            .to_bytes(&node.key_type, &slot.key_type)
            .map_err(|e| Self::consume_failure(node, e))?;
        let Some(key) = key else {
            return Ok(());
        };
        let windows = match aggregation.windows {
            None => {
                if let Some((value, time)) =
                    self.update(node, aggregation, key.clone(), &mut rec)?
                {
                    self.forward_update(node, Datum::Raw(key), value, time, &rec.headers)?;
                }
                return Ok(());
            }
            Some(Windows::Session(sessions)) => {
                return self.aggregate_session(node, aggregation, sessions, key, rec);
            }
            Some(Windows::Time(windows)) => windows,
        };
        let close = self.stream_time() - windows.grace;
        for start in windows.starts_for(rec.timestamp) {
            let end = start + windows.size;
            if end <= close {
                self.late_records += 1;
                continue;
            }
            let stored = keys::window_key(&key, start, 0);
            if let Some((value, time)) = self.update(node, aggregation, stored, &mut rec)? {
                let windowed = self.windowed_key(node, &slot.key_type, &key, start, end)?;
                self.forward_update(node, windowed, value, time, &rec.headers)?;
            }
        }
        Ok(())
    }

    /// Combines a record with the store's entry at `stored`; returns the new value and its
    /// time when it goes downstream now (a store without caching), None when it waits for
    /// the commit.
    #[allow(clippy::type_complexity)]
    fn update(
        &mut self,
        node: &OpNode,
        aggregation: &Aggregation,
        stored: Bytes,
        rec: &mut Rec<'py>,
    ) -> Result<Option<(Option<Bytes>, i64)>, Failure> {
        let py = self.py;
        let slot = &self.topology.stores[aggregation.store];
        let current = self.in_store(node, aggregation.store, |s| s.get(&stored))?;
        let (old_time, old) = match current.as_ref().and_then(split_timestamped) {
            Some((time, value)) => (time, Some(value)),
            None => (i64::MIN, None),
        };
        let stored_value = |obj: Bound<'py, PyAny>, function: FnId| {
            let name = &self.topology.functions[function].name;
            py_to_bytes(&obj, &slot.value_type)
                .map(|b| b.map(Bytes::from))
                .map_err(|e| Self::process_failure(node, name, e.to_string()))
        };
        let decode_old = |old: &Bytes| {
            bytes_to_py(py, Some(old), &slot.value_type).map_err(|e| {
                Self::process_failure(node, "state store", format!("stored value: {e}"))
            })
        };
        let value: Option<Bytes> = match &aggregation.kind {
            AggregationKind::Count => {
                let count = old
                    .as_deref()
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, i64::from_be_bytes);
                Some(Bytes::copy_from_slice(&(count + 1).to_be_bytes()))
            }
            AggregationKind::Reduce { reducer } => match &old {
                None => rec
                    .value
                    .to_bytes(&node.value_type, &slot.value_type)
                    .map_err(|e| Self::consume_failure(node, e))?,
                Some(old) => {
                    let aggregate = decode_old(old)?;
                    let value = rec
                        .value
                        .as_py(py, &node.value_type)
                        .map_err(|e| Self::consume_failure(node, e))?;
                    let reduced = self.call(*reducer, &[aggregate, value], &node.name)?;
                    stored_value(reduced, *reducer)?
                }
            },
            AggregationKind::Aggregate {
                initializer,
                aggregator,
                ..
            } => {
                let aggregate = match &old {
                    None => self.call(*initializer, &[], &node.name)?,
                    Some(old) => decode_old(old)?,
                };
                let [key, value] = self.key_value(node, rec)?;
                let result = self.call(*aggregator, &[key, value, aggregate], &node.name)?;
                stored_value(result, *aggregator)?
            }
        };
        let time = old_time.max(rec.timestamp);
        let entry = value.as_ref().map(|v| timestamped(time, v));
        self.store_put(node, aggregation.store, stored, entry)?;
        Ok((!slot.spec.caching).then_some((value, time)))
    }

    /// Passes an aggregation's new value for a key downstream.
    fn forward_update(
        &mut self,
        node: &OpNode,
        key: Datum<'py>,
        value: Option<Bytes>,
        time: i64,
        headers: &[Header],
    ) -> Result<(), Failure> {
        let rec = Rec {
            key,
            value: Datum::from_bytes(value),
            timestamp: time,
            headers: headers.to_vec(),
        };
        self.forward(node, rec)
    }

    /// A windowed key as KSML shows it to Python: `{start, end, startTime, endTime, key}`.
    fn windowed_key(
        &self,
        node: &OpNode,
        key_type: &DataType,
        key: &[u8],
        start: i64,
        end: i64,
    ) -> Result<Datum<'py>, Failure> {
        let py = self.py;
        let inner =
            bytes_to_py(py, Some(key), key_type).map_err(|e| Self::consume_failure(node, e))?;
        let build = || -> PyResult<Bound<'py, PyAny>> {
            let dict = PyDict::new(py);
            dict.set_item("start", start)?;
            dict.set_item("end", end)?;
            dict.set_item("startTime", format_instant(start))?;
            dict.set_item("endTime", format_instant(end))?;
            dict.set_item("key", inner)?;
            Ok(dict.into_any())
        };
        build()
            .map(Datum::Py)
            .map_err(|e| Self::process_failure(node, "windowed key", e.to_string()))
    }

    /// Sends downstream what cached aggregations of this task buffered since the last commit
    /// (the latest value of each key, as Kafka Streams' cache flush does), upstream tables
    /// first so that what they send reaches the caches after them, then what suppress nodes
    /// hold that is due. A failure downstream goes to the process error handler: with
    /// continueOnFail it is logged and the flush goes on.
    fn flush_caches(&mut self, handling: &ErrorHandling) -> Result<(), Failure> {
        let topology = self.topology;
        for (node, store, windows) in topology.table_nodes() {
            let slot = &topology.stores[store];
            if !slot.spec.caching {
                continue;
            }
            let Ok(entries) = task_stores::with_store(store, |s| s.buffered()) else {
                continue;
            };
            for (stored, entry) in entries {
                // A deletion of what never went downstream (a key, or a merged session,
                // created and deleted since the last commit) is not passed on.
                if entry.is_none() {
                    let was = task_stores::with_store(store, |s| s.get_committed(&stored))
                        .ok()
                        .and_then(Result::ok)
                        .flatten();
                    if was.is_none() {
                        continue;
                    }
                }
                let (time, value) = match entry.as_ref().and_then(split_timestamped) {
                    Some((time, value)) => (time, Some(value)),
                    None => (self.stream_time(), None),
                };
                let window = match windows {
                    None => None,
                    Some(Windows::Time(windows)) => keys::parse_window_key(&stored)
                        .map(|(key, start, _)| (key, start, start + windows.size)),
                    Some(Windows::Session(_)) => keys::parse_session_key(&stored),
                };
                let key = match (windows, window) {
                    (None, _) => Datum::Raw(stored.clone()),
                    (Some(_), Some((key, start, end))) => {
                        self.windowed_key(node, &slot.key_type, key, start, end)?
                    }
                    (Some(_), None) => continue,
                };
                if let Err(failure) = self.forward_update(node, key, value, time, &[]) {
                    let handler = failure.kind.handler(handling);
                    if handler.handler == Handler::StopOnFail {
                        return Err(failure);
                    }
                    if handler.log {
                        tracing::error!(
                            target: "ksml",
                            "{} error sending a cached update downstream at node {}: {}",
                            failure.kind.title(),
                            failure.node,
                            failure.message
                        );
                    }
                }
            }
        }
        self.release_due()
    }
}

impl<'py> BatchProcessor<'_, 'py> {
    /// Holds a table update back: the latest per key replaces the one held, and keeps the due
    /// time of the first (time limit) or its window's close. Then lets go what is due.
    fn suppress(
        &mut self,
        id: NodeId,
        node: &OpNode,
        suppression: &Suppression,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let consume = |e| Self::consume_failure(node, e);
        let Some(key) = rec
            .key
            .to_bytes(&node.key_type, &node.key_type)
            .map_err(consume)?
        else {
            return Ok(());
        };
        let value = rec
            .value
            .to_bytes(&node.value_type, &node.value_type)
            .map_err(consume)?;
        self.load_held(id, node, suppression)?;
        let held_due = self.task.state.held.get(&id).and_then(|h| h.due_of(&key));
        let due = match suppression.until {
            SuppressUntil::TimeLimit { limit } => {
                held_due.unwrap_or(rec.timestamp.saturating_add(limit))
            }
            SuppressUntil::WindowCloses { grace } => {
                let window = rec.key.as_py(self.py, &node.key_type).map_err(consume)?;
                let end: i64 = window
                    .get_item("end")
                    .and_then(|end| end.extract())
                    .map_err(|_| {
                        Self::process_failure(node, "suppress", "the key is not a window")
                    })?;
                end.saturating_add(grace)
            }
        };
        let entry = Held {
            due,
            time: rec.timestamp,
            value,
        }
        .encode();
        let size = entry.len();
        self.store_put(node, suppression.store, key.clone(), Some(entry))?;
        let held = self.task.state.held.entry(id).or_default();
        held.insert(key, due, size);
        let over = |held: &HeldKeys| {
            suppression.max_records.is_some_and(|n| held.len() > n)
                || suppression.max_bytes.is_some_and(|n| held.bytes() > n)
        };
        if over(held) && !suppression.emit_early_when_full {
            return Err(Self::process_failure(
                node,
                "suppress",
                "the buffer is full (maxRecords / maxBytes) and its bufferFullStrategy is \
                 shutdownWhenFull",
            ));
        }
        // emitEarlyWhenFull: the first due go now, whatever the time.
        while over(self.task.state.held.entry(id).or_default()) {
            self.release(id, node, suppression, i64::MAX, 1)?;
        }
        self.release(id, node, suppression, self.stream_time(), usize::MAX)
    }

    /// Builds a suppress node's index from its buffer store, once per run.
    fn load_held(&mut self, id: NodeId, node: &OpNode, s: &Suppression) -> Result<(), Failure> {
        let held = self.task.state.held.entry(id).or_default();
        let store = s.store;
        let mut held = std::mem::take(held);
        let loaded = self.in_store(node, store, |store| held.load(store));
        self.task.state.held.insert(id, held);
        loaded
    }

    /// Lets go up to `most` held updates due at or before `now`, first due first.
    fn release(
        &mut self,
        id: NodeId,
        node: &OpNode,
        suppression: &Suppression,
        now: i64,
        most: usize,
    ) -> Result<(), Failure> {
        let mut released = 0;
        while released < most {
            let held = self.task.state.held.entry(id).or_default();
            let Some((due, key)) = held.first().cloned() else {
                break;
            };
            if due > now {
                break;
            }
            held.remove(&key);
            let entry = self.in_store(node, suppression.store, |s| {
                let entry = s.get(&key);
                s.put(key.clone(), None);
                entry
            })?;
            released += 1;
            let Some(held) = entry.as_ref().and_then(Held::decode) else {
                continue;
            };
            let rec = Rec {
                key: Datum::Raw(key),
                value: Datum::from_bytes(held.value),
                timestamp: held.time,
                headers: Vec::new(),
            };
            self.forward(node, rec)?;
        }
        Ok(())
    }

    /// Lets go what every suppress node of this task has due at the current stream time.
    fn release_due(&mut self) -> Result<(), Failure> {
        let topology = self.topology;
        let now = self.stream_time();
        for (id, suppression) in topology.suppressions() {
            if task_stores::with_store(suppression.store, |_| ()).is_err() {
                continue;
            }
            let node = &topology.nodes[id];
            self.load_held(id, node, suppression)?;
            self.release(id, node, suppression, now, usize::MAX)?;
        }
        Ok(())
    }
}

impl<'py> BatchProcessor<'_, 'py> {
    /// Keeps a record as its key's latest value (a null value deletes the key); without
    /// caching the update goes downstream at once.
    fn materialize(&mut self, node: &OpNode, store: StoreId, rec: Rec<'py>) -> Result<(), Failure> {
        let slot = &self.topology.stores[store];
        let consume = |e| Self::consume_failure(node, e);
        let Some(key) = rec
            .key
            .to_bytes(&node.key_type, &slot.key_type)
            .map_err(consume)?
        else {
            return Ok(());
        };
        let value = rec
            .value
            .to_bytes(&node.value_type, &slot.value_type)
            .map_err(consume)?;
        let entry = value.as_ref().map(|v| timestamped(rec.timestamp, v));
        self.store_put(node, store, key.clone(), entry)?;
        if slot.spec.caching {
            return Ok(());
        }
        self.forward_update(node, Datum::Raw(key), value, rec.timestamp, &rec.headers)
    }

    /// Joins a stream record with the table's value for its key; records with a null key or
    /// value are dropped, and so are records with no table value unless the join is a left
    /// join, as in Kafka Streams.
    fn table_join(
        &mut self,
        node: &OpNode,
        join: &TableJoin,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let py = self.py;
        let slot = &self.topology.stores[join.store];
        let consume = |e| Self::consume_failure(node, e);
        if rec.value.is_null() {
            return Ok(());
        }
        let Some(key) = rec
            .key
            .to_bytes(&node.key_type, &slot.key_type)
            .map_err(consume)?
        else {
            return Ok(());
        };
        let entry = self.in_store(node, join.store, |s| s.get(&key))?;
        let table_value = match entry.as_ref().and_then(split_timestamped) {
            Some((_, value)) => bytes_to_py(py, Some(&value), &slot.value_type).map_err(consume)?,
            None if join.left => py.None().into_bound(py),
            None => return Ok(()),
        };
        let [key, value] = self.key_value(node, &mut rec)?;
        rec.value = Datum::Py(self.join_values(node, join.joiner, [key, value, table_value])?);
        self.forward(node, rec)
    }
}

impl<'py> BatchProcessor<'_, 'py> {
    /// Session windows, as Kafka Streams merges them: the key's sessions within `gap` of the
    /// record become one session with it, their aggregates combined (count: summed; reduce:
    /// reduced in order; aggregate: merged with `merger`, then the record aggregated). The
    /// merged sessions are deleted (a tombstone goes downstream for each), and a record whose
    /// merged session ended before stream time minus grace is dropped as late.
    fn aggregate_session(
        &mut self,
        node: &OpNode,
        aggregation: &Aggregation,
        sessions: SessionWindows,
        key: Bytes,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let py = self.py;
        let slot = &self.topology.stores[aggregation.store];
        let time = rec.timestamp;
        let lower = keys::session_key(&key, i64::MIN, time.saturating_sub(sessions.gap));
        let upper = keys::session_key(&key, i64::MAX, i64::MAX);
        let found = self.in_store(node, aggregation.store, |s| s.range(&lower, &upper))?;
        let mut merged = Vec::new();
        let (mut start, mut end, mut latest) = (time, time, time);
        for (stored, entry) in found {
            let Some((_, session_start, session_end)) = keys::parse_session_key(&stored) else {
                continue;
            };
            if session_start > time.saturating_add(sessions.gap) {
                continue;
            }
            let Some((entry_time, value)) = split_timestamped(&entry) else {
                continue;
            };
            start = start.min(session_start);
            end = end.max(session_end);
            latest = latest.max(entry_time);
            merged.push((stored, session_start, session_end, value));
        }
        if end < self.stream_time() - sessions.grace {
            self.late_records += 1;
            return Ok(());
        }
        let decode = |value: &Bytes| {
            bytes_to_py(py, Some(value), &slot.value_type).map_err(|e| {
                Self::process_failure(node, "state store", format!("stored value: {e}"))
            })
        };
        let encode = |obj: Bound<'py, PyAny>, function: FnId| {
            let name = &self.topology.functions[function].name;
            py_to_bytes(&obj, &slot.value_type)
                .map(|b| b.map(Bytes::from))
                .map_err(|e| Self::process_failure(node, name, e.to_string()))
        };
        let value: Option<Bytes> = match &aggregation.kind {
            AggregationKind::Count => {
                let earlier: i64 = merged
                    .iter()
                    .filter_map(|(_, _, _, v)| v.as_ref().try_into().ok())
                    .map(i64::from_be_bytes)
                    .sum();
                Some(Bytes::copy_from_slice(&(earlier + 1).to_be_bytes()))
            }
            AggregationKind::Reduce { reducer } => {
                let mut reduced: Option<Bound<'py, PyAny>> = None;
                for (_, _, _, value) in &merged {
                    let value = decode(value)?;
                    reduced = Some(match reduced {
                        None => value,
                        Some(so_far) => self.call(*reducer, &[so_far, value], &node.name)?,
                    });
                }
                let value = rec
                    .value
                    .as_py(py, &node.value_type)
                    .map_err(|e| Self::consume_failure(node, e))?;
                match reduced {
                    None => rec
                        .value
                        .to_bytes(&node.value_type, &slot.value_type)
                        .map_err(|e| Self::consume_failure(node, e))?,
                    Some(so_far) => {
                        let result = self.call(*reducer, &[so_far, value], &node.name)?;
                        encode(result, *reducer)?
                    }
                }
            }
            AggregationKind::Aggregate {
                initializer,
                aggregator,
                merger,
            } => {
                let mut aggregate = self.call(*initializer, &[], &node.name)?;
                for (_, _, _, value) in &merged {
                    let merger = merger.expect("validated: session aggregations have a merger");
                    let [key, _] = self.key_value(node, &mut rec)?;
                    aggregate = self.call(merger, &[key, aggregate, decode(value)?], &node.name)?;
                }
                let [key, value] = self.key_value(node, &mut rec)?;
                let result = self.call(*aggregator, &[key, value, aggregate], &node.name)?;
                encode(result, *aggregator)?
            }
        };
        for (stored, session_start, session_end, _) in merged {
            self.store_put(node, aggregation.store, stored, None)?;
            if !slot.spec.caching {
                let windowed =
                    self.windowed_key(node, &slot.key_type, &key, session_start, session_end)?;
                self.forward_update(node, windowed, None, latest, &rec.headers)?;
            }
        }
        let stored = keys::session_key(&key, start, end);
        let entry = value.as_ref().map(|v| timestamped(latest, v));
        self.store_put(node, aggregation.store, stored, entry)?;
        if !slot.spec.caching {
            let windowed = self.windowed_key(node, &slot.key_type, &key, start, end)?;
            self.forward_update(node, windowed, value, latest, &rec.headers)?;
        }
        Ok(())
    }
}

impl<'py> BatchProcessor<'_, 'py> {
    /// Joins a stream record with the global table's value for the key its mapper picks;
    /// records with a null value are dropped, and so are those with no global value unless the
    /// join is a left join.
    fn global_join(
        &mut self,
        node: &OpNode,
        join: &GlobalJoin,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let py = self.py;
        if rec.value.is_null() {
            return Ok(());
        }
        let global = &self.topology.globals[join.global];
        let [key, value] = self.key_value(node, &mut rec)?;
        let lookup = self.call(join.mapper, &[key.clone(), value.clone()], &node.name)?;
        let mapper = &self.topology.functions[join.mapper].name;
        let lookup = py_to_bytes(&lookup, &global.key_type)
            .map_err(|e| Self::process_failure(node, mapper, e.to_string()))?;
        let found = lookup.and_then(|k| global.get(&k));
        let global_value = match found {
            Some(bytes) => bytes_to_py(py, Some(&bytes), &global.value_type)
                .map_err(|e| Self::consume_failure(node, e))?,
            None if join.left => py.None().into_bound(py),
            None => return Ok(()),
        };
        rec.value = Datum::Py(self.join_values(node, join.joiner, [key, value, global_value])?);
        self.forward(node, rec)
    }
}

impl<'py> BatchProcessor<'_, 'py> {
    /// A record of one side of a stream-stream join: kept for the other side's later records,
    /// and joined with the other side's records of its key at most the time difference away
    /// (the result's time is the later of the two). Records with a null key or value are
    /// dropped, and so are records older than stream time minus the time difference and
    /// grace, as in Kafka Streams.
    fn stream_join(
        &mut self,
        node: &OpNode,
        side: &StreamJoinSide,
        mut rec: Rec<'py>,
    ) -> Result<(), Failure> {
        let py = self.py;
        let topology = self.topology;
        let (this_slot, other_slot) = (
            &topology.stores[side.this_store],
            &topology.stores[side.other_store],
        );
        let consume = |e| Self::consume_failure(node, e);
        if rec.value.is_null() {
            return Ok(());
        }
        let Some(key) = rec
            .key
            .to_bytes(&node.key_type, &this_slot.key_type)
            .map_err(consume)?
        else {
            return Ok(());
        };
        let time = rec.timestamp;
        if time
            .saturating_add(side.time_difference)
            .saturating_add(side.grace)
            < self.stream_time()
        {
            self.late_records += 1;
            return Ok(());
        }
        let Some(value) = rec
            .value
            .to_bytes(&node.value_type, &this_slot.value_type)
            .map_err(consume)?
        else {
            return Ok(());
        };
        // Records of one key and time are told apart by a sequence number of the task.
        self.task.state.join_sequence = self.task.state.join_sequence.wrapping_add(1);
        let stored = keys::window_key(&key, time, self.task.state.join_sequence);
        self.store_put(
            node,
            side.this_store,
            stored,
            Some(timestamped(time, &value)),
        )?;
        // The other side keeps keys in its own type.
        let Some(other_key) = rec
            .key
            .to_bytes(&node.key_type, &other_slot.key_type)
            .map_err(consume)?
        else {
            return Ok(());
        };
        let lower = keys::window_lower_bound(&other_key, time.saturating_sub(side.time_difference));
        let upper = keys::window_upper_bound(&other_key, time.saturating_add(side.time_difference));
        let matches = self.in_store(node, side.other_store, |s| s.range(&lower, &upper))?;
        for (_, entry) in matches {
            let Some((other_time, other_value)) = split_timestamped(&entry) else {
                continue;
            };
            let other =
                bytes_to_py(py, Some(&other_value), &other_slot.value_type).map_err(consume)?;
            let [key_py, this] = self.key_value(node, &mut rec)?;
            let (value1, value2) = if side.left {
                (this, other)
            } else {
                (other, this)
            };
            let joined = self.join_values(node, side.joiner, [key_py, value1, value2])?;
            let out = Rec {
                key: rec.key.clone(),
                value: Datum::Py(joined),
                timestamp: time.max(other_time),
                headers: rec.headers.clone(),
            };
            self.forward(node, out)?;
        }
        Ok(())
    }
}

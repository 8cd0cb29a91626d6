//! Running KSML test-runner suites: each test gets a fresh embedded log, its messages are
//! produced, the definition runs until idle, and each assertion's Python code runs with
//! `records` (a stream's records as `{key, value, timestamp, partition, offset}` dicts) and the
//! stores it names.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use bytes::Bytes;
use millrace_ksml::config::RunnerConfig;
use millrace_ksml::load::load_definition_file;
use millrace_ksml::suite::{Assertion, Messages, Produce, Suite, SuiteStream};
use millrace_log::{EmbeddedLog, EmbeddedLogConfig, Log, Record, murmur2_partition};
use millrace_python::convert::{bytes_to_py, py_to_bytes};
use millrace_python::pyo3::prelude::*;
use millrace_python::pyo3::types::{PyDict, PyList};
use millrace_python::{FunctionSpec, Namespace, python_error};
use millrace_types::codec;

use crate::runner::{RunOptions, run_then};
use crate::topology::Topology;

/// A message to produce: key and value bytes, timestamp.
type Message = (Option<Bytes>, Option<Bytes>, i64);

/// How one test went: None when every assertion held, otherwise why not.
pub struct TestOutcome {
    pub name: String,
    pub failure: Option<String>,
}

/// Runs every test of a suite in folders under `work_dir`.
pub fn run_suite(suite: &Suite, work_dir: &Path) -> Result<Vec<TestOutcome>, String> {
    let definitions = [load_definition_file(&suite.definition)?];
    let mut outcomes = Vec::new();
    for (index, test) in suite.tests.iter().enumerate() {
        let dir = work_dir.join(format!("test-{index}"));
        let failure = run_test(suite, &test.produce, &test.asserts, &definitions, &dir).err();
        outcomes.push(TestOutcome {
            name: test.name.clone(),
            failure,
        });
    }
    Ok(outcomes)
}

fn run_test(
    suite: &Suite,
    produce: &[Produce],
    asserts: &[Assertion],
    definitions: &[millrace_ksml::model::Definition],
    dir: &Path,
) -> Result<(), String> {
    let log = Arc::new(
        EmbeddedLog::open(&dir.join("data"), EmbeddedLogConfig::default())
            .map_err(|e| e.to_string())?,
    );
    for step in produce {
        let stream = suite
            .stream(&step.to)
            .expect("checked when the suite was read");
        let records = messages(stream, &step.messages, &suite.file)?;
        append(log.as_ref(), stream, records)?;
    }
    let mut options = RunOptions::new(true, Arc::new(AtomicBool::new(false)));
    options.state_dir = Some(dir.join("state"));
    let (_, result) = run_then(
        log.clone(),
        definitions,
        RunnerConfig::default(),
        options,
        |py, topology| {
            asserts
                .iter()
                .try_for_each(|a| check(py, topology, suite, log.as_ref(), a))
        },
    )
    .map_err(|e| format!("the definition stopped: {e}"))?;
    result
}

/// The records of a produce step, encoded as the stream's types.
fn messages(
    stream: &SuiteStream,
    messages: &Messages,
    file: &Path,
) -> Result<Vec<Message>, String> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    match messages {
        Messages::Listed(list) => list
            .iter()
            .map(|(key, value, timestamp)| {
                let encode = |value: &millrace_types::Value, ty| {
                    let value = value.clone().coerce(ty).map_err(|e| e.0)?;
                    codec::encode(&value, ty)
                        .map(|b| b.map(Bytes::from))
                        .map_err(|e| e.to_string())
                };
                Ok((
                    encode(key, &stream.key_type)?,
                    encode(value, &stream.value_type)?,
                    timestamp.unwrap_or(now),
                ))
            })
            .collect(),
        Messages::Generated {
            global_code,
            code,
            expression,
            count,
        } => Python::attach(|py| {
            let failed = |e: millrace_python::PythonError| e.to_string();
            let namespace =
                Namespace::new(py, "suite", &file.display().to_string()).map_err(failed)?;
            if let Some(global) = global_code {
                namespace
                    .run_global_code(py, "generator", global)
                    .map_err(failed)?;
            }
            let generator = namespace
                .define(
                    py,
                    &FunctionSpec {
                        name: "generator".into(),
                        logger_kind: "generator",
                        parameters: Vec::new(),
                        code: code.clone(),
                        expression: expression.clone(),
                        default_expression: None,
                        stores: Vec::new(),
                    },
                )
                .map_err(failed)?;
            (0..*count)
                .map(|_| {
                    let message = generator.call(py, &[]).map_err(failed)?;
                    let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = message
                        .extract()
                        .map_err(|_| "a test generator returns a (key, value) tuple".to_string())?;
                    let encode = |obj: &Bound<'_, PyAny>, ty| {
                        py_to_bytes(obj, ty)
                            .map(|b| b.map(Bytes::from))
                            .map_err(|e| e.to_string())
                    };
                    Ok((
                        encode(&key, &stream.key_type)?,
                        encode(&value, &stream.value_type)?,
                        now,
                    ))
                })
                .collect()
        }),
    }
}

/// Appends records to a stream's topic (created with one partition when missing), keyed
/// records to the partition Kafka's partitioner picks.
fn append(log: &dyn Log, stream: &SuiteStream, records: Vec<Message>) -> Result<(), String> {
    let partitions = log.ensure_topic(&stream.topic).map_err(|e| e.to_string())?;
    for (key, value, timestamp) in records {
        let partition = key.as_ref().map_or(0, |k| murmur2_partition(k, partitions));
        let record = Record {
            key,
            value,
            timestamp,
            headers: Vec::new(),
        };
        log.append(&stream.topic, partition, vec![record])
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs one assertion's code; an exception (a failed `assert`) is the test's failure.
fn check(
    py: Python<'_>,
    topology: &Topology,
    suite: &Suite,
    log: &dyn Log,
    assertion: &Assertion,
) -> Result<(), String> {
    let globals = PyDict::new(py);
    let setup = || -> PyResult<()> {
        globals.set_item("__builtins__", py.import("builtins")?)?;
        if let Some(on) = &assertion.on {
            let stream = suite.stream(on).expect("checked when the suite was read");
            globals.set_item("records", records(py, log, stream)?)?;
        }
        Ok(())
    };
    setup().map_err(|e| python_error(py, e, "setting up an assertion").to_string())?;
    for name in &assertion.stores {
        let handle = topology
            .store_handle(name)
            .ok_or_else(|| format!("the definition has no keyValue store '{name}'"))?;
        let handle = Bound::new(py, handle).map_err(|e| e.to_string())?;
        globals.set_item(name, handle).map_err(|e| e.to_string())?;
    }
    // Blank lines first, so that tracebacks give the code's lines in the suite file.
    let padding = "\n".repeat(assertion.code.line.unwrap_or(1).saturating_sub(1));
    let source = format!("{padding}{}", assertion.code.text);
    let file = suite.file.display().to_string();
    let run = || -> PyResult<()> {
        let builtins = py.import("builtins")?;
        let code = builtins.getattr("compile")?.call1((source, file, "exec"))?;
        builtins.getattr("exec")?.call1((code, &globals))?;
        Ok(())
    };
    run().map_err(|e| {
        let error = python_error(py, e, "assertion");
        format!("{}\n{}", error.exception, error.traceback)
    })
}

/// A stream's records as Python dicts `{key, value, timestamp, partition, offset}`.
fn records<'py>(
    py: Python<'py>,
    log: &dyn Log,
    stream: &SuiteStream,
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    let partitions = log
        .partition_count(&stream.topic)
        .ok()
        .flatten()
        .unwrap_or(0);
    for partition in 0..partitions {
        let stored = log
            .read(&stream.topic, partition, 0, usize::MAX)
            .map_err(|e| {
                millrace_python::pyo3::exceptions::PyRuntimeError::new_err(e.to_string())
            })?;
        for r in stored.records {
            let decode = |bytes: &Option<Bytes>, ty| {
                bytes_to_py(py, bytes.as_deref(), ty).map_err(|e| {
                    millrace_python::pyo3::exceptions::PyValueError::new_err(e.to_string())
                })
            };
            let dict = PyDict::new(py);
            dict.set_item("key", decode(&r.record.key, &stream.key_type)?)?;
            dict.set_item("value", decode(&r.record.value, &stream.value_type)?)?;
            dict.set_item("timestamp", r.record.timestamp)?;
            dict.set_item("partition", r.partition)?;
            dict.set_item("offset", r.offset)?;
            list.append(dict)?;
        }
    }
    Ok(list)
}

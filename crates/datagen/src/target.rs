//! Where a job's records go: a topic of a [`Log`] (the embedded log, or Kafka through the
//! Kafka adapter), a file of JSON lines, or standard output.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use millrace_log::{Log, Record, murmur2_partition};
use serde_json::Value;

use crate::fields::{ConfigError, Fields};

/// Key-less records go to one partition in runs of this many, as a batching producer sends
/// them; it is also the most records held before an append.
const BATCH: usize = 1000;

/// A target as a request or the command line names it.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A topic of the server's log (`{"type": "log", "topic": T, "partitions"?: N}`); created
    /// with `partitions` (default: the log's default) when missing.
    Log {
        topic: String,
        partitions: Option<u32>,
        key_fields: Vec<String>,
    },
    /// A topic of a Kafka cluster (`{"type": "kafka", "endpoint", "topic", "topic_key"?}`).
    Kafka {
        endpoint: String,
        topic: String,
        key_fields: Vec<String>,
    },
    /// A file of JSON lines, replaced if it exists.
    File {
        path: PathBuf,
    },
    Stdout,
}

impl Target {
    /// Reads a target object.
    pub fn parse(value: &Value, path: &str) -> Result<Target, ConfigError> {
        let fields = Fields::of(value, path)?;
        let key_fields = || -> Result<Vec<String>, ConfigError> {
            let Some(keys) = fields.get("topic_key") else {
                return Ok(Vec::new());
            };
            keys.as_array()
                .and_then(|keys| keys.iter().map(|k| k.as_str().map(String::from)).collect())
                .ok_or_else(|| fields.error("topic_key", "expected an array of field names"))
        };
        Ok(match fields.string("type")?.to_ascii_lowercase().as_str() {
            "log" => Target::Log {
                topic: fields.string("topic")?.to_string(),
                partitions: fields
                    .optional_count("partitions")?
                    .map(|p| u32::try_from(p).unwrap_or(u32::MAX)),
                key_fields: key_fields()?,
            },
            "kafka" => Target::Kafka {
                endpoint: fields.string("endpoint")?.to_string(),
                topic: fields.string("topic")?.to_string(),
                key_fields: key_fields()?,
            },
            "file" => Target::File {
                path: PathBuf::from(fields.string("path")?),
            },
            "stdout" => Target::Stdout,
            other => {
                return Err(fields.error(
                    "type",
                    format!("unknown target type '{other}' (log, kafka, file or stdout)"),
                ));
            }
        })
    }
}

/// Takes a job's records.
pub trait Sink: Send {
    /// Takes one record (one JSON object, no newline).
    fn write(&mut self, record: &[u8]) -> Result<(), String>;
    /// Makes everything taken so far visible to readers.
    fn flush(&mut self) -> Result<(), String>;
}

/// Appends records to a topic of a log.
pub struct LogSink {
    log: Arc<dyn Log>,
    topic: String,
    key_fields: Vec<String>,
    pending: Vec<Vec<Record>>,
    /// Where key-less records go now.
    sticky: usize,
}

impl LogSink {
    /// A sink for `topic`, creating it with `partitions` (or the log's default) when missing.
    pub fn open(
        log: Arc<dyn Log>,
        topic: &str,
        partitions: Option<u32>,
        key_fields: Vec<String>,
    ) -> Result<LogSink, String> {
        let count = match partitions {
            Some(partitions) => {
                log.create_topic(topic, partitions)
                    .map_err(|e| format!("topic {topic}: {e}"))?;
                log.partition_count(topic)
                    .map_err(|e| format!("topic {topic}: {e}"))?
                    .unwrap_or(partitions)
            }
            None => log
                .ensure_topic(topic)
                .map_err(|e| format!("topic {topic}: {e}"))?,
        };
        Ok(LogSink {
            log,
            topic: topic.to_string(),
            key_fields,
            pending: (0..count.max(1)).map(|_| Vec::new()).collect(),
            sticky: 0,
        })
    }

    /// The key of a record: its values of the key fields, concatenated (learn-druid's
    /// `topic_key`); None without key fields.
    fn key_of(&self, record: &[u8]) -> Option<Bytes> {
        if self.key_fields.is_empty() {
            return None;
        }
        let parsed: Value = serde_json::from_slice(record).unwrap_or(Value::Null);
        let mut key = String::new();
        for field in &self.key_fields {
            match parsed.get(field) {
                Some(Value::String(text)) => key.push_str(text),
                Some(Value::Null) | None => {}
                Some(other) => key.push_str(&other.to_string()),
            }
        }
        Some(Bytes::from(key))
    }

    /// Appends a partition's pending records; key-less records move on to the next
    /// partition once the one they stick to was appended (as Kafka's sticky partitioner
    /// moves on with each batch sent).
    fn append(&mut self, partition: usize) -> Result<(), String> {
        let records = std::mem::take(&mut self.pending[partition]);
        if records.is_empty() {
            return Ok(());
        }
        if partition == self.sticky {
            self.sticky = (self.sticky + 1) % self.pending.len();
        }
        self.log
            .append(&self.topic, partition as u32, records)
            .map(|_| ())
            .map_err(|e| format!("appending to {}: {e}", self.topic))
    }
}

impl Sink for LogSink {
    fn write(&mut self, record: &[u8]) -> Result<(), String> {
        let key = self.key_of(record);
        let partition = match &key {
            Some(key) => murmur2_partition(key, self.pending.len() as u32) as usize,
            None => self.sticky,
        };
        self.pending[partition].push(Record {
            key,
            value: Some(Bytes::copy_from_slice(record)),
            timestamp: now_ms(),
            headers: Vec::new(),
        });
        if self.pending[partition].len() >= BATCH {
            self.append(partition)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        for partition in 0..self.pending.len() {
            self.append(partition)?;
        }
        Ok(())
    }
}

/// Writes JSON lines to a file.
pub struct FileSink(BufWriter<File>, PathBuf);

impl FileSink {
    /// Creates (or empties) the file.
    pub fn create(path: PathBuf) -> Result<FileSink, String> {
        let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(FileSink(BufWriter::with_capacity(1 << 16, file), path))
    }
}

impl Sink for FileSink {
    fn write(&mut self, record: &[u8]) -> Result<(), String> {
        self.0
            .write_all(record)
            .and_then(|()| self.0.write_all(b"\n"))
            .map_err(|e| format!("{}: {e}", self.1.display()))
    }

    fn flush(&mut self) -> Result<(), String> {
        self.0
            .flush()
            .map_err(|e| format!("{}: {e}", self.1.display()))
    }
}

/// Writes JSON lines to standard output.
pub struct StdoutSink(BufWriter<std::io::Stdout>);

impl Default for StdoutSink {
    fn default() -> Self {
        StdoutSink(BufWriter::with_capacity(1 << 16, std::io::stdout()))
    }
}

impl Sink for StdoutSink {
    fn write(&mut self, record: &[u8]) -> Result<(), String> {
        self.0
            .write_all(record)
            .and_then(|()| self.0.write_all(b"\n"))
            .map_err(|e| format!("standard output: {e}"))
    }

    fn flush(&mut self) -> Result<(), String> {
        self.0.flush().map_err(|e| format!("standard output: {e}"))
    }
}

/// The wall clock, epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

//! `millrace topic`: list, create, delete, produce (stdin lines) and consume (JSON lines).

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clap::Subcommand;
use millrace_kafka::{KafkaLog, KafkaSettings};
use millrace_log::{KeyPartitioner, Log, Record, TopicConfig};
use millrace_types::codec::{display_json, encode};
use millrace_types::{DataType, Value};

use crate::DataDir;
use crate::http::{Client, encode_segment};

/// Where the topics are: the embedded log of a data directory, a server (`--url`), which
/// owns its data directory while it runs, or a Kafka cluster (`--bootstrap-servers`).
#[derive(clap::Args)]
pub struct Target {
    #[command(flatten)]
    data: DataDir,
    /// A running server, e.g. http://127.0.0.1:8888 (instead of --data-dir);
    /// http://USER:PASSWORD@HOST:PORT signs in (or MILLRACE_PASSWORD holds the password).
    #[arg(long, env = "MILLRACE_URL", conflicts_with = "bootstrap_servers")]
    url: Option<String>,
    /// A Kafka cluster, HOST:PORT[,HOST:PORT...] (instead of --data-dir).
    #[arg(long)]
    bootstrap_servers: Option<String>,
}

impl Target {
    /// The server named with `--url`, if any.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// The log commands without `--url` work on: the Kafka cluster, or the data directory's.
    pub fn open(&self) -> Result<Arc<dyn Log>, String> {
        let Some(servers) = &self.bootstrap_servers else {
            return self.data.open();
        };
        KafkaLog::open(KafkaSettings::new(vec![(
            "bootstrap.servers".into(),
            servers.clone(),
        )]))
    }
}

#[derive(Subcommand)]
pub enum TopicCommand {
    /// List topics and their partition counts.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Create a topic.
    Create {
        #[command(flatten)]
        target: Target,
        /// The topic.
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// A topic config NAME=VALUE, repeatable: cleanup.policy (delete, compact or
        /// compact,delete), retention.ms (-1: forever) and delete.retention.ms.
        #[arg(long = "config", value_name = "NAME=VALUE")]
        configs: Vec<String>,
    },
    /// Delete a topic, with its records and the offsets groups committed for it.
    Delete {
        #[command(flatten)]
        target: Target,
        /// The topic.
        name: String,
    },
    /// Send one record per stdin line (key-less records spread over partitions like Kafka's
    /// producer does).
    Produce {
        #[command(flatten)]
        target: Target,
        /// The topic.
        name: String,
        /// Split each line at the first SEP into key and value.
        #[arg(long)]
        key_separator: Option<String>,
        #[command(flatten)]
        types: RecordTypes,
    },
    /// Print records as JSON lines {"topic","partition","offset","timestamp","key","value"}.
    Consume {
        #[command(flatten)]
        target: Target,
        /// The topic.
        name: String,
        /// Start at the oldest record and exit at the end of the data (otherwise follow new
        /// records until interrupted).
        #[arg(long)]
        from_beginning: bool,
        /// Output format (only jsonl).
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
        format: String,
        #[command(flatten)]
        types: RecordTypes,
    },
}

/// KSML types of record keys and values: how produce encodes and consume decodes them.
/// Without one, keys and values are UTF-8 text (consume shows text that parses as JSON as
/// JSON).
#[derive(clap::Args)]
pub struct RecordTypes {
    /// KSML type of keys, e.g. long or json.
    #[arg(long)]
    key_type: Option<String>,
    /// KSML type of values, e.g. long or json.
    #[arg(long)]
    value_type: Option<String>,
}

impl RecordTypes {
    fn parse(&self) -> Result<(Option<DataType>, Option<DataType>), String> {
        Ok((
            parse_type(self.key_type.as_deref())?,
            parse_type(self.value_type.as_deref())?,
        ))
    }
}

fn parse_type(text: Option<&str>) -> Result<Option<DataType>, String> {
    text.map(|t| DataType::parse(t).map_err(|e| e.to_string()))
        .transpose()
}

/// Runs a topic command.
/// Topic configs given as `NAME=VALUE`.
fn topic_config(configs: &[String]) -> Result<TopicConfig, String> {
    let pairs = configs
        .iter()
        .map(|c| {
            c.split_once('=')
                .ok_or_else(|| format!("--config takes NAME=VALUE, not '{c}'"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    TopicConfig::from_properties(pairs)
}

pub fn run(command: TopicCommand) -> Result<(), String> {
    match command {
        TopicCommand::List { target } => {
            let topics: Vec<(String, u32)> = match &target.url {
                Some(url) => remote::list(&Client::new(url)?)?,
                None => target
                    .open()?
                    .topics()
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|t| (t.name, t.partitions))
                    .collect(),
            };
            for (name, partitions) in topics {
                println!("{name}\t{partitions} partition(s)");
            }
            Ok(())
        }
        TopicCommand::Create {
            target,
            name,
            partitions,
            configs,
        } => {
            let config = topic_config(&configs)?;
            let created = match &target.url {
                Some(url) => remote::create(&Client::new(url)?, &name, partitions, &config)?,
                None => target
                    .open()?
                    .create_topic_with_config(&name, partitions, &config)
                    .map_err(|e| e.to_string())?,
            };
            if created {
                eprintln!("created topic '{name}' with {partitions} partition(s)");
                Ok(())
            } else {
                Err(format!("topic '{name}' already exists"))
            }
        }
        TopicCommand::Delete { target, name } => {
            match &target.url {
                Some(url) => remote::delete(&Client::new(url)?, &name)?,
                None => {
                    let deleted = target
                        .open()?
                        .delete_topic(&name)
                        .map_err(|e| e.to_string())?;
                    if !deleted {
                        return Err(format!("topic '{name}' does not exist"));
                    }
                }
            }
            eprintln!("deleted topic '{name}'");
            Ok(())
        }
        TopicCommand::Produce {
            target,
            name,
            key_separator,
            types,
        } => {
            let (key_type, value_type) = types.parse()?;
            let (sent, rejected) = match &target.url {
                Some(url) => {
                    no_types_with_url(&key_type, &value_type)?;
                    remote::produce(&Client::new(url)?, &name, key_separator.as_deref())?
                }
                None => produce(
                    target.open()?.as_ref(),
                    &name,
                    key_separator.as_deref(),
                    key_type.as_ref(),
                    value_type.as_ref(),
                )?,
            };
            report_produced(&name, sent, &rejected)
        }
        TopicCommand::Consume {
            target,
            name,
            from_beginning,
            format: _,
            types,
        } => {
            let (key_type, value_type) = types.parse()?;
            match &target.url {
                Some(url) => {
                    no_types_with_url(&key_type, &value_type)?;
                    remote::consume(&Client::new(url)?, &name, from_beginning)
                }
                None => consume(
                    target.open()?.as_ref(),
                    &name,
                    from_beginning,
                    key_type.as_ref(),
                    value_type.as_ref(),
                ),
            }
        }
    }
}

/// Refuses --key-type and --value-type with --url: the server takes and shows records as
/// text and JSON.
fn no_types_with_url(key: &Option<DataType>, value: &Option<DataType>) -> Result<(), String> {
    if key.is_some() || value.is_some() {
        return Err("--key-type and --value-type work on a data directory, not with --url".into());
    }
    Ok(())
}

/// The topic commands against a server.
pub mod remote {
    use std::io::Write;
    use std::time::Duration;

    use serde_json::{Value, json};

    use millrace_log::TopicConfig;

    use super::{Client, Rejected, encode_segment, for_each_line};

    /// Lines sent per request when producing.
    const LINES_PER_REQUEST: usize = 50_000;

    pub fn list(client: &Client) -> Result<Vec<(String, u32)>, String> {
        let names: Vec<String> = serde_json::from_value(client.get_json("/topics")?)
            .map_err(|e| format!("unexpected answer: {e}"))?;
        let mut topics = Vec::new();
        for name in names {
            let described = client.get_json(&format!("/topics/{}", encode_segment(&name)))?;
            let partitions = described["partitions"].as_array().map_or(0, Vec::len) as u32;
            topics.push((name, partitions));
        }
        Ok(topics)
    }

    pub fn create(
        client: &Client,
        name: &str,
        partitions: u32,
        config: &TopicConfig,
    ) -> Result<bool, String> {
        let configs: serde_json::Map<String, Value> = config
            .to_properties()
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect();
        let body = json!({"name": name, "partitions": partitions, "configs": configs}).to_string();
        let answer: Value =
            serde_json::from_str(&client.post("/topics", "application/json", body.as_bytes())?)
                .map_err(|e| format!("unexpected answer: {e}"))?;
        Ok(answer["created"].as_bool().unwrap_or(false))
    }

    /// Deletes a topic; the server answers 404 when there is none.
    pub fn delete(client: &Client, name: &str) -> Result<(), String> {
        client.delete(&format!("/topics/{}", encode_segment(name)))?;
        Ok(())
    }

    /// Streams stdin lines to the server in large text batches.
    pub fn produce(
        client: &Client,
        topic: &str,
        separator: Option<&str>,
    ) -> Result<(u64, Vec<Rejected>), String> {
        let mut path = format!("/topics/{}", encode_segment(topic));
        if let Some(separator) = separator {
            path.push_str(&format!("?keySeparator={}", encode_segment(separator)));
        }
        let mut batch = Vec::with_capacity(8 << 20);
        let (mut lines, mut sent) = (0usize, 0u64);
        let mut send = |batch: &mut Vec<u8>, lines: &mut usize| -> Result<(), String> {
            if *lines > 0 {
                client.post(&path, "text/plain", batch)?;
                sent += *lines as u64;
            }
            batch.clear();
            *lines = 0;
            Ok(())
        };
        let rejected = for_each_line(|line| {
            if line.is_empty() {
                return Ok(None);
            }
            batch.extend_from_slice(line.as_bytes());
            batch.push(b'\n');
            lines += 1;
            if lines >= LINES_PER_REQUEST {
                send(&mut batch, &mut lines)?;
            }
            Ok(None)
        })?;
        send(&mut batch, &mut lines)?;
        Ok((sent, rejected))
    }

    /// Prints records as JSON lines; from the start to the end, or following new records.
    pub fn consume(client: &Client, topic: &str, from_beginning: bool) -> Result<(), String> {
        let topic_path = format!("/topics/{}", encode_segment(topic));
        let described = client.get_json(&topic_path)?;
        let mut positions: Vec<u64> = described["partitions"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let key = if from_beginning {
                            "earliest_offset"
                        } else {
                            "latest_offset"
                        };
                        p[key].as_u64().unwrap_or(0)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        loop {
            let mut read_any = false;
            for (p, position) in positions.iter_mut().enumerate() {
                let records = client.get_json(&format!(
                    "{topic_path}/partitions/{p}/messages?offset={position}&count=10000"
                ))?;
                for record in records.as_array().into_iter().flatten() {
                    read_any = true;
                    *position = record["offset"].as_u64().unwrap_or(*position) + 1;
                    let line = json!({"topic": topic, "partition": p, "offset": record["offset"],
                        "timestamp": record["timestamp"], "key": record["key"], "value": record["value"]});
                    writeln!(out, "{line}").map_err(|e| e.to_string())?;
                }
            }
            if read_any {
                continue;
            }
            out.flush().map_err(|e| e.to_string())?;
            if from_beginning {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Encodes text from stdin: as UTF-8, or parsed (JSON, else the text itself) for a type.
fn encode_text(text: &str, ty: Option<&DataType>, what: &str) -> Result<Option<Bytes>, String> {
    let Some(ty) = ty else {
        return Ok(Some(Bytes::copy_from_slice(text.as_bytes())));
    };
    let value = millrace_types::codec::decode(Some(text.as_bytes()), &DataType::Any)
        .unwrap_or_else(|_| Value::String(text.to_string()));
    let value = match (ty, value) {
        (DataType::String, _) => Value::String(text.to_string()),
        (_, v) => v,
    };
    encode(&value, ty)
        .map(|b| b.map(Bytes::from))
        .map_err(|e| format!("{what}: {e}"))
}

/// A stdin line that was not produced: its number (from 1) and why.
pub struct Rejected {
    line: usize,
    why: String,
}

/// Calls `produce` with each stdin line's text, without the line end. A line that is not
/// UTF-8, or that `produce` turns down with a reason, is set aside with its number and the
/// others go on; an `Err` from `produce` (the topic cannot be written) ends it.
fn for_each_line(
    mut produce: impl FnMut(&str) -> Result<Option<String>, String>,
) -> Result<Vec<Rejected>, String> {
    let mut stdin = std::io::stdin().lock();
    let mut buffer = Vec::new();
    let mut rejected = Vec::new();
    for line in 1.. {
        buffer.clear();
        if stdin
            .read_until(b'\n', &mut buffer)
            .map_err(|e| format!("reading stdin: {e}"))?
            == 0
        {
            break;
        }
        let text = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let why = match std::str::from_utf8(text) {
            Ok(text) => produce(text)?,
            Err(e) => Some(format!(
                "not UTF-8 (invalid byte at column {})",
                e.valid_up_to() + 1
            )),
        };
        if let Some(why) = why {
            rejected.push(Rejected { line, why });
        }
    }
    Ok(rejected)
}

/// Reports what a produce sent and the lines it set aside; an error when it set any aside.
fn report_produced(topic: &str, sent: u64, rejected: &[Rejected]) -> Result<(), String> {
    eprintln!("produced {sent} record(s) to '{topic}'");
    for line in rejected {
        eprintln!("line {}: {}", line.line, line.why);
    }
    match rejected.len() {
        0 => Ok(()),
        n => Err(format!("{n} line(s) were not produced")),
    }
}

fn produce(
    log: &dyn Log,
    topic: &str,
    separator: Option<&str>,
    key_type: Option<&DataType>,
    value_type: Option<&DataType>,
) -> Result<(u64, Vec<Rejected>), String> {
    let partitions = log.ensure_topic(topic).map_err(|e| e.to_string())?;
    let mut partitioner = KeyPartitioner::default();
    let mut pending: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    let mut buffered = 0usize;
    let mut sent = 0u64;
    let flush = |pending: &mut BTreeMap<u32, Vec<Record>>| -> Result<(), String> {
        for (partition, records) in std::mem::take(pending) {
            log.append(topic, partition, records)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    let rejected = for_each_line(|line| {
        let (key, value) = match separator.and_then(|sep| line.split_once(sep)) {
            Some((k, v)) => match encode_text(k, key_type, "key") {
                Ok(key) => (Some(key.unwrap_or_default()), v),
                Err(why) => return Ok(Some(why)),
            },
            None => (None, line),
        };
        let value = match encode_text(value, value_type, "value") {
            Ok(value) => value,
            Err(why) => return Ok(Some(why)),
        };
        let partition = partitioner.partition(
            key.as_deref(),
            value.as_ref().map_or(0, Bytes::len),
            partitions,
        );
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        pending.entry(partition).or_default().push(Record {
            key,
            value,
            timestamp,
            headers: Vec::new(),
        });
        buffered += 1;
        sent += 1;
        if buffered >= 1000 {
            flush(&mut pending)?;
            buffered = 0;
        }
        Ok(None)
    })?;
    flush(&mut pending)?;
    Ok((sent, rejected))
}

fn consume(
    log: &dyn Log,
    topic: &str,
    from_beginning: bool,
    key_type: Option<&DataType>,
    value_type: Option<&DataType>,
) -> Result<(), String> {
    let partitions = log
        .partition_count(topic)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("unknown topic '{topic}'"))?;
    let mut positions = Vec::with_capacity(partitions as usize);
    // With --from-beginning, the end of the data: what the partitions held at the start.
    let mut ends = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let (start, end) = log.offset_range(topic, p).map_err(|e| e.to_string())?;
        positions.push(if from_beginning { start } else { end });
        ends.push(end);
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    loop {
        let generation = log.append_generation();
        let mut read_any = false;
        for (p, position) in positions.iter_mut().enumerate() {
            let fetched = log
                .read(topic, p as u32, *position, 1000)
                .map_err(|e| e.to_string())?;
            *position = fetched.next_offset;
            for stored in fetched.records {
                read_any = true;
                let show = |bytes: Option<&[u8]>, ty: Option<&DataType>| -> String {
                    display_json(bytes, ty).unwrap_or_else(|e| {
                        serde_json::to_string(&format!("<undecodable: {e}>")).unwrap_or_default()
                    })
                };
                writeln!(
                    out,
                    "{{\"topic\":{},\"partition\":{},\"offset\":{},\"timestamp\":{},\"key\":{},\"value\":{}}}",
                    serde_json::to_string(topic).unwrap_or_default(),
                    p,
                    stored.offset,
                    stored.record.timestamp,
                    show(stored.record.key.as_deref(), key_type),
                    show(stored.record.value.as_deref(), value_type),
                )
                .map_err(|e| e.to_string())?;
            }
        }
        if read_any {
            continue;
        }
        out.flush().map_err(|e| e.to_string())?;
        // Records may still be on their way from a Kafka cluster: the end is where the data
        // ended at the start.
        if from_beginning && positions.iter().zip(&ends).all(|(at, end)| at >= end) {
            return Ok(());
        }
        log.wait_for_append(generation, Duration::from_millis(500));
    }
}

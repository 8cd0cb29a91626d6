//! `millrace topic`: list, create, produce (stdin lines) and consume (JSON lines).

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clap::Subcommand;
use millrace_log::{KeyPartitioner, Log, Record};
use millrace_types::codec::{display_json, encode};
use millrace_types::{DataType, Value};

use crate::DataDir;

#[derive(Subcommand)]
pub enum TopicCommand {
    /// List topics and their partition counts.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Create a topic.
    Create {
        #[command(flatten)]
        data: DataDir,
        /// The topic.
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
    },
    /// Send one record per stdin line (key-less records spread over partitions like Kafka's
    /// producer does).
    Produce {
        #[command(flatten)]
        data: DataDir,
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
        data: DataDir,
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
pub fn run(command: TopicCommand) -> Result<(), String> {
    match command {
        TopicCommand::List { data } => {
            let log = data.open()?;
            for topic in log.topics().map_err(|e| e.to_string())? {
                println!("{}\t{} partition(s)", topic.name, topic.partitions);
            }
            Ok(())
        }
        TopicCommand::Create {
            data,
            name,
            partitions,
        } => {
            let log = data.open()?;
            if log
                .create_topic(&name, partitions)
                .map_err(|e| e.to_string())?
            {
                eprintln!("created topic '{name}' with {partitions} partition(s)");
                Ok(())
            } else {
                Err(format!("topic '{name}' already exists"))
            }
        }
        TopicCommand::Produce {
            data,
            name,
            key_separator,
            types,
        } => {
            let (key_type, value_type) = types.parse()?;
            let log = data.open()?;
            let sent = produce(
                log.as_ref(),
                &name,
                key_separator.as_deref(),
                key_type.as_ref(),
                value_type.as_ref(),
            )?;
            eprintln!("produced {sent} record(s) to '{name}'");
            Ok(())
        }
        TopicCommand::Consume {
            data,
            name,
            from_beginning,
            format: _,
            types,
        } => {
            let (key_type, value_type) = types.parse()?;
            let log = data.open()?;
            consume(
                log.as_ref(),
                &name,
                from_beginning,
                key_type.as_ref(),
                value_type.as_ref(),
            )
        }
    }
}

/// Encodes text from stdin: as UTF-8, or parsed (JSON, else the text itself) for a type.
fn encode_text(
    text: &str,
    ty: Option<&DataType>,
    what: &str,
    line: usize,
) -> Result<Option<Bytes>, String> {
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
        .map_err(|e| format!("line {line}: {what}: {e}"))
}

fn produce(
    log: &dyn Log,
    topic: &str,
    separator: Option<&str>,
    key_type: Option<&DataType>,
    value_type: Option<&DataType>,
) -> Result<u64, String> {
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
    for (index, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        let (key, value) = match separator.and_then(|sep| line.split_once(sep)) {
            Some((k, v)) => (
                Some(encode_text(k, key_type, "key", index + 1)?.unwrap_or_default()),
                v,
            ),
            None => (None, line.as_str()),
        };
        let value = encode_text(value, value_type, "value", index + 1)?;
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
    }
    flush(&mut pending)?;
    Ok(sent)
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
    for p in 0..partitions {
        let (start, end) = log.offset_range(topic, p).map_err(|e| e.to_string())?;
        positions.push(if from_beginning { start } else { end });
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    loop {
        let generation = log.append_generation();
        let mut read_any = false;
        for (p, position) in positions.iter_mut().enumerate() {
            let records = log
                .read(topic, p as u32, *position, 1000)
                .map_err(|e| e.to_string())?;
            for stored in records {
                read_any = true;
                *position = stored.offset + 1;
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
        if from_beginning {
            return Ok(());
        }
        log.wait_for_append(generation, Duration::from_millis(500));
    }
}

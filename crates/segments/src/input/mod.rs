//! Records to input rows, as the spec's inputFormat says: JSON objects (with flattenSpec root
//! and path fields), CSV and TSV lines, and the kafka format that adds the record's timestamp,
//! topic, key and headers as columns.
//!
//! A row is a list of named values. Nested JSON objects and arrays become their JSON text
//! (multi-value dimensions and json columns come later). When rows need only some members of
//! JSON records, [`MemberReader`] reads just those, without making rows.

mod flat;
mod json;
mod members;

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value as Json;

pub use json::Member;
use json::{Members, parse_object};
pub use members::{MemberReader, recycle};

use crate::expr::{Columns, ExprValue};
use crate::spec::{DelimitedFormat, FlattenType, InputFormat};

/// One input row: column names and values, in the order found. Names are shared, so a name
/// the reader knows in advance costs a row no allocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputRow {
    pub columns: Vec<(Arc<str>, ExprValue)>,
}

impl InputRow {
    pub fn get(&self, name: &str) -> Option<&ExprValue> {
        self.columns
            .iter()
            .find(|(n, _)| **n == *name)
            .map(|(_, v)| v)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut ExprValue> {
        self.columns
            .iter_mut()
            .find(|(n, _)| **n == *name)
            .map(|(_, v)| v)
    }

    /// Takes a column's value out of the row (null when absent), leaving null.
    pub fn take(&mut self, name: &str) -> ExprValue {
        self.get_mut(name)
            .map_or(ExprValue::Null, |v| std::mem::replace(v, ExprValue::Null))
    }

    /// Sets a column, replacing an earlier value of the same name.
    pub fn set(&mut self, name: &str, value: ExprValue) {
        match self.get_mut(name) {
            Some(slot) => *slot = value,
            None => self.columns.push((Arc::from(name), value)),
        }
    }
}

impl Columns for InputRow {
    fn column(&self, name: &str) -> ExprValue {
        self.get(name).cloned().unwrap_or(ExprValue::Null)
    }
}

/// What a record carries besides its value (used by the kafka input format).
#[derive(Debug, Clone, Copy)]
pub struct RecordMeta<'a> {
    pub topic: &'a str,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

/// Why a record could not be read (counted as unparseable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// A path into JSON: `$.a.b`, `$.a[0]`, `$['a b']`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
}

fn parse_json_path(path: &str) -> Result<Vec<Step>, String> {
    let fail = || format!("unsupported JSON path '{path}' (use $.a.b, $.a[0] or $['a b'])");
    let rest = path.trim().strip_prefix('$').ok_or_else(fail)?;
    let mut steps = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut name = String::new();
                while let Some(&n) = chars.peek() {
                    if n == '.' || n == '[' {
                        break;
                    }
                    name.push(n);
                    chars.next();
                }
                if name.is_empty() {
                    return Err(fail());
                }
                steps.push(Step::Field(name));
            }
            '[' => {
                let mut inner = String::new();
                for n in chars.by_ref() {
                    if n == ']' {
                        break;
                    }
                    inner.push(n);
                }
                let inner = inner.trim();
                if let Some(quoted) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                    steps.push(Step::Field(quoted.to_string()));
                } else {
                    steps.push(Step::Index(inner.parse().map_err(|_| fail())?));
                }
            }
            _ => return Err(fail()),
        }
    }
    Ok(steps)
}

/// The names the kafka input format gives a record's timestamp, topic, key and headers.
#[derive(Debug, Clone)]
struct KafkaColumns {
    timestamp: String,
    topic: String,
    key: String,
    header_prefix: String,
}

impl KafkaColumns {
    /// The names a kafka input format gives the columns (Druid's defaults where it gives
    /// none, as for any other format).
    fn new(format: &InputFormat) -> KafkaColumns {
        let (timestamp, topic, key, header_prefix) = match format {
            InputFormat::Kafka {
                timestamp_column_name,
                topic_column_name,
                key_column_name,
                header_column_prefix,
                ..
            } => (
                timestamp_column_name.as_deref(),
                topic_column_name.as_deref(),
                key_column_name.as_deref(),
                header_column_prefix.as_deref(),
            ),
            _ => (None, None, None, None),
        };
        KafkaColumns {
            timestamp: timestamp.unwrap_or("kafka.timestamp").to_string(),
            topic: topic.unwrap_or("kafka.topic").to_string(),
            key: key.unwrap_or("kafka.key").to_string(),
            header_prefix: header_prefix.unwrap_or("kafka.header.").to_string(),
        }
    }

    /// Where the column `name` comes from in a record, when it is one of these columns.
    fn source(&self, name: &str) -> Option<RecordColumn> {
        let header = name.strip_prefix(&self.header_prefix).map(String::from);
        let field = if name == self.key {
            Some(RecordField::Key)
        } else if name == self.topic {
            Some(RecordField::Topic)
        } else if name == self.timestamp {
            Some(RecordField::Timestamp)
        } else {
            None
        };
        (header.is_some() || field.is_some()).then_some(RecordColumn { header, field })
    }
}

/// A column the kafka format sets from the record, with the row reader's precedence (it sets
/// the timestamp, topic, key, then each header, each replacing an earlier one of the name).
#[derive(Debug, Clone)]
struct RecordColumn {
    /// The header the name is (after the header prefix): when the record has it, the last
    /// of that name gives the value.
    header: Option<String>,
    /// Otherwise, the field the name is, if any (the key before the topic before the
    /// timestamp, should names coincide).
    field: Option<RecordField>,
}

#[derive(Debug, Clone, Copy)]
enum RecordField {
    Key,
    Topic,
    Timestamp,
}

impl RecordColumn {
    /// The column's value in this record; None when it is only a header the record lacks.
    fn value<'a>(&self, meta: &RecordMeta<'a>) -> Option<Member<'a>> {
        let text = |bytes: &'a [u8]| Member::Text(String::from_utf8_lossy(bytes));
        let header = self
            .header
            .as_ref()
            .and_then(|h| meta.headers.iter().rev().find(|(n, _)| n == h));
        if let Some((_, value)) = header {
            return Some(value.map_or(Member::Null, text));
        }
        Some(match self.field? {
            RecordField::Key => meta.key.map_or(Member::Null, text),
            RecordField::Topic => Member::Text(Cow::Borrowed(meta.topic)),
            RecordField::Timestamp => Member::Long(meta.timestamp),
        })
    }
}

/// Reads records as the inputFormat of a spec says.
pub struct RowReader {
    format: Reader,
}

enum Reader {
    Json {
        discover: bool,
        fields: Vec<(String, Option<Vec<Step>>)>,
    },
    Delimited {
        delimiter: u8,
        columns: Vec<Arc<str>>,
        skip_rows: u32,
    },
    Kafka {
        value: Box<Reader>,
        key: Option<Box<Reader>>,
        columns: KafkaColumns,
    },
}

impl RowReader {
    /// Builds a reader; errors name the problem (the spec was checked already).
    pub fn new(format: &InputFormat) -> Result<RowReader, String> {
        Ok(RowReader {
            format: Reader::new(format)?,
        })
    }

    /// Reads one record into rows (CSV/TSV may hold several lines; header rows are skipped
    /// when the format says so).
    pub fn read(&self, value: &[u8], meta: &RecordMeta<'_>) -> Result<Vec<InputRow>, ParseError> {
        self.format.read(value, meta)
    }
}

impl Reader {
    fn new(format: &InputFormat) -> Result<Reader, String> {
        Ok(match format {
            InputFormat::Json { flatten_spec, .. } => {
                let discover = flatten_spec.as_ref().is_none_or(|f| f.use_field_discovery);
                let mut fields = Vec::new();
                for field in flatten_spec.iter().flat_map(|f| &f.fields) {
                    let path = match field.kind {
                        FlattenType::Root => None,
                        FlattenType::Path => {
                            Some(parse_json_path(field.expr.as_deref().unwrap_or_default())?)
                        }
                        FlattenType::Jq | FlattenType::Tree => {
                            return Err("jq and tree fields are not supported yet".into());
                        }
                    };
                    fields.push((field.name.clone(), path));
                }
                Reader::Json { discover, fields }
            }
            InputFormat::Csv(d) => Reader::delimited(d, b',')?,
            InputFormat::Tsv(d) => Reader::delimited(d, b'\t')?,
            InputFormat::Kafka {
                value_format,
                key_format,
                ..
            } => Reader::Kafka {
                value: Box::new(Reader::new(value_format)?),
                key: key_format
                    .as_deref()
                    .map(Reader::new)
                    .transpose()?
                    .map(Box::new),
                columns: KafkaColumns::new(format),
            },
            InputFormat::AvroStream(_) | InputFormat::Protobuf(_) => {
                return Err("avro_stream and protobuf input formats are not supported yet".into());
            }
        })
    }

    fn delimited(format: &DelimitedFormat, default: u8) -> Result<Reader, String> {
        if format.columns.is_empty() {
            return Err("findColumnsFromHeader needs a header per record, which streams do not have: give columns".into());
        }
        let delimiter = match format.delimiter.as_deref() {
            None => default,
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => return Err(format!("delimiter '{d}' must be one character")),
        };
        Ok(Reader::Delimited {
            delimiter,
            columns: format
                .columns
                .iter()
                .map(|c| Arc::from(c.as_str()))
                .collect(),
            skip_rows: format.skip_header_rows,
        })
    }

    fn read(&self, bytes: &[u8], meta: &RecordMeta<'_>) -> Result<Vec<InputRow>, ParseError> {
        match self {
            Reader::Json {
                discover: true,
                fields,
            } if fields.is_empty() => {
                let mut row = InputRow {
                    columns: Vec::with_capacity(8),
                };
                parse_object(bytes, Members::Row(&mut row))?;
                Ok(vec![row])
            }
            Reader::Json { discover, fields } => {
                let json: Json = serde_json::from_slice(bytes)
                    .map_err(|e| ParseError(format!("invalid JSON: {e}")))?;
                let Json::Object(object) = &json else {
                    return Err(ParseError("expected a JSON object".into()));
                };
                let mut row = InputRow::default();
                if *discover {
                    for (name, value) in object {
                        row.columns
                            .push((Arc::from(name.as_str()), Member::of_json(value).into()));
                    }
                }
                for (name, path) in fields {
                    let value = match path {
                        None => object.get(name),
                        Some(steps) => steps.iter().try_fold(&json, |node, step| match step {
                            Step::Field(f) => node.get(f),
                            Step::Index(i) => node.get(*i),
                        }),
                    };
                    row.set(name, value.map_or(Member::Null, Member::of_json).into());
                }
                Ok(vec![row])
            }
            Reader::Delimited {
                delimiter,
                columns,
                skip_rows,
            } => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .delimiter(*delimiter)
                    .flexible(true)
                    .from_reader(bytes);
                let mut rows = Vec::new();
                for (i, record) in reader.records().enumerate() {
                    let record =
                        record.map_err(|e| ParseError(format!("invalid delimited text: {e}")))?;
                    if (i as u32) < *skip_rows {
                        continue;
                    }
                    if record.len() > columns.len() {
                        return Err(ParseError(format!(
                            "line has {} values but {} columns are declared",
                            record.len(),
                            columns.len()
                        )));
                    }
                    let mut row = InputRow::default();
                    for (name, text) in columns.iter().zip(record.iter()) {
                        let value = if text.is_empty() {
                            ExprValue::Null
                        } else {
                            ExprValue::String(text.to_string())
                        };
                        row.columns.push((name.clone(), value));
                    }
                    rows.push(row);
                }
                Ok(rows)
            }
            Reader::Kafka {
                value,
                key,
                columns,
            } => {
                let mut rows = value.read(bytes, meta)?;
                let key_value = match (key, meta.key) {
                    (_, None) => ExprValue::Null,
                    (None, Some(k)) => ExprValue::String(String::from_utf8_lossy(k).into_owned()),
                    (Some(reader), Some(k)) => {
                        let key_rows = reader.read(k, meta)?;
                        key_rows
                            .first()
                            .and_then(|r| r.columns.first())
                            .map_or(ExprValue::Null, |(_, v)| v.clone())
                    }
                };
                for row in &mut rows {
                    row.set(&columns.timestamp, ExprValue::Long(meta.timestamp));
                    row.set(&columns.topic, ExprValue::String(meta.topic.to_string()));
                    row.set(&columns.key, key_value.clone());
                    for (name, header) in meta.headers {
                        let value = header.map_or(ExprValue::Null, |h| {
                            ExprValue::String(String::from_utf8_lossy(h).into_owned())
                        });
                        row.set(&format!("{}{name}", columns.header_prefix), value);
                    }
                }
                Ok(rows)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    pub(super) fn reader(format: serde_json::Value) -> RowReader {
        RowReader::new(&serde_json::from_value(format).unwrap()).unwrap()
    }

    pub(super) const META: RecordMeta<'static> = RecordMeta {
        topic: "social",
        timestamp: 1_700_000_000_000,
        key: Some(b"k1"),
        headers: &[("source", Some(b"app")), ("empty", None)],
    };

    #[test]
    fn json_with_discovery_and_flatten_paths() {
        let r = reader(json!({"type": "json", "flattenSpec": {"fields": [
            {"type": "path", "name": "city", "expr": "$.geo.city"},
            {"type": "path", "name": "first_tag", "expr": "$.tags[0]"},
            {"type": "path", "name": "odd", "expr": "$['odd key']"},
            {"type": "root", "name": "missing"}
        ]}}));
        let rows = r
            .read(br#"{"user": "mia", "views": 3, "ratio": 0.5, "geo": {"city": "Oslo"}, "tags": ["a", "b"], "odd key": true}"#, &META)
            .unwrap();
        let row = &rows[0];
        assert_eq!(row.get("user"), Some(&ExprValue::String("mia".into())));
        assert_eq!(row.get("views"), Some(&ExprValue::Long(3)));
        assert_eq!(row.get("ratio"), Some(&ExprValue::Double(0.5)));
        assert_eq!(row.get("city"), Some(&ExprValue::String("Oslo".into())));
        assert_eq!(row.get("first_tag"), Some(&ExprValue::String("a".into())));
        assert_eq!(row.get("odd"), Some(&ExprValue::String("true".into())));
        assert_eq!(
            row.get("geo"),
            Some(&ExprValue::String(r#"{"city":"Oslo"}"#.into()))
        );
        assert_eq!(row.get("missing"), Some(&ExprValue::Null));
        let no_discovery = reader(
            json!({"type": "json", "flattenSpec": {"useFieldDiscovery": false, "fields": [
            {"type": "root", "name": "user"}]}}),
        );
        assert_eq!(
            no_discovery
                .read(br#"{"user": "x", "other": 1}"#, &META)
                .unwrap()[0]
                .columns
                .len(),
            1
        );
        assert!(
            r.read(b"not json", &META)
                .unwrap_err()
                .0
                .starts_with("invalid JSON")
        );
        assert_eq!(
            r.read(b"[1]", &META).unwrap_err().0,
            "expected a JSON object"
        );
    }

    #[test]
    fn json_read_without_a_tree_gives_the_tree_readers_rows() {
        let plain = reader(json!({"type": "json"}));
        // A root field sends the reader through the JSON tree (discovery keeps every column,
        // and the field adds itself last, null when absent).
        let tree = reader(json!({"type": "json", "flattenSpec": {"fields": [
            {"type": "root", "name": "absent"}]}}));
        let records: [&[u8]; 5] = [
            br#"{"user": "mia", "views": 3, "ratio": 0.5, "edited": true, "none": null}"#,
            br#"{"user": "gus", "geo": {"city": "Oslo", "at": [1, 2.5]}, "tags": ["a", {"b": 1}]}"#,
            br#"{"big": 18446744073709551615, "neg": -9223372036854775808, "exp": 1e3}"#,
            br#"{"esc\u0061ped": "tab\there", "user": "first", "user": "second"}"#,
            br#"  {"unicode": "caf\u00e9 \ud83d\ude00"}  "#,
        ];
        for record in records {
            let fast = &plain.read(record, &META).unwrap()[0];
            let mut slow = tree.read(record, &META).unwrap().remove(0);
            assert_eq!(slow.columns.pop(), Some(("absent".into(), ExprValue::Null)));
            assert_eq!(fast, &slow, "{}", String::from_utf8_lossy(record));
        }
        let big = &plain.read(records[2], &META).unwrap()[0];
        assert_eq!(
            big.get("big"),
            Some(&ExprValue::Double(18446744073709551615.0))
        );
        assert_eq!(big.get("exp"), Some(&ExprValue::Double(1000.0)));
        let duplicate = &plain.read(records[3], &META).unwrap()[0];
        assert_eq!(
            duplicate.get("user"),
            Some(&ExprValue::String("second".into()))
        );
        assert_eq!(
            duplicate.get("escaped"),
            Some(&ExprValue::String("tab\there".into()))
        );
    }

    #[test]
    fn csv_and_tsv() {
        let csv = reader(
            json!({"type": "csv", "columns": ["time", "user", "views"], "skipHeaderRows": 0}),
        );
        let rows = csv
            .read(b"2024-05-01T00:00:00Z,\"mia, the cat\",3", &META)
            .unwrap();
        assert_eq!(
            rows[0].get("user"),
            Some(&ExprValue::String("mia, the cat".into()))
        );
        assert_eq!(rows[0].get("views"), Some(&ExprValue::String("3".into())));
        let tsv = reader(json!({"type": "tsv", "columns": ["a", "b"]}));
        let rows = tsv.read(b"x\t\ny\tz", &META).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].get("b"), Some(&ExprValue::Null));
        assert_eq!(rows[1].get("b"), Some(&ExprValue::String("z".into())));
        assert!(
            csv.read(b"1,2,3,4", &META)
                .unwrap_err()
                .0
                .contains("4 values but 3 columns")
        );
        assert!(
            RowReader::new(
                &serde_json::from_value(json!({"type": "csv", "findColumnsFromHeader": true}))
                    .unwrap()
            )
            .is_err()
        );
    }

    #[test]
    fn kafka_format_adds_record_columns() {
        let r = reader(json!({"type": "kafka", "valueFormat": {"type": "json"}}));
        let row = &r.read(br#"{"user": "gus"}"#, &META).unwrap()[0];
        assert_eq!(
            row.get("kafka.timestamp"),
            Some(&ExprValue::Long(1_700_000_000_000))
        );
        assert_eq!(
            row.get("kafka.topic"),
            Some(&ExprValue::String("social".into()))
        );
        assert_eq!(row.get("kafka.key"), Some(&ExprValue::String("k1".into())));
        assert_eq!(
            row.get("kafka.header.source"),
            Some(&ExprValue::String("app".into()))
        );
        assert_eq!(row.get("kafka.header.empty"), Some(&ExprValue::Null));
        let renamed = reader(json!({"type": "kafka", "valueFormat": {"type": "json"},
            "timestampColumnName": "ts", "keyColumnName": "k", "headerColumnPrefix": "h_",
            "keyFormat": {"type": "csv", "columns": ["id"]}}));
        let row = &renamed.read(br#"{"user": "gus"}"#, &META).unwrap()[0];
        assert_eq!(row.get("ts"), Some(&ExprValue::Long(1_700_000_000_000)));
        assert_eq!(row.get("k"), Some(&ExprValue::String("k1".into())));
        assert_eq!(row.get("h_source"), Some(&ExprValue::String("app".into())));
    }

    #[test]
    fn json_paths() {
        assert_eq!(
            parse_json_path("$.a[2]['b c'].d").unwrap(),
            vec![
                Step::Field("a".into()),
                Step::Index(2),
                Step::Field("b c".into()),
                Step::Field("d".into()),
            ]
        );
        assert!(parse_json_path("a.b").is_err());
        assert!(parse_json_path("$..a").is_err());
    }
}

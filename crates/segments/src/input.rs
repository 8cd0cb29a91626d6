//! Records to input rows, as the spec's inputFormat says: JSON objects (with flattenSpec root
//! and path fields), CSV and TSV lines, and the kafka format that adds the record's timestamp,
//! topic, key and headers as columns.
//!
//! A row is a list of named values. Nested JSON objects and arrays become their JSON text
//! (multi-value dimensions and json columns come later).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::Value as Json;

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

/// One value as a record holds it, before any conversion to a column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Member<'a> {
    /// JSON null, or no such member.
    Null,
    /// Text, borrowed from the record when it needs no unescaping. JSON booleans are the
    /// text `true`/`false` and nested objects and arrays their JSON text, as Druid reads them
    /// into string columns.
    Text(Cow<'a, str>),
    /// A JSON integer that fits 64 bits.
    Long(i64),
    /// Any other JSON number.
    Double(f64),
}

impl Member<'_> {
    /// A value of an input row, borrowed.
    pub fn of(value: &ExprValue) -> Member<'_> {
        match value {
            ExprValue::Null => Member::Null,
            ExprValue::String(s) => Member::Text(Cow::Borrowed(s)),
            ExprValue::Long(l) => Member::Long(*l),
            ExprValue::Double(d) => Member::Double(*d),
        }
    }
}

impl From<ExprValue> for Member<'static> {
    fn from(value: ExprValue) -> Self {
        match value {
            ExprValue::Null => Member::Null,
            ExprValue::String(s) => Member::Text(Cow::Owned(s)),
            ExprValue::Long(l) => Member::Long(l),
            ExprValue::Double(d) => Member::Double(d),
        }
    }
}

impl From<Member<'_>> for ExprValue {
    fn from(value: Member<'_>) -> Self {
        match value {
            Member::Null => ExprValue::Null,
            Member::Text(s) => ExprValue::String(s.into_owned()),
            Member::Long(l) => ExprValue::Long(l),
            Member::Double(d) => ExprValue::Double(d),
        }
    }
}

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

fn json_to_value(value: &Json) -> ExprValue {
    match value {
        Json::Null => ExprValue::Null,
        Json::Bool(b) => ExprValue::String(b.to_string()),
        Json::Number(n) => n.as_i64().map_or_else(
            || ExprValue::Double(n.as_f64().unwrap_or(f64::NAN)),
            ExprValue::Long,
        ),
        Json::String(s) => ExprValue::String(s.clone()),
        nested => ExprValue::String(nested.to_string()),
    }
}

/// A JSON object's members read straight into an input row (no intermediate JSON tree);
/// nested objects and arrays become their JSON text, as [`json_to_value`] makes them.
struct ObjectColumns<'a> {
    row: &'a mut InputRow,
}

impl<'de> DeserializeSeed<'de> for ObjectColumns<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ObjectColumns<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(name)) = map.next_key::<Key<'de>>()? {
            let value: Member<'de> = map.next_value()?;
            self.row.set(&name, value.into());
        }
        Ok(())
    }
}

/// The named members of a JSON object, each at its name's place (null when missing; a
/// repeated member's last value wins), the others skipped unread.
struct NamedMembers<'a, 'de> {
    names: &'a [String],
    values: &'a mut Vec<Member<'de>>,
}

impl<'de> DeserializeSeed<'de> for NamedMembers<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NamedMembers<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Records of a topic mostly hold their members in one order: the name after the last
        // one found is tried first, then all of them.
        let mut next = 0;
        while let Some(Key(name)) = map.next_key::<Key<'de>>()? {
            let place = match self.names.get(next) {
                Some(guess) if *guess == *name => Some(next),
                _ => self.names.iter().position(|n| *n == *name),
            };
            match place {
                Some(place) => {
                    self.values[place] = map.next_value()?;
                    next = (place + 1) % self.names.len();
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An object member's name, borrowed from the record when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(name)))
            }
            fn visit_str<E>(self, name: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(name.to_string())))
            }
            fn visit_string<E>(self, name: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(name)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Member<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemberVisitor;
        impl<'de> Visitor<'de> for MemberVisitor {
            type Value = Member<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Member<'de>, E> {
                Ok(Member::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Member<'de>, E> {
                Ok(Member::Text(Cow::Borrowed(if b {
                    "true"
                } else {
                    "false"
                })))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Member<'de>, E> {
                Ok(Member::Long(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Member<'de>, E> {
                Ok(i64::try_from(v).map_or(Member::Double(v as f64), Member::Long))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Member<'de>, E> {
                Ok(Member::Double(v))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Member<'de>, E> {
                Ok(Member::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Member<'de>, E> {
                Ok(Member::Text(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Member<'de>, E> {
                Ok(Member::Text(Cow::Owned(s)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Member<'de>, A::Error> {
                let nested = Json::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Member::Text(Cow::Owned(nested.to_string())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Member<'de>, A::Error> {
                let nested = Json::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(Member::Text(Cow::Owned(nested.to_string())))
            }
        }
        deserializer.deserialize_any(MemberVisitor)
    }
}

/// Parses one JSON object record with `seed`, naming what is wrong with a record that is not
/// one.
fn parse_object<'de>(
    record: &'de [u8],
    seed: impl DeserializeSeed<'de, Value = ()>,
) -> Result<(), ParseError> {
    let mut parser = serde_json::Deserializer::from_slice(record);
    seed.deserialize(&mut parser)
        .and_then(|()| parser.end())
        .map_err(|e| match e.classify() {
            // Every member value is accepted: only the record itself can be of another type
            // than an object.
            serde_json::error::Category::Data => ParseError("expected a JSON object".into()),
            _ => ParseError(format!("invalid JSON: {e}")),
        })
}

/// Reads only the named members of records that are plain JSON objects, in the order named,
/// their text borrowed from the record: for rows that need no other column, which is faster
/// than reading whole input rows. With the kafka format, names of the record's timestamp,
/// topic, key and header columns read those as the row reader does.
#[derive(Debug, Clone)]
pub struct MemberReader {
    /// Each name once (a repeated one would read null after the first).
    names: Vec<String>,
    kafka: Option<KafkaColumns>,
}

impl MemberReader {
    /// A reader of these members, when the format reads records as plain JSON objects (json
    /// without flattenSpec fields, discovering columns, alone or as the value of the kafka
    /// format without a keyFormat): None for every other format.
    pub fn new(format: &InputFormat, names: Vec<String>) -> Option<MemberReader> {
        let plain_json = |format: &InputFormat| match format {
            InputFormat::Json { flatten_spec, .. } => flatten_spec
                .as_ref()
                .is_none_or(|f| f.use_field_discovery && f.fields.is_empty()),
            _ => false,
        };
        let kafka = match format {
            InputFormat::Kafka {
                value_format,
                key_format: None,
                ..
            } if plain_json(value_format) => Some(KafkaColumns::new(format)),
            _ if plain_json(format) => None,
            _ => return None,
        };
        Some(MemberReader { names, kafka })
    }

    /// The named members' values (null when missing).
    pub fn read<'a>(
        &self,
        record: &'a [u8],
        meta: &RecordMeta<'a>,
    ) -> Result<Vec<Member<'a>>, ParseError> {
        let mut values = vec![Member::Null; self.names.len()];
        parse_object(
            record,
            NamedMembers {
                names: &self.names,
                values: &mut values,
            },
        )?;
        if let Some(kafka) = &self.kafka {
            for (name, value) in self.names.iter().zip(&mut values) {
                if let Some(from_record) = kafka.column(name, meta) {
                    *value = from_record;
                }
            }
        }
        Ok(values)
    }
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
    /// The names a kafka input format sets (Druid's defaults where it sets none); empty
    /// names for another format.
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

    /// The column `name` as the row reader sets it from the record, when it is one: a header
    /// the record has (the last of that name), else the key (null without one), the topic
    /// or the timestamp, in that order of precedence (the row reader sets them in the
    /// reverse order, each replacing the one before).
    fn column<'a>(&self, name: &str, meta: &RecordMeta<'a>) -> Option<Member<'a>> {
        let text = |bytes: &'a [u8]| Member::Text(String::from_utf8_lossy(bytes));
        let header = name
            .strip_prefix(&self.header_prefix)
            .and_then(|h| meta.headers.iter().rev().find(|(n, _)| *n == h));
        if let Some((_, value)) = header {
            Some(value.map_or(Member::Null, text))
        } else if name == self.key {
            Some(meta.key.map_or(Member::Null, text))
        } else if name == self.topic {
            Some(Member::Text(Cow::Borrowed(meta.topic)))
        } else if name == self.timestamp {
            Some(Member::Long(meta.timestamp))
        } else {
            None
        }
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
                parse_object(bytes, ObjectColumns { row: &mut row })?;
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
                            .push((Arc::from(name.as_str()), json_to_value(value)));
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
                    row.set(name, value.map_or(ExprValue::Null, json_to_value));
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

    fn reader(format: serde_json::Value) -> RowReader {
        RowReader::new(&serde_json::from_value(format).unwrap()).unwrap()
    }

    const META: RecordMeta<'static> = RecordMeta {
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
    fn members_read_alone_equal_the_rows_values() {
        let format = |f: serde_json::Value| serde_json::from_value::<InputFormat>(f).unwrap();
        // Records in the names' order, out of it, and breaking it after a match.
        let records = [
            &br#"{"user": "mia", "views": 3, "ratio": 0.5, "edited": true, "none": null}"#[..],
            br#"{"tags": [], "user": "ann", "absent": 1, "geo": null, "big": 2, "edited": "x"}"#,
            br#"{"user": "gus", "geo": {"city": "Oslo", "at": [1, 2.5]}, "tags": ["a", {"b": 1}]}"#,
            br#"{"big": 18446744073709551615, "neg": -9223372036854775808, "exp": 1e3}"#,
            br#"{"esc\u0061ped": "tab\there", "user": "first", "user": "second", "tags": 1}"#,
            br#"  {"unicode": "caf\u00e9 \ud83d\ude00", "edited": false}  "#,
        ];
        let names: Vec<String> = [
            "tags", "user", "absent", "geo", "big", "edited", "unicode", "escaped",
        ]
        .map(String::from)
        .into();
        let kafka_names: Vec<String> = [
            "user",
            "kafka.timestamp",
            "kafka.topic",
            "kafka.key",
            "kafka.header.source",
            "kafka.header.empty",
            "kafka.header.absent",
        ]
        .map(String::from)
        .into();
        let no_key = RecordMeta { key: None, ..META };
        for (format_json, names, meta) in [
            (json!({"type": "json"}), &names, &META),
            (
                json!({"type": "kafka", "valueFormat": {"type": "json"}}),
                &kafka_names,
                &META,
            ),
            (
                json!({"type": "kafka", "valueFormat": {"type": "json"}}),
                &kafka_names,
                &no_key,
            ),
        ] {
            let members = MemberReader::new(&format(format_json.clone()), names.clone()).unwrap();
            let rows = reader(format_json);
            for record in records {
                let row = &rows.read(record, meta).unwrap()[0];
                let expected: Vec<Member<'_>> = names
                    .iter()
                    .map(|n| row.get(n).map_or(Member::Null, Member::of))
                    .collect();
                let read = members.read(record, meta).unwrap();
                assert_eq!(read, expected, "{}", String::from_utf8_lossy(record));
            }
        }
        let members = MemberReader::new(&format(json!({"type": "json"})), names.clone()).unwrap();
        let read = members
            .read(br#"{"user": "gus", "tags": [1]}"#, &META)
            .unwrap();
        assert!(
            matches!(&read[1], Member::Text(Cow::Borrowed("gus"))),
            "plain text is borrowed from the record"
        );
        assert_eq!(read[0], Member::Text("[1]".into()));
        for (bad, why) in [
            (&b"[1]"[..], "expected a JSON object"),
            (b"\"text\"", "expected a JSON object"),
            (b"{\"user\": \"mia\"} trailing", "invalid JSON"),
            (b"{\"user\": }", "invalid JSON"),
            (b"{\"skipped\": [1, }", "invalid JSON"),
        ] {
            assert!(
                members.read(bad, &META).unwrap_err().0.starts_with(why),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Members no row reads are skipped unchecked (as the compatibility page says): what
        // the row reader refuses inside them is no error here.
        let rows = reader(json!({"type": "json"}));
        for unchecked in [
            &br#"{"user": "x", "skipped": "\ud800"}"#[..],
            b"{\"skipped\": 1e400}",
        ] {
            assert!(rows.read(unchecked, &META).is_err());
            assert!(members.read(unchecked, &META).is_ok());
        }
        for other in [
            json!({"type": "csv", "columns": ["user"]}),
            json!({"type": "kafka", "valueFormat": {"type": "json"}, "keyFormat": {"type": "csv", "columns": ["id"]}}),
            json!({"type": "kafka", "valueFormat": {"type": "csv", "columns": ["user"]}}),
            json!({"type": "json", "flattenSpec": {"fields": [{"type": "root", "name": "user"}]}}),
            json!({"type": "json", "flattenSpec": {"useFieldDiscovery": false}}),
        ] {
            assert!(
                MemberReader::new(&format(other.clone()), names.clone()).is_none(),
                "{other}"
            );
        }
        assert!(
            MemberReader::new(&format(json!({"type": "json", "flattenSpec": {}})), names).is_some()
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

//! Dimensions: the fields of a record and the variables of a state, each a generator of JSON
//! values (`enum`, `string`, `int`, `float`, `timestamp`, `ipaddress`, `counter`, `variable`,
//! `object`, `list`, `clock`), written straight into the record's bytes.

use std::io::Write;

use serde_json::Value;

use crate::distribution::{Distribution, Unit};
use crate::fields::{ConfigError, Fields, error};
use crate::random::Random;

/// Python's `string.printable`: learn-druid's default characters for `string` dimensions.
const PRINTABLE: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ \t\n\r\u{b}\u{c}";

/// How many draws may find no new value before a cardinality is declared out of reach.
const DRAWS_PER_VALUE: usize = 1000;

/// One dimension of an emitter (or variable of a state) with its generator's state.
#[derive(Debug, Clone)]
pub struct Dimension {
    pub name: String,
    pub kind: Kind,
    /// The JSON key and colon, written before the value.
    key: Vec<u8>,
    percent_nulls: f64,
    percent_missing: f64,
    cardinality: Option<Cardinality>,
}

/// A dimension that repeats a fixed set of values: `count` distinct values drawn once per
/// job, then picked by `distribution` (an index, clamped to the set).
#[derive(Debug, Clone)]
struct Cardinality {
    count: usize,
    distribution: Distribution,
    path: String,
    values: Vec<Vec<u8>>,
}

/// What a dimension generates.
#[derive(Debug, Clone)]
pub enum Kind {
    /// One of `values` (as JSON strings), picked by index.
    Enum {
        values: Vec<Vec<u8>>,
        selection: Distribution,
    },
    /// Random characters of `chars` (each kept as its JSON-escaped bytes).
    String {
        length: Distribution,
        chars: Vec<Vec<u8>>,
    },
    /// A number truncated to a whole number.
    Int(Distribution),
    Float {
        distribution: Distribution,
        precision: Option<usize>,
    },
    /// A time (the distribution is over epoch seconds), written as ISO-8601 text.
    Timestamp(Distribution),
    /// An IPv4 address from the low 32 bits of a whole number.
    IpAddress(Distribution),
    /// `start`, `start + increment`, ..., shared by every session of a job; written as text.
    Counter {
        next: f64,
        increment: f64,
    },
    /// The value of a state variable, as text.
    Variable(String),
    Object(Vec<Dimension>),
    /// `length` items, each a value of one of `elements` picked by `selection`.
    List {
        elements: Vec<Dimension>,
        length: Distribution,
        selection: Distribution,
    },
    /// The simulated clock when the record is emitted, as ISO-8601 text.
    Clock,
}

/// What a value may depend on besides randomness.
pub struct Context<'a> {
    /// The simulated clock, epoch milliseconds.
    pub clock_ms: i64,
    /// The session's variables: name and JSON value.
    pub variables: &'a [(String, Vec<u8>)],
}

impl Dimension {
    /// Reads a dimension object.
    pub fn parse(value: &Value, path: &str) -> Result<Dimension, ConfigError> {
        let fields = Fields::of(value, path)?;
        let name = fields.string("name")?.to_string();
        let distribution = |field: &str, unit: Unit| {
            Distribution::parse(fields.required(field)?, &fields.path_of(field), unit)
        };
        let children = |field: &str| -> Result<Vec<Dimension>, ConfigError> {
            fields
                .array(field)?
                .iter()
                .map(|(path, item)| Dimension::parse(item, path))
                .collect()
        };
        let kind = match fields.string("type")?.to_ascii_lowercase().as_str() {
            "enum" => {
                let values = fields
                    .array("values")?
                    .into_iter()
                    .map(|(_, v)| enum_value(v))
                    .collect::<Vec<_>>();
                if values.is_empty() {
                    return Err(fields.error("values", "needs at least one value"));
                }
                let selection = match fields.get("cardinality_distribution") {
                    Some(_) => distribution("cardinality_distribution", Unit::Number)?,
                    None => Distribution::Uniform {
                        min: 0.0,
                        max: (values.len() - 1) as f64,
                    },
                };
                Kind::Enum { values, selection }
            }
            "string" => {
                let chars = fields.optional_string("chars")?.unwrap_or(PRINTABLE);
                if chars.is_empty() {
                    return Err(fields.error("chars", "needs at least one character"));
                }
                Kind::String {
                    length: distribution("length_distribution", Unit::Number)?,
                    chars: chars
                        .chars()
                        .map(|c| {
                            let mut bytes = Vec::new();
                            push_json_string(&mut bytes, c.encode_utf8(&mut [0; 4]));
                            bytes[1..bytes.len() - 1].to_vec()
                        })
                        .collect(),
                }
            }
            "int" => Kind::Int(distribution("distribution", Unit::Number)?),
            "float" => Kind::Float {
                distribution: distribution("distribution", Unit::Number)?,
                precision: fields
                    .optional_count("precision")?
                    .map(|p| p.min(17) as usize),
            },
            "timestamp" => Kind::Timestamp(distribution("distribution", Unit::Timestamp)?),
            "ipaddress" => Kind::IpAddress(distribution("distribution", Unit::Number)?),
            "counter" => Kind::Counter {
                next: fields.optional_number("start")?.unwrap_or(0.0),
                increment: fields.optional_number("increment")?.unwrap_or(1.0),
            },
            "variable" => Kind::Variable(fields.string("variable")?.to_string()),
            "object" => Kind::Object(children("dimensions")?),
            "list" => {
                let elements = children("elements")?;
                if elements.is_empty() {
                    return Err(fields.error("elements", "needs at least one element"));
                }
                Kind::List {
                    elements,
                    length: distribution("length_distribution", Unit::Number)?,
                    selection: distribution("selection_distribution", Unit::Number)?,
                }
            }
            "clock" => Kind::Clock,
            other => {
                return Err(fields.error(
                    "type",
                    format!("unknown dimension type '{other}' (enum, string, int, float, timestamp, ipaddress, counter, variable, object, list or clock)"),
                ));
            }
        };
        let count = fields.optional_count("cardinality")?.unwrap_or(0) as usize;
        let cardinality = if count == 0 || matches!(kind, Kind::Enum { .. }) {
            None
        } else if matches!(kind, Kind::Counter { .. } | Kind::Variable(_) | Kind::Clock) {
            return Err(fields.error("cardinality", "has no meaning for this type"));
        } else {
            Some(Cardinality {
                count,
                distribution: distribution("cardinality_distribution", Unit::Number)?,
                path: fields.path_of("cardinality"),
                values: Vec::new(),
            })
        };
        let mut key = Vec::new();
        push_json_string(&mut key, &name);
        key.push(b':');
        Ok(Dimension {
            name,
            kind,
            key,
            percent_nulls: fields.percent("percent_nulls")?,
            percent_missing: fields.percent("percent_missing")?,
            cardinality,
        })
    }

    /// Draws the fixed value sets of this dimension (and those nested in it); once per job.
    pub fn prepare(&mut self, random: &mut Random) -> Result<(), ConfigError> {
        match &mut self.kind {
            Kind::Object(children)
            | Kind::List {
                elements: children, ..
            } => {
                for child in children {
                    child.prepare(random)?;
                }
            }
            _ => {}
        }
        let Some(mut cardinality) = self.cardinality.take() else {
            return Ok(());
        };
        let context = Context {
            clock_ms: 0,
            variables: &[],
        };
        let mut seen = std::collections::HashSet::new();
        let mut draws = 0;
        while cardinality.values.len() < cardinality.count {
            let mut value = Vec::new();
            self.fresh_value(random, &context, &mut value);
            if seen.insert(value.clone()) {
                cardinality.values.push(value);
            } else {
                draws += 1;
                if draws > DRAWS_PER_VALUE.saturating_mul(cardinality.count) {
                    return Err(error(
                        &cardinality.path,
                        format!(
                            "{} distinct values asked for, but only {} were drawn; the dimension's distribution has too few",
                            cardinality.count,
                            cardinality.values.len()
                        ),
                    ));
                }
            }
        }
        self.cardinality = Some(cardinality);
        Ok(())
    }

    /// Writes `"name":value` unless the dimension is missing this time; returns whether it
    /// wrote anything.
    pub fn write_field(
        &mut self,
        random: &mut Random,
        context: &Context<'_>,
        out: &mut Vec<u8>,
    ) -> bool {
        if self.percent_missing > 0.0 && random.unit() * 100.0 < self.percent_missing {
            return false;
        }
        out.extend_from_slice(&self.key);
        self.write_value(random, context, out);
        true
    }

    /// Writes a value: null as often as `percent_nulls` says, else one of the fixed set, else
    /// a fresh one.
    pub fn write_value(&mut self, random: &mut Random, context: &Context<'_>, out: &mut Vec<u8>) {
        if self.percent_nulls > 0.0 && random.unit() * 100.0 < self.percent_nulls {
            out.extend_from_slice(b"null");
        } else if let Some(cardinality) = &self.cardinality {
            let index = cardinality
                .distribution
                .index(random, cardinality.values.len());
            out.extend_from_slice(&cardinality.values[index]);
        } else {
            self.fresh_value(random, context, out);
        }
    }

    fn fresh_value(&mut self, random: &mut Random, context: &Context<'_>, out: &mut Vec<u8>) {
        match &mut self.kind {
            Kind::Enum { values, selection } => {
                out.extend_from_slice(&values[selection.index(random, values.len())]);
            }
            Kind::String { length, chars } => {
                let length = whole(length.sample(random)).max(0);
                out.push(b'"');
                for _ in 0..length {
                    out.extend_from_slice(&chars[random.below(chars.len())]);
                }
                out.push(b'"');
            }
            Kind::Int(distribution) => {
                let _ = write!(out, "{}", whole(distribution.sample(random)));
            }
            Kind::Float {
                distribution,
                precision,
            } => {
                push_float(out, distribution.sample(random), *precision);
            }
            Kind::Timestamp(distribution) => {
                let millis = (distribution.sample(random) * 1000.0).floor() as i64;
                push_time(out, millis);
            }
            Kind::IpAddress(distribution) => {
                let [a, b, c, d] = (whole(distribution.sample(random)) as u32).to_be_bytes();
                let _ = write!(out, "\"{a}.{b}.{c}.{d}\"");
            }
            Kind::Counter { next, increment } => {
                out.push(b'"');
                push_float(out, *next, None);
                if out.ends_with(b".0") {
                    out.truncate(out.len() - 2);
                }
                out.push(b'"');
                *next += *increment;
            }
            Kind::Variable(name) => match context.variables.iter().find(|(n, _)| n == name) {
                Some((_, value)) if value.first() == Some(&b'"') || value == b"null" => {
                    out.extend_from_slice(value);
                }
                // Numbers, objects and lists as text, as learn-druid writes every variable.
                Some((_, value)) => push_json_string(out, &String::from_utf8_lossy(value)),
                None => out.extend_from_slice(b"null"),
            },
            Kind::Object(children) => {
                out.push(b'{');
                let mut first = true;
                for child in children {
                    let mark = out.len();
                    if !first {
                        out.push(b',');
                    }
                    if child.write_field(random, context, out) {
                        first = false;
                    } else {
                        out.truncate(mark);
                    }
                }
                out.push(b'}');
            }
            Kind::List {
                elements,
                length,
                selection,
            } => {
                let length = whole(length.sample(random)).max(0);
                out.push(b'[');
                for i in 0..length {
                    if i > 0 {
                        out.push(b',');
                    }
                    let index = selection.index(random, elements.len());
                    elements[index].write_value(random, context, out);
                }
                out.push(b']');
            }
            Kind::Clock => push_time(out, context.clock_ms),
        }
    }
}

/// A number truncated toward zero (NaN as 0), as Python's `int()` truncates.
fn whole(number: f64) -> i64 {
    if number.is_nan() { 0 } else { number as i64 }
}

/// An enum value as the JSON string learn-druid writes: text as it is, numbers as their text,
/// booleans as `True`/`False` (Python's spelling); null stays null.
fn enum_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::String(text) => push_json_string(&mut out, text),
        Value::Bool(true) => out.extend_from_slice(b"\"True\""),
        Value::Bool(false) => out.extend_from_slice(b"\"False\""),
        other => push_json_string(&mut out, &other.to_string()),
    }
    out
}

/// A float as JSON: with `precision` decimals, or the shortest text that reads back as the
/// same number (with `.0` when whole, so it stays a float); null when not finite.
fn push_float(out: &mut Vec<u8>, number: f64, precision: Option<usize>) {
    if !number.is_finite() {
        out.extend_from_slice(b"null");
    } else if let Some(precision) = precision {
        let _ = write!(out, "{number:.precision$}");
    } else if number.fract() == 0.0 && number.abs() < 1e16 {
        let _ = write!(out, "{number:.1}");
    } else {
        let _ = write!(out, "{number}");
    }
}

/// A time as learn-druid writes it: quoted ISO-8601 with milliseconds and no zone (UTC).
pub fn push_time(out: &mut Vec<u8>, millis: i64) {
    const DAY: i64 = 86_400_000;
    let (year, month, day) = millrace_types::time::civil_from_days(millis.div_euclid(DAY));
    let ms = millis.rem_euclid(DAY);
    let _ = write!(
        out,
        "\"{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}\"",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
}

/// Text as a JSON string.
pub fn push_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out.push(b'"');
}

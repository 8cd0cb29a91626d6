//! What every native query shares: the datasource, intervals, granularity and context, and
//! writing them as Druid SQL.

use millrace_segments::spec::{Granularity, Period};
use millrace_segments::time::{format_iso, parse_iso};
use serde_json::{Map, Value};

use super::NativeError;
use crate::functions::shift;

/// A SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A SQL timestamp of epoch milliseconds: folded to a constant when planned, so `__time`
/// bounds still skip segments; millisecond timestamps reach years a SQL timestamp literal's
/// nanoseconds do not (Druid queries often say `1000/3000`).
pub fn time_literal(millis: i64) -> String {
    format!("MILLIS_TO_TIMESTAMP({millis})")
}

pub fn invalid(message: impl Into<String>) -> NativeError {
    NativeError::Invalid(message.into())
}

/// A query's field that must be a string.
pub fn string<'a>(query: &'a Value, field: &str) -> Result<&'a str, NativeError> {
    query
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("'{field}' is required and must be a string")))
}

/// The datasource's name (`"name"` or `{"type": "table", "name": ...}`).
pub fn datasource(query: &Value) -> Result<String, NativeError> {
    match query.get("dataSource") {
        Some(Value::String(name)) => Ok(name.clone()),
        Some(Value::Object(object)) => match (
            object.get("type").and_then(Value::as_str),
            object.get("name"),
        ) {
            (Some("table"), Some(Value::String(name))) => Ok(name.clone()),
            (kind, _) => Err(invalid(format!(
                "dataSource of type {} is not supported; use a table name",
                kind.unwrap_or("?")
            ))),
        },
        _ => Err(invalid("'dataSource' is required: a table name")),
    }
}

/// An ISO-8601 time, also a year alone (`1000/3000` is a common interval in Druid queries).
fn instant(text: &str) -> Option<i64> {
    let text = text.trim();
    match text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()) {
        true => parse_iso(&format!("{text}-01-01")),
        false => parse_iso(text),
    }
}

/// One ISO-8601 interval: `start/end`, `start/period` or `period/end`.
fn interval(text: &str) -> Result<(i64, i64), NativeError> {
    let bad = || invalid(format!("'{text}' is not an ISO-8601 interval"));
    let (left, right) = text.trim().split_once('/').ok_or_else(bad)?;
    let period = |p: &str| Period::parse(p).map_err(|_| bad());
    let (start, end) = match (left.starts_with(['P', 'p']), right.starts_with(['P', 'p'])) {
        (false, false) => (
            instant(left).ok_or_else(bad)?,
            instant(right).ok_or_else(bad)?,
        ),
        (false, true) => {
            let start = instant(left).ok_or_else(bad)?;
            (start, shift(start, &period(right)?, 1))
        }
        (true, false) => {
            let end = instant(right).ok_or_else(bad)?;
            (shift(end, &period(left)?, -1), end)
        }
        (true, true) => return Err(bad()),
    };
    if end < start {
        return Err(invalid(format!("interval '{text}' ends before it starts")));
    }
    Ok((start, end))
}

/// The query's intervals: a list, one string (split at commas), or `{"type": "intervals",
/// "intervals": [...]}`; none (all time) when absent and not required.
pub fn intervals(query: &Value, required: bool) -> Result<Vec<(i64, i64)>, NativeError> {
    let texts: Vec<&str> = match query.get("intervals") {
        None | Some(Value::Null) if !required => return Ok(Vec::new()),
        None | Some(Value::Null) => return Err(invalid("'intervals' is required")),
        Some(Value::String(text)) => text.split(',').collect(),
        Some(Value::Array(items)) => items.iter().map(|i| i.as_str().unwrap_or("")).collect(),
        Some(Value::Object(object)) => object
            .get("intervals")
            .and_then(Value::as_array)
            .map(|items| items.iter().map(|i| i.as_str().unwrap_or("")).collect())
            .ok_or_else(|| invalid("'intervals' of type intervals needs an 'intervals' list"))?,
        Some(_) => return Err(invalid("'intervals' must be a list of ISO-8601 intervals")),
    };
    texts.into_iter().map(interval).collect()
}

/// The query's granularity (`all` when absent).
pub fn granularity(query: &Value) -> Result<Granularity, NativeError> {
    match query.get("granularity") {
        None | Some(Value::Null) => Ok(Granularity::All),
        Some(value) => {
            serde_json::from_value(value.clone()).map_err(|e| invalid(format!("granularity: {e}")))
        }
    }
}

/// The SQL of a row's time bucket; None for `all`.
pub fn bucket_sql(granularity: &Granularity) -> Option<String> {
    match granularity {
        Granularity::All => None,
        Granularity::None => Some(ident("__time")),
        Granularity::Period {
            period,
            origin_millis,
        } => Some(format!(
            "TIME_FLOOR({}, {}, {})",
            ident("__time"),
            literal(&period.to_string()),
            time_literal(*origin_millis)
        )),
    }
}

/// `WHERE` over the intervals (none: all time) and the filter.
pub fn where_clause(
    intervals: &[(i64, i64)],
    filter: Option<&Value>,
) -> Result<String, NativeError> {
    let time = ident("__time");
    let ranges: Vec<String> = intervals
        .iter()
        .map(|(start, end)| {
            format!(
                "({time} >= {} AND {time} < {})",
                time_literal(*start),
                time_literal(*end)
            )
        })
        .collect();
    let mut clause = match ranges.is_empty() {
        true => "WHERE TRUE".to_string(),
        false => format!("WHERE ({})", ranges.join(" OR ")),
    };
    if let Some(filter) = filter.filter(|f| !f.is_null()) {
        clause.push_str(&format!(" AND ({})", super::filter::to_sql(filter)?));
    }
    Ok(clause)
}

/// A context flag: true or "true".
pub fn context_flag(query: &Value, name: &str) -> bool {
    match query.get("context").and_then(|c| c.get(name)) {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::String(text)) => text.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A whole-number field, if present.
pub fn count_field(query: &Value, field: &str) -> Result<Option<usize>, NativeError> {
    match query.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| invalid(format!("'{field}' must be a whole number"))),
    }
}

/// A row of a SQL answer by column name.
pub type Row = Map<String, Value>;

/// The ISO text of a bucket's start as Druid writes timestamps.
pub fn timestamp(millis: i64) -> Value {
    Value::String(format_iso(millis))
}

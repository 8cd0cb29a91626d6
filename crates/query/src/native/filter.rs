//! Druid's native filters as SQL conditions: selector, equals, null, in, bound, range, and,
//! or, not, like, regex, search, interval, columnComparison, true and false. Extraction
//! functions, expression and JavaScript filters are refused with a clear error.

use serde_json::Value;

use super::NativeError;
use super::common::{ident, invalid, literal, string, time_literal};

/// A filter's column: `dimension` (older filters) or `column` (newer ones).
fn column(filter: &Value) -> Result<String, NativeError> {
    filter
        .get("dimension")
        .or_else(|| filter.get("column"))
        .and_then(Value::as_str)
        .map(ident)
        .ok_or_else(|| invalid(format!("filter {filter} names no 'dimension'")))
}

/// A value as a SQL literal: text quoted, numbers as they are.
fn value_literal(value: &Value) -> Result<String, NativeError> {
    match value {
        Value::String(text) => Ok(literal(text)),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string().to_uppercase()),
        other => Err(invalid(format!("{other} cannot be compared"))),
    }
}

/// A comparison of `column` with a bound, numeric when the ordering says so.
fn bound_side(column: &str, op: &str, value: &Value, numeric: bool) -> Result<String, NativeError> {
    if numeric {
        let number = match value {
            Value::Number(n) => n.as_f64(),
            Value::String(text) => text.trim().parse::<f64>().ok(),
            _ => None,
        }
        .ok_or_else(|| invalid(format!("bound {value} is not a number")))?;
        Ok(format!("CAST({column} AS DOUBLE) {op} {number:?}"))
    } else {
        let text = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        Ok(format!("CAST({column} AS VARCHAR) {op} {}", literal(&text)))
    }
}

/// The SQL condition of a native filter.
pub fn to_sql(filter: &Value) -> Result<String, NativeError> {
    if filter.get("extractionFn").is_some_and(|f| !f.is_null()) {
        return Err(invalid("filters with an extractionFn are not supported"));
    }
    let kind = string(filter, "type")?;
    let list = |field: &str| -> Result<Vec<String>, NativeError> {
        filter
            .get(field)
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(format!("{kind} filter needs a '{field}' list")))?
            .iter()
            .map(to_sql)
            .collect()
    };
    Ok(match kind {
        "selector" => {
            let column = column(filter)?;
            match filter.get("value") {
                None | Some(Value::Null) => format!("{column} IS NULL"),
                Some(value) => format!("{column} = {}", value_literal(value)?),
            }
        }
        "equals" => {
            let value = filter
                .get("matchValue")
                .filter(|v| !v.is_null())
                .ok_or_else(|| invalid("equals filter needs a 'matchValue'"))?;
            format!("{} = {}", column(filter)?, value_literal(value)?)
        }
        "null" => format!("{} IS NULL", column(filter)?),
        "in" => {
            let column = column(filter)?;
            let values = filter
                .get("values")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("in filter needs a 'values' list"))?;
            let mut parts = Vec::new();
            let listed: Vec<String> = values
                .iter()
                .filter(|v| !v.is_null())
                .map(value_literal)
                .collect::<Result<_, _>>()?;
            if !listed.is_empty() {
                parts.push(format!("{column} IN ({})", listed.join(", ")));
            }
            if values.iter().any(Value::is_null) {
                parts.push(format!("{column} IS NULL"));
            }
            match parts.is_empty() {
                true => "FALSE".to_string(),
                false => format!("({})", parts.join(" OR ")),
            }
        }
        "bound" => {
            let column = column(filter)?;
            let ordering = filter
                .get("ordering")
                .and_then(|o| o.as_str().or_else(|| o.get("type")?.as_str()));
            let numeric = matches!(ordering, Some("numeric" | "alphanumeric"))
                || filter.get("alphaNumeric").and_then(Value::as_bool) == Some(true);
            let strict = |field: &str| filter.get(field).and_then(Value::as_bool) == Some(true);
            let mut parts = Vec::new();
            if let Some(lower) = filter.get("lower").filter(|v| !v.is_null()) {
                parts.push(bound_side(
                    &column,
                    if strict("lowerStrict") { ">" } else { ">=" },
                    lower,
                    numeric,
                )?);
            }
            if let Some(upper) = filter.get("upper").filter(|v| !v.is_null()) {
                parts.push(bound_side(
                    &column,
                    if strict("upperStrict") { "<" } else { "<=" },
                    upper,
                    numeric,
                )?);
            }
            match parts.is_empty() {
                true => format!("{column} IS NOT NULL"),
                false => format!("({})", parts.join(" AND ")),
            }
        }
        "range" => {
            let column = column(filter)?;
            let open = |field: &str| filter.get(field).and_then(Value::as_bool) == Some(true);
            let mut parts = Vec::new();
            if let Some(lower) = filter.get("lower").filter(|v| !v.is_null()) {
                parts.push(format!(
                    "{column} {} {}",
                    if open("lowerOpen") { ">" } else { ">=" },
                    value_literal(lower)?
                ));
            }
            if let Some(upper) = filter.get("upper").filter(|v| !v.is_null()) {
                parts.push(format!(
                    "{column} {} {}",
                    if open("upperOpen") { "<" } else { "<=" },
                    value_literal(upper)?
                ));
            }
            if parts.is_empty() {
                return Err(invalid("range filter needs 'lower' or 'upper'"));
            }
            format!("({})", parts.join(" AND "))
        }
        // An empty `and` holds for every row and an empty `or` for none, as in Druid.
        "and" => match list("fields")? {
            parts if parts.is_empty() => "TRUE".to_string(),
            parts => format!("({})", parts.join(" AND ")),
        },
        "or" => match list("fields")? {
            parts if parts.is_empty() => "FALSE".to_string(),
            parts => format!("({})", parts.join(" OR ")),
        },
        "not" => {
            let inner = filter
                .get("field")
                .ok_or_else(|| invalid("not filter needs a 'field'"))?;
            format!("(NOT {})", to_sql(inner)?)
        }
        "like" => {
            let mut condition = format!(
                "{} LIKE {}",
                column(filter)?,
                literal(string(filter, "pattern")?)
            );
            if let Some(escape) = filter.get("escape").and_then(Value::as_str) {
                condition.push_str(&format!(" ESCAPE {}", literal(escape)));
            }
            condition
        }
        "regex" => format!(
            "regexp_like({}, {})",
            column(filter)?,
            literal(string(filter, "pattern")?)
        ),
        "search" => {
            let query = filter
                .get("query")
                .ok_or_else(|| invalid("search filter needs a 'query'"))?;
            let case_sensitive = query.get("caseSensitive").and_then(Value::as_bool) == Some(true)
                && string(query, "type")? != "insensitive_contains";
            let values: Vec<&str> = match string(query, "type")? {
                "contains" | "insensitive_contains" => vec![string(query, "value")?],
                "fragment" => query
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default(),
                other => {
                    return Err(invalid(format!(
                        "search query type '{other}' is not supported"
                    )));
                }
            };
            let column = column(filter)?;
            let (target, fold): (String, fn(&str) -> String) = match case_sensitive {
                true => (column, |v: &str| v.to_string()),
                false => (format!("lower({column})"), |v: &str| v.to_lowercase()),
            };
            let parts: Vec<String> = values
                .iter()
                .map(|v| format!("strpos({target}, {}) > 0", literal(&fold(v))))
                .collect();
            match parts.is_empty() {
                true => "TRUE".to_string(),
                false => format!("({})", parts.join(" AND ")),
            }
        }
        "interval" => {
            let column = column(filter)?;
            let intervals = super::common::intervals(filter, true)?;
            let value = match column.as_str() {
                "\"__time\"" => column.clone(),
                _ => format!("MILLIS_TO_TIMESTAMP(CAST({column} AS BIGINT))"),
            };
            let parts: Vec<String> = intervals
                .iter()
                .map(|(s, e)| {
                    format!(
                        "({value} >= {} AND {value} < {})",
                        time_literal(*s),
                        time_literal(*e)
                    )
                })
                .collect();
            format!("({})", parts.join(" OR "))
        }
        "columnComparison" => {
            let columns: Vec<String> = filter
                .get("dimensions")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("columnComparison filter needs 'dimensions'"))?
                .iter()
                .map(|d| {
                    d.as_str()
                        .or_else(|| d.get("dimension")?.as_str())
                        .map(|c| format!("CAST({} AS VARCHAR)", ident(c)))
                        .ok_or_else(|| invalid(format!("dimension {d} of columnComparison")))
                })
                .collect::<Result<_, _>>()?;
            let pairs: Vec<String> = columns
                .windows(2)
                .map(|w| format!("{} = {}", w[0], w[1]))
                .collect();
            match pairs.is_empty() {
                true => "TRUE".to_string(),
                false => format!("({})", pairs.join(" AND ")),
            }
        }
        "true" => "TRUE".to_string(),
        "false" => "FALSE".to_string(),
        other => {
            return Err(invalid(format!(
                "filter type '{other}' is not supported (selector, equals, null, in, bound, range, and, or, not, like, regex, search, interval, columnComparison, true, false)"
            )));
        }
    })
}

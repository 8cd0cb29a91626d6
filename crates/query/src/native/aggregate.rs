//! Aggregators as SQL aggregate calls, and what is computed on the aggregated rows:
//! post-aggregators, having specs and the orderings of limit and metric specs.

use std::cmp::Ordering;

use serde_json::{Value, json};

use super::NativeError;
use super::common::{Row, ident, invalid, string};

/// One aggregator of a query: its output name and SQL.
pub struct Aggregator {
    pub name: String,
    pub sql: String,
    /// A count: 0, not null, in an empty bucket.
    pub is_count: bool,
    /// A distinct-count estimate, which Druid writes as a double unless `round` is set.
    pub estimate: bool,
}

impl Aggregator {
    /// The value of an empty bucket.
    pub fn empty_value(&self) -> Value {
        if self.is_count { json!(0) } else { Value::Null }
    }
}

/// The field an aggregator reads, as SQL cast to `cast` when given.
fn field(spec: &Value, cast: Option<&str>) -> Result<String, NativeError> {
    if spec.get("expression").is_some_and(|e| !e.is_null()) {
        return Err(invalid(
            "aggregators with an 'expression' are not supported; use 'fieldName'",
        ));
    }
    let name = ident(string(spec, "fieldName")?);
    Ok(match cast {
        Some(cast) => format!("CAST({name} AS {cast})"),
        None => name,
    })
}

/// (name, SQL, is a count, is an estimate) of an aggregator spec.
fn aggregator_sql(spec: &Value) -> Result<(Option<String>, String, bool, bool), NativeError> {
    let kind = string(spec, "type")?;
    let name = spec.get("name").and_then(Value::as_str).map(String::from);
    let round = spec.get("round").and_then(Value::as_bool) == Some(true);
    let sql = match kind {
        "count" => return Ok((name, "COUNT(*)".into(), true, false)),
        "longSum" => format!("SUM({})", field(spec, Some("BIGINT"))?),
        "doubleSum" | "floatSum" => format!("SUM({})", field(spec, Some("DOUBLE"))?),
        "longMin" => format!("MIN({})", field(spec, Some("BIGINT"))?),
        "longMax" => format!("MAX({})", field(spec, Some("BIGINT"))?),
        "doubleMin" | "floatMin" | "min" => format!("MIN({})", field(spec, Some("DOUBLE"))?),
        "doubleMax" | "floatMax" | "max" => format!("MAX({})", field(spec, Some("DOUBLE"))?),
        "doubleMean" => format!("AVG({})", field(spec, Some("DOUBLE"))?),
        "longFirst" | "doubleFirst" | "floatFirst" | "stringFirst" | "longAny" | "doubleAny"
        | "floatAny" | "stringAny" => format!("EARLIEST({})", field(spec, None)?),
        "longLast" | "doubleLast" | "floatLast" | "stringLast" => {
            format!("LATEST({})", field(spec, None)?)
        }
        "hyperUnique" | "thetaSketch" | "HLLSketchBuild" | "HLLSketchMerge" => {
            return Ok((
                name,
                format!("APPROX_COUNT_DISTINCT({})", field(spec, None)?),
                false,
                !round,
            ));
        }
        "cardinality" => {
            let fields: Vec<String> = spec
                .get("fields")
                .or_else(|| spec.get("fieldNames"))
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("cardinality aggregator needs 'fields'"))?
                .iter()
                .map(|f| {
                    f.as_str()
                        .or_else(|| f.get("dimension")?.as_str())
                        .map(|c| format!("CAST({} AS VARCHAR)", ident(c)))
                        .ok_or_else(|| invalid(format!("cardinality field {f}")))
                })
                .collect::<Result<_, _>>()?;
            let by_row = spec.get("byRow").and_then(Value::as_bool) == Some(true);
            let argument = match (fields.len(), by_row) {
                (1, _) => fields[0].clone(),
                (_, true) => format!("concat_ws('\u{1}', {})", fields.join(", ")),
                _ => {
                    return Err(invalid(
                        "cardinality over several fields is supported with byRow: true only",
                    ));
                }
            };
            return Ok((
                name,
                format!("APPROX_COUNT_DISTINCT({argument})"),
                false,
                !round,
            ));
        }
        "filtered" => {
            let inner = spec
                .get("aggregator")
                .ok_or_else(|| invalid("filtered aggregator needs an 'aggregator'"))?;
            let filter = spec
                .get("filter")
                .ok_or_else(|| invalid("filtered aggregator needs a 'filter'"))?;
            let (inner_name, sql, is_count, estimate) = aggregator_sql(inner)?;
            let condition = super::filter::to_sql(filter)?;
            return Ok((
                name.or(inner_name),
                format!("{sql} FILTER (WHERE {condition})"),
                is_count,
                estimate,
            ));
        }
        other => {
            return Err(invalid(format!(
                "aggregator type '{other}' is not supported (count, long/double/floatSum, Min, Max, First, Last, Any, doubleMean, cardinality, hyperUnique, thetaSketch, filtered)"
            )));
        }
    };
    Ok((name, sql, false, false))
}

/// The query's aggregators.
pub fn aggregators(query: &Value) -> Result<Vec<Aggregator>, NativeError> {
    let Some(specs) = query.get("aggregations").filter(|a| !a.is_null()) else {
        return Ok(Vec::new());
    };
    let specs = specs
        .as_array()
        .ok_or_else(|| invalid("'aggregations' must be a list"))?;
    specs
        .iter()
        .map(|spec| {
            let (name, sql, is_count, estimate) = aggregator_sql(spec)?;
            let name = name.ok_or_else(|| invalid(format!("aggregator {spec} has no 'name'")))?;
            Ok(Aggregator {
                name,
                sql,
                is_count,
                estimate,
            })
        })
        .collect()
}

/// The query's post-aggregators (name and spec), checked.
pub fn post_aggregators(query: &Value) -> Result<Vec<(String, Value)>, NativeError> {
    let Some(specs) = query.get("postAggregations").filter(|a| !a.is_null()) else {
        return Ok(Vec::new());
    };
    let specs = specs
        .as_array()
        .ok_or_else(|| invalid("'postAggregations' must be a list"))?;
    specs
        .iter()
        .map(|spec| {
            check_post(spec)?;
            let name = spec
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("post-aggregator {spec} has no 'name'")))?;
            Ok((name.to_string(), spec.clone()))
        })
        .collect()
}

fn check_post(spec: &Value) -> Result<(), NativeError> {
    match string(spec, "type")? {
        "arithmetic" | "doubleGreatest" | "doubleLeast" | "longGreatest" | "longLeast" => {
            for field in spec
                .get("fields")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid(format!("post-aggregator {spec} needs 'fields'")))?
            {
                check_post(field)?;
            }
            Ok(())
        }
        "fieldAccess" | "finalizingFieldAccess" | "hyperUniqueCardinality" => {
            string(spec, "fieldName").map(|_| ())
        }
        "constant" => spec
            .get("value")
            .filter(|v| v.is_number())
            .map(|_| ())
            .ok_or_else(|| invalid("constant post-aggregator needs a numeric 'value'")),
        other => Err(invalid(format!(
            "post-aggregator type '{other}' is not supported (arithmetic, fieldAccess, finalizingFieldAccess, constant, hyperUniqueCardinality, double/longGreatest, double/longLeast)"
        ))),
    }
}

fn evaluate(spec: &Value, row: &Row) -> Value {
    let numbers = || -> Vec<Option<f64>> {
        spec.get("fields")
            .and_then(Value::as_array)
            .map(|fields| fields.iter().map(|f| evaluate(f, row).as_f64()).collect())
            .unwrap_or_default()
    };
    match spec.get("type").and_then(Value::as_str).unwrap_or("") {
        "fieldAccess" | "finalizingFieldAccess" | "hyperUniqueCardinality" => spec
            .get("fieldName")
            .and_then(Value::as_str)
            .and_then(|name| row.get(name))
            .cloned()
            .unwrap_or(Value::Null),
        "constant" => spec.get("value").cloned().unwrap_or(Value::Null),
        "arithmetic" => {
            let values = numbers();
            if values.iter().any(Option::is_none) || values.is_empty() {
                return Value::Null;
            }
            let fn_name = spec.get("fn").and_then(Value::as_str).unwrap_or("+");
            let mut values = values.into_iter().flatten();
            let first = values.next().unwrap_or(0.0);
            let result = values.fold(first, |acc, v| match fn_name {
                "+" => acc + v,
                "-" => acc - v,
                "*" => acc * v,
                // Druid's `/` answers 0 for a zero divisor; `quotient` divides as floats do.
                "/" if v == 0.0 => 0.0,
                "/" | "quotient" => acc / v,
                "pow" => acc.powf(v),
                _ => f64::NAN,
            });
            json!(result)
        }
        kind @ ("doubleGreatest" | "doubleLeast" | "longGreatest" | "longLeast") => {
            let present = numbers().into_iter().flatten();
            let pick = if kind.ends_with("Greatest") {
                present.fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
            } else {
                present.fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))))
            };
            match (pick, kind.starts_with("long")) {
                (Some(v), true) => json!(v as i64),
                (Some(v), false) => json!(v),
                (None, _) => Value::Null,
            }
        }
        _ => Value::Null,
    }
}

/// Adds the post-aggregators' values to a row, in order (later ones may read earlier ones).
pub fn apply_post(posts: &[(String, Value)], row: &mut Row) {
    for (name, spec) in posts {
        let value = evaluate(spec, row);
        row.insert(name.clone(), value);
    }
}

/// Whether a groupBy row passes a having spec.
pub fn having(spec: &Value, row: &Row) -> Result<bool, NativeError> {
    let compared = || -> Result<Option<Ordering>, NativeError> {
        let value = row
            .get(string(spec, "aggregation")?)
            .and_then(Value::as_f64);
        let target = spec
            .get("value")
            .and_then(Value::as_f64)
            .ok_or_else(|| invalid("having needs a numeric 'value'"))?;
        Ok(value.and_then(|v| v.partial_cmp(&target)))
    };
    let specs = |field: &str| -> Result<Vec<bool>, NativeError> {
        spec.get(field)
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(format!("having needs '{field}'")))?
            .iter()
            .map(|s| having(s, row))
            .collect()
    };
    Ok(match string(spec, "type")? {
        "greaterThan" => compared()? == Some(Ordering::Greater),
        "lessThan" => compared()? == Some(Ordering::Less),
        "equalTo" => compared()? == Some(Ordering::Equal),
        "dimSelector" => {
            let value = row
                .get(string(spec, "dimension")?)
                .cloned()
                .unwrap_or(Value::Null);
            text_of(&value) == spec.get("value").and_then(Value::as_str).map(String::from)
        }
        "and" => specs("havingSpecs")?.into_iter().all(|b| b),
        "or" => specs("havingSpecs")?.into_iter().any(|b| b),
        "not" => !having(
            spec.get("havingSpec")
                .ok_or_else(|| invalid("not having needs 'havingSpec'"))?,
            row,
        )?,
        "always" => true,
        "never" => false,
        other => return Err(invalid(format!("having type '{other}' is not supported"))),
    })
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// Compares two values by one of Druid's orderings (`lexicographic`, `alphanumeric`,
/// `numeric`, `strlen`, `version`); nulls first.
pub fn compare(a: &Value, b: &Value, ordering: &str) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64())
        && ordering != "strlen"
    {
        return x.total_cmp(&y);
    }
    let (x, y) = (
        text_of(a).unwrap_or_default(),
        text_of(b).unwrap_or_default(),
    );
    match ordering {
        "numeric" => match (x.trim().parse::<f64>(), y.trim().parse::<f64>()) {
            (Ok(p), Ok(q)) => p.total_cmp(&q),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            _ => x.cmp(&y),
        },
        "strlen" => x.len().cmp(&y.len()).then_with(|| x.cmp(&y)),
        "alphanumeric" | "version" => natural(&x, &y),
        _ => x.cmp(&y),
    }
}

/// Text compared with runs of digits as numbers (`a2` before `a10`).
fn natural(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (n, m) = (digits(a), digits(b));
                let (p, q) = (&a[..n], &b[..m]);
                let trim = |s: &[u8]| -> Vec<u8> {
                    s.iter().skip_while(|c| **c == b'0').copied().collect()
                };
                let (p, q) = (trim(p), trim(q));
                let order = p.len().cmp(&q.len()).then_with(|| p.cmp(&q));
                if order != Ordering::Equal {
                    return order;
                }
                a = &a[n..];
                b = &b[m..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

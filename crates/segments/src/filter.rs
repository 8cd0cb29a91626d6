//! Druid's native filters evaluated over a row: which rows a transformSpec keeps and which a
//! filtered aggregator counts.

use regex::Regex;
use serde_json::Value as Json;

use crate::expr::{Columns, ExprValue, like};
use crate::spec::{Filter, SpecError};

/// A filter ready to run: regular expressions compiled once.
#[derive(Debug, Clone)]
pub enum RowFilter {
    /// The column's value as text equals `value` (None: the value is null or empty).
    Selector {
        column: String,
        value: Option<String>,
    },
    /// Typed equality: numbers compare as numbers, text as text.
    Equals {
        column: String,
        value: ExprValue,
    },
    In {
        column: String,
        values: Vec<Option<String>>,
    },
    Range {
        column: String,
        lower: Option<ExprValue>,
        upper: Option<ExprValue>,
        lower_open: bool,
        upper_open: bool,
        numeric: bool,
    },
    Like {
        column: String,
        pattern: String,
    },
    Regex {
        column: String,
        regex: Regex,
    },
    And(Vec<RowFilter>),
    Or(Vec<RowFilter>),
    Not(Box<RowFilter>),
    Null {
        column: String,
    },
    Constant(bool),
}

fn json_text(value: &Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn json_value(value: &Json) -> ExprValue {
    match value {
        Json::Null => ExprValue::Null,
        Json::Number(n) => n.as_i64().map_or_else(
            || ExprValue::Double(n.as_f64().unwrap_or(f64::NAN)),
            ExprValue::Long,
        ),
        Json::String(s) => ExprValue::String(s.clone()),
        other => ExprValue::String(other.to_string()),
    }
}

/// The text of a value as a string dimension shows it (null stays null).
fn as_text(value: &ExprValue) -> Option<String> {
    match value {
        ExprValue::Null => None,
        ExprValue::String(s) => Some(s.clone()),
        ExprValue::Long(v) => Some(v.to_string()),
        ExprValue::Double(v) => Some(v.to_string()),
    }
}

fn as_number(value: &ExprValue) -> Option<f64> {
    match value {
        ExprValue::Long(v) => Some(*v as f64),
        ExprValue::Double(v) => Some(*v),
        ExprValue::String(s) => s.trim().parse().ok(),
        ExprValue::Null => None,
    }
}

impl RowFilter {
    /// Compiles a spec filter; `path` names it in errors (a bad regular expression).
    pub fn compile(filter: &Filter, path: &str) -> Result<RowFilter, SpecError> {
        Ok(match filter {
            Filter::Selector {
                dimension, value, ..
            } => RowFilter::Selector {
                column: dimension.clone(),
                value: value.as_ref().and_then(json_text).filter(|v| !v.is_empty()),
            },
            Filter::Equals {
                column,
                match_value,
                ..
            } => RowFilter::Equals {
                column: column.clone(),
                value: json_value(match_value),
            },
            Filter::In { dimension, values } => RowFilter::In {
                column: dimension.clone(),
                values: values
                    .iter()
                    .map(|v| v.as_ref().and_then(json_text))
                    .collect(),
            },
            Filter::Bound {
                dimension,
                lower,
                upper,
                lower_strict,
                upper_strict,
                ordering,
            } => RowFilter::Range {
                column: dimension.clone(),
                lower: lower.as_ref().map(json_value),
                upper: upper.as_ref().map(json_value),
                lower_open: *lower_strict,
                upper_open: *upper_strict,
                numeric: ordering
                    .as_deref()
                    .is_some_and(|o| o.eq_ignore_ascii_case("numeric")),
            },
            Filter::Range {
                column,
                match_value_type,
                lower,
                upper,
                lower_open,
                upper_open,
            } => RowFilter::Range {
                column: column.clone(),
                lower: lower.as_ref().map(json_value),
                upper: upper.as_ref().map(json_value),
                lower_open: *lower_open,
                upper_open: *upper_open,
                numeric: matches!(
                    match_value_type.to_ascii_uppercase().as_str(),
                    "LONG" | "DOUBLE" | "FLOAT"
                ),
            },
            Filter::Like {
                dimension,
                pattern,
                escape,
            } => RowFilter::Like {
                column: dimension.clone(),
                pattern: match escape.as_deref() {
                    // The matcher escapes with a backslash: translate another escape character.
                    Some(e) if e != "\\" && !e.is_empty() => pattern.replace(e, "\\"),
                    _ => pattern.clone(),
                },
            },
            Filter::Regex { dimension, pattern } => RowFilter::Regex {
                column: dimension.clone(),
                regex: Regex::new(pattern).map_err(|e| SpecError {
                    path: format!("{path}.pattern"),
                    message: format!("invalid regular expression: {e}"),
                })?,
            },
            Filter::And { fields } => RowFilter::And(Self::compile_all(fields, path)?),
            Filter::Or { fields } => RowFilter::Or(Self::compile_all(fields, path)?),
            Filter::Not { field } => {
                RowFilter::Not(Box::new(Self::compile(field, &format!("{path}.field"))?))
            }
            Filter::Null { column } => RowFilter::Null {
                column: column.clone(),
            },
            Filter::True => RowFilter::Constant(true),
            Filter::False => RowFilter::Constant(false),
        })
    }

    fn compile_all(filters: &[Filter], path: &str) -> Result<Vec<RowFilter>, SpecError> {
        filters
            .iter()
            .enumerate()
            .map(|(i, f)| Self::compile(f, &format!("{path}.fields[{i}]")))
            .collect()
    }

    /// True when the row passes.
    pub fn matches(&self, row: &dyn Columns) -> bool {
        match self {
            RowFilter::Selector { column, value } => {
                as_text(&row.column(column)).filter(|v| !v.is_empty()) == *value
            }
            RowFilter::Equals { column, value } => {
                let actual = row.column(column);
                match (as_number(value), value) {
                    (Some(expected), ExprValue::Long(_) | ExprValue::Double(_)) => {
                        as_number(&actual) == Some(expected)
                    }
                    _ => as_text(&actual) == as_text(value),
                }
            }
            RowFilter::In { column, values } => values.contains(&as_text(&row.column(column))),
            RowFilter::Range {
                column,
                lower,
                upper,
                lower_open,
                upper_open,
                numeric,
            } => {
                let actual = row.column(column);
                if actual == ExprValue::Null {
                    return false;
                }
                let ordering = |bound: &ExprValue| -> Option<std::cmp::Ordering> {
                    if *numeric {
                        as_number(&actual)?.partial_cmp(&as_number(bound)?)
                    } else {
                        Some(as_text(&actual)?.cmp(&as_text(bound)?))
                    }
                };
                let above = lower.as_ref().is_none_or(|l| {
                    ordering(l).is_some_and(|o| if *lower_open { o.is_gt() } else { o.is_ge() })
                });
                let below = upper.as_ref().is_none_or(|u| {
                    ordering(u).is_some_and(|o| if *upper_open { o.is_lt() } else { o.is_le() })
                });
                above && below
            }
            RowFilter::Like { column, pattern } => {
                as_text(&row.column(column)).is_some_and(|t| like(&t, pattern))
            }
            RowFilter::Regex { column, regex } => {
                as_text(&row.column(column)).is_some_and(|t| regex.is_match(&t))
            }
            RowFilter::And(filters) => filters.iter().all(|f| f.matches(row)),
            RowFilter::Or(filters) => filters.iter().any(|f| f.matches(row)),
            RowFilter::Not(filter) => !filter.matches(row),
            RowFilter::Null { column } => row.column(column) == ExprValue::Null,
            RowFilter::Constant(value) => *value,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    struct Row(HashMap<&'static str, ExprValue>);

    impl Columns for Row {
        fn column(&self, name: &str) -> ExprValue {
            self.0.get(name).cloned().unwrap_or(ExprValue::Null)
        }
    }

    fn row() -> Row {
        Row(HashMap::from([
            ("user", ExprValue::String("willow".into())),
            ("views", ExprValue::Long(120)),
            ("score", ExprValue::Double(2.5)),
            ("empty", ExprValue::String(String::new())),
        ]))
    }

    fn passes(filter: serde_json::Value) -> bool {
        let filter: Filter = serde_json::from_value(filter).unwrap();
        RowFilter::compile(&filter, "filter")
            .unwrap()
            .matches(&row())
    }

    #[test]
    fn each_filter_type() {
        assert!(passes(
            json!({"type": "selector", "dimension": "user", "value": "willow"})
        ));
        assert!(passes(
            json!({"type": "selector", "dimension": "views", "value": "120"})
        ));
        assert!(passes(
            json!({"type": "selector", "dimension": "missing", "value": null})
        ));
        assert!(
            passes(json!({"type": "selector", "dimension": "empty", "value": ""})),
            "empty is null"
        );
        assert!(passes(
            json!({"type": "equals", "column": "views", "matchValueType": "LONG", "matchValue": 120})
        ));
        assert!(!passes(
            json!({"type": "equals", "column": "score", "matchValueType": "DOUBLE", "matchValue": 2})
        ));
        assert!(passes(
            json!({"type": "in", "dimension": "user", "values": ["mia", "willow"]})
        ));
        assert!(!passes(
            json!({"type": "in", "dimension": "user", "values": ["mia"]})
        ));
        assert!(passes(
            json!({"type": "bound", "dimension": "views", "lower": "100", "upper": "120", "ordering": "numeric"})
        ));
        assert!(!passes(
            json!({"type": "bound", "dimension": "views", "lower": "100", "upper": "120", "upperStrict": true, "ordering": "numeric"})
        ));
        assert!(
            !passes(json!({"type": "bound", "dimension": "views", "lower": "2"})),
            "lexicographic: '120' < '2'"
        );
        assert!(passes(
            json!({"type": "range", "column": "score", "matchValueType": "DOUBLE", "lower": 2, "upper": 3, "lowerOpen": true})
        ));
        assert!(!passes(
            json!({"type": "range", "column": "missing", "matchValueType": "LONG", "lower": 0})
        ));
        assert!(passes(
            json!({"type": "like", "dimension": "user", "pattern": "wil%"})
        ));
        assert!(passes(
            json!({"type": "regex", "dimension": "user", "pattern": "^w.*w$"})
        ));
        assert!(passes(json!({"type": "null", "column": "missing"})));
        assert!(passes(json!({"type": "and", "fields": [
            {"type": "not", "field": {"type": "null", "column": "user"}},
            {"type": "or", "fields": [{"type": "false"}, {"type": "true"}]}
        ]})));
    }

    #[test]
    fn a_bad_regex_names_its_place() {
        let filter: Filter = serde_json::from_value(json!({"type": "and", "fields": [
            {"type": "regex", "dimension": "user", "pattern": "(unclosed"}
        ]}))
        .unwrap();
        let err = RowFilter::compile(&filter, "spec.dataSchema.transformSpec.filter").unwrap_err();
        assert_eq!(
            err.path,
            "spec.dataSchema.transformSpec.filter.fields[0].pattern"
        );
        assert!(
            err.message.starts_with("invalid regular expression"),
            "{}",
            err.message
        );
    }
}

//! Metric aggregation and rollup: rows whose query-granularity time and dimension values are
//! equal combine into one, each metric aggregating its inputs. Without rollup every row stays
//! a row, its metrics aggregated over itself alone (as Druid does); such rows are kept in
//! columns (`memory_rows`), not here.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::expr::ExprValue;
use crate::spec::{Aggregator, Granularity};
use crate::time::stored_time;
use crate::transform::{DimValue, IngestRow};

/// What a metric computes, and the type of its result (named as Druid's aggregator types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MetricKind {
    Count,
    LongSum,
    DoubleSum,
    LongMin,
    LongMax,
    DoubleMin,
    DoubleMax,
    LongFirst,
    LongLast,
    DoubleFirst,
    DoubleLast,
    StringFirst,
    StringLast,
}

impl MetricKind {
    /// The kind of an aggregator (a filtered one takes its inner aggregator's; float
    /// aggregators compute in doubles).
    pub fn of(aggregator: &Aggregator) -> MetricKind {
        use MetricKind::*;
        match aggregator {
            Aggregator::Count { .. } => Count,
            Aggregator::LongSum(_) => LongSum,
            Aggregator::DoubleSum(_) | Aggregator::FloatSum(_) => DoubleSum,
            Aggregator::LongMin(_) => LongMin,
            Aggregator::LongMax(_) => LongMax,
            Aggregator::DoubleMin(_) | Aggregator::FloatMin(_) => DoubleMin,
            Aggregator::DoubleMax(_) | Aggregator::FloatMax(_) => DoubleMax,
            Aggregator::LongFirst(_) => LongFirst,
            Aggregator::LongLast(_) => LongLast,
            Aggregator::DoubleFirst(_) | Aggregator::FloatFirst(_) => DoubleFirst,
            Aggregator::DoubleLast(_) | Aggregator::FloatLast(_) => DoubleLast,
            Aggregator::StringFirst(_) => StringFirst,
            Aggregator::StringLast(_) => StringLast,
            Aggregator::Filtered { aggregator, .. } => MetricKind::of(aggregator),
        }
    }

    pub(crate) fn start(self) -> MetricValue {
        match self {
            MetricKind::Count | MetricKind::LongSum => MetricValue::Long(0),
            MetricKind::DoubleSum => MetricValue::Double(0.0),
            _ => MetricValue::Null,
        }
    }
}

/// A metric's value so far.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    Null,
    Long(i64),
    Double(f64),
    String(String),
    /// A first/last value and the row time that chose it.
    Timed(i64, Box<MetricValue>),
}

fn as_long(v: &ExprValue) -> Option<i64> {
    match v {
        ExprValue::Long(l) => Some(*l),
        ExprValue::Double(d) => Some(*d as i64),
        ExprValue::String(s) => s
            .trim()
            .parse()
            .ok()
            .or_else(|| s.trim().parse::<f64>().ok().map(|d| d as i64)),
        ExprValue::Null => None,
    }
}

fn as_double(v: &ExprValue) -> Option<f64> {
    match v {
        ExprValue::Long(l) => Some(*l as f64),
        ExprValue::Double(d) => Some(*d),
        ExprValue::String(s) => s.trim().parse().ok(),
        ExprValue::Null => None,
    }
}

impl MetricValue {
    /// Adds one input (None: a filtered aggregator skips the row; null inputs count for count
    /// only).
    pub(crate) fn add(&mut self, kind: MetricKind, time: i64, input: Option<&ExprValue>) {
        let Some(input) = input else { return };
        use MetricKind::*;
        match kind {
            Count => self.combine_long(1, i64::wrapping_add),
            LongSum => {
                if let Some(v) = as_long(input) {
                    self.combine_long(v, i64::wrapping_add);
                }
            }
            DoubleSum => {
                if let Some(v) = as_double(input) {
                    self.combine_double(v, |a, b| a + b);
                }
            }
            LongMin => {
                if let Some(v) = as_long(input) {
                    self.combine_long(v, i64::min);
                }
            }
            LongMax => {
                if let Some(v) = as_long(input) {
                    self.combine_long(v, i64::max);
                }
            }
            DoubleMin => {
                if let Some(v) = as_double(input) {
                    self.combine_double(v, f64::min);
                }
            }
            DoubleMax => {
                if let Some(v) = as_double(input) {
                    self.combine_double(v, f64::max);
                }
            }
            LongFirst | LongLast | DoubleFirst | DoubleLast | StringFirst | StringLast => {
                let value = match kind {
                    LongFirst | LongLast => {
                        as_long(input).map_or(MetricValue::Null, MetricValue::Long)
                    }
                    DoubleFirst | DoubleLast => {
                        as_double(input).map_or(MetricValue::Null, MetricValue::Double)
                    }
                    _ => match input {
                        ExprValue::Null => MetricValue::Null,
                        ExprValue::String(s) => MetricValue::String(s.clone()),
                        ExprValue::Long(l) => MetricValue::String(l.to_string()),
                        ExprValue::Double(d) => MetricValue::String(d.to_string()),
                    },
                };
                let first = matches!(kind, LongFirst | DoubleFirst | StringFirst);
                let replace = match self {
                    MetricValue::Timed(t, _) => {
                        if first {
                            time < *t
                        } else {
                            time >= *t
                        }
                    }
                    _ => true,
                };
                if replace {
                    *self = MetricValue::Timed(time, Box::new(value));
                }
            }
        }
    }

    fn combine_long(&mut self, v: i64, f: fn(i64, i64) -> i64) {
        *self = match self {
            MetricValue::Long(current) => MetricValue::Long(f(*current, v)),
            _ => MetricValue::Long(v),
        };
    }

    fn combine_double(&mut self, v: f64, f: fn(f64, f64) -> f64) {
        *self = match self {
            MetricValue::Double(current) => MetricValue::Double(f(*current, v)),
            _ => MetricValue::Double(v),
        };
    }

    /// The stored value (first/last without their times).
    pub fn finish(&self) -> MetricValue {
        match self {
            MetricValue::Timed(_, v) => (**v).clone(),
            other => other.clone(),
        }
    }
}

/// A stored row: time, dimension values and metric values.
#[derive(Debug, Clone, PartialEq)]
pub struct RolledRow {
    pub time: i64,
    pub dimensions: Vec<DimValue<'static>>,
    pub metrics: Vec<MetricValue>,
}

/// Dimension values as a hashable key (doubles by their bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyPart {
    Null,
    String(String),
    Long(i64),
    Double(u64),
}

/// Rows of one time chunk being rolled up.
#[derive(Debug, Clone)]
pub struct Accumulator {
    kinds: Vec<MetricKind>,
    query_granularity: Granularity,
    chunk_start: i64,
    rows: Vec<RolledRow>,
    index: HashMap<(i64, Vec<KeyPart>), usize>,
}

impl Accumulator {
    /// No rows yet, for a time chunk starting at `chunk_start`.
    pub fn new(
        metrics: &[Aggregator],
        query_granularity: Granularity,
        chunk_start: i64,
    ) -> Accumulator {
        Accumulator {
            kinds: metrics.iter().map(MetricKind::of).collect(),
            query_granularity,
            chunk_start,
            rows: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Adds a row: rolled into an equal one, or stored as a new row.
    pub fn add(&mut self, row: IngestRow<'_>) {
        let time = stored_time(row.time, &self.query_granularity, self.chunk_start);
        // Trailing nulls are left out: a row stored before discovery added a dimension is
        // shorter, and equals a later row that is null there.
        let width = row
            .dimensions
            .iter()
            .rposition(|d| *d != DimValue::Null)
            .map_or(0, |i| i + 1);
        let key: Vec<KeyPart> = row.dimensions[..width]
            .iter()
            .map(|d| match d {
                DimValue::Null => KeyPart::Null,
                DimValue::Text(s) => KeyPart::String(s.to_string()),
                DimValue::Long(l) => KeyPart::Long(*l),
                DimValue::Double(f) => KeyPart::Double(f.to_bits()),
            })
            .collect();
        let slot = match self.index.entry((time, key)) {
            Entry::Occupied(found) => *found.get(),
            Entry::Vacant(new) => {
                new.insert(self.rows.len());
                let owned = row.dimensions.into_iter().map(DimValue::into_owned);
                self.push(time, owned.collect())
            }
        };
        let stored = &mut self.rows[slot];
        for ((metric, kind), input) in stored
            .metrics
            .iter_mut()
            .zip(&self.kinds)
            .zip(&row.metric_inputs)
        {
            metric.add(*kind, row.time, input.as_ref());
        }
    }

    fn push(&mut self, time: i64, dimensions: Vec<DimValue<'static>>) -> usize {
        self.rows.push(RolledRow {
            time,
            dimensions,
            metrics: self.kinds.iter().map(|k| k.start()).collect(),
        });
        self.rows.len() - 1
    }

    /// Stored rows so far.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Forgets every row (after they were persisted).
    pub fn clear(&mut self) {
        self.rows.clear();
        self.index.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows, with first/last metrics finished.
    pub fn rows(&self) -> impl Iterator<Item = RolledRow> + '_ {
        self.rows.iter().map(|r| RolledRow {
            time: r.time,
            dimensions: r.dimensions.clone(),
            metrics: r.metrics.iter().map(MetricValue::finish).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn metrics() -> Vec<Aggregator> {
        serde_json::from_value(json!([
            {"type": "count", "name": "count"},
            {"type": "longSum", "name": "views", "fieldName": "views"},
            {"type": "doubleMax", "name": "top", "fieldName": "score"},
            {"type": "longMin", "name": "low", "fieldName": "views"},
            {"type": "stringFirst", "name": "first_title", "fieldName": "title"},
            {"type": "longLast", "name": "last_views", "fieldName": "views"},
            {"type": "filtered", "filter": {"type": "true"}, "aggregator": {"type": "count", "name": "kept"}}
        ]))
        .unwrap()
    }

    fn row(
        time: i64,
        user: &str,
        views: i64,
        score: f64,
        title: &str,
        filtered: bool,
    ) -> IngestRow<'static> {
        let v = ExprValue::Long(views);
        IngestRow {
            time,
            dimensions: vec![DimValue::Text(user.to_string().into())],
            discovered: None,
            metric_inputs: vec![
                Some(ExprValue::Null),
                Some(v.clone()),
                Some(ExprValue::Double(score)),
                Some(v.clone()),
                Some(ExprValue::String(title.into())),
                Some(v),
                (!filtered).then_some(ExprValue::Null),
            ],
        }
    }

    #[test]
    fn rollup_combines_equal_truncated_rows() {
        let mut acc = Accumulator::new(&metrics(), Granularity::named("minute").unwrap(), 0);
        acc.add(row(60_000 + 30, "mia", 5, 1.5, "b", false));
        acc.add(row(60_000 + 10, "mia", 7, 0.5, "a", true));
        acc.add(row(60_000 + 50, "gus", 1, 9.0, "c", false));
        acc.add(row(120_000, "mia", 2, 2.0, "d", false));
        let rows: Vec<RolledRow> = acc.rows().collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].time, 60_000);
        assert_eq!(
            rows[0].metrics,
            vec![
                MetricValue::Long(2),
                MetricValue::Long(12),
                MetricValue::Double(1.5),
                MetricValue::Long(5),
                MetricValue::String("a".into()),
                MetricValue::Long(5),
                MetricValue::Long(1),
            ],
            "first by time is the row at +10 ('a'), last is the row at +30 (5)"
        );
        assert_eq!(rows[2].metrics[1], MetricValue::Long(2));
    }

    #[test]
    fn null_inputs_count_but_do_not_sum() {
        let mut acc = Accumulator::new(&metrics(), Granularity::None, 0);
        let mut r = row(1, "x", 0, 0.0, "t", false);
        r.metric_inputs[1] = Some(ExprValue::Null);
        r.metric_inputs[2] = Some(ExprValue::Null);
        acc.add(r);
        let rows: Vec<RolledRow> = acc.rows().collect();
        assert_eq!(rows[0].metrics[0], MetricValue::Long(1));
        assert_eq!(rows[0].metrics[1], MetricValue::Long(0));
        assert_eq!(
            rows[0].metrics[2],
            MetricValue::Null,
            "max of nothing is null"
        );
    }
}

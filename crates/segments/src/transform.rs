//! From input rows to the rows a datasource stores, in Druid's order: timestamp, transforms,
//! filter, then dimensions and metric inputs. Rows outside the late/early message rejection
//! window are thrown away, like rows the filter drops.

use crate::expr::{Columns, Expr, ExprValue};
use crate::filter::RowFilter;
use crate::input::{InputRow, Member, MemberReader};
use crate::spec::{Aggregator, DataSchema, DimensionType, InputFormat, KafkaIoConfig, SpecError};
use crate::time::{TimeValue, parse_iso, parse_timestamp};

/// The time column of every datasource.
pub const TIME_COLUMN: &str = "__time";

/// The earliest time a row may have: 0001-01-01T00:00:00Z (epoch milliseconds).
const EARLIEST_TIME: i64 = -62_135_596_800_000;
/// The latest time a row may have, 9999-12-31T23:59:59.999Z: every granularity bucket of a
/// row's time then stays within i64.
const LATEST_TIME: i64 = 253_402_300_799_999;

/// A dimension's value as stored: a member converted to the dimension's type (text for
/// string dimensions, a number for numeric ones, null what does not convert); text may be
/// borrowed from the record it was read from.
pub type DimValue<'a> = Member<'a>;

/// A row ready for the index: its time, dimension values and what each metric reads (in
/// metricsSpec order; None when a filtered aggregator's filter leaves the row out).
#[derive(Debug, Clone, PartialEq)]
pub struct IngestRow<'a> {
    pub time: i64,
    /// In the spec's dimension order, or in `discovered`'s order.
    pub dimensions: Vec<DimValue<'a>>,
    /// The names of `dimensions` when they were discovered from the row (no dimensions in
    /// the spec); None when the spec fixes them.
    pub discovered: Option<Vec<String>>,
    pub metric_inputs: Vec<Option<ExprValue>>,
}

/// What became of an input row.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<'a> {
    Row(IngestRow<'a>),
    /// Dropped by the filter or the rejection window (counted as thrownAway).
    ThrownAway,
    /// The row's time could not be read (counted as unparseable), and why.
    Unparseable(String),
}

/// How a metric finds its input.
#[derive(Debug, Clone)]
enum MetricInput {
    None,
    Column(String),
    Expression(Expr),
    Filtered(RowFilter, Box<MetricInput>),
}

impl MetricInput {
    fn read(&self, row: &dyn Columns) -> Option<ExprValue> {
        match self {
            MetricInput::None => Some(ExprValue::Null),
            MetricInput::Column(c) => Some(row.column(c)),
            MetricInput::Expression(e) => Some(e.eval(row)),
            MetricInput::Filtered(filter, inner) => {
                filter.matches(row).then(|| inner.read(row)).flatten()
            }
        }
    }

    /// The input column read, if it is a plain column.
    fn column(&self) -> Option<&str> {
        match self {
            MetricInput::Column(c) => Some(c),
            MetricInput::Filtered(_, inner) => inner.column(),
            _ => None,
        }
    }
}

/// A dataSchema compiled for rows.
#[derive(Debug, Clone)]
pub struct RowTransformer {
    timestamp_column: String,
    timestamp_format: crate::spec::TimestampFormat,
    missing_time: Option<i64>,
    transforms: Vec<(String, Expr)>,
    filter: Option<RowFilter>,
    /// Fixed dimensions; None when they are discovered from each row.
    dimensions: Option<Vec<(String, DimensionType)>>,
    /// For each fixed dimension, whether its value can be moved out of the input row instead
    /// of copied: no transform makes a column of its name and no metric reads its column
    /// (dimension names are unique: the spec check rejects one listed twice).
    movable: Vec<bool>,
    exclusions: Vec<String>,
    /// Discovered dimensions keep their value's type (useSchemaDiscovery) instead of string.
    discover_types: bool,
    metric_inputs: Vec<MetricInput>,
    late_rejection_ms: Option<i64>,
    early_rejection_ms: Option<i64>,
    /// Where rows find their values among the members read alone, when a row needs only
    /// named members of its record (see [`RowTransformer::member_reader`]).
    members: Option<MemberLayout>,
}

/// Where a row's values are among the members of its record read alone.
#[derive(Debug, Clone)]
struct MemberLayout {
    /// The members read, each once.
    names: Vec<String>,
    /// Which of them holds the time.
    time: usize,
    /// Each fixed dimension's member and type.
    dimensions: Vec<(usize, DimensionType)>,
    /// Each metric's member; None for a metric that reads none.
    metrics: Vec<Option<usize>>,
}

impl MemberLayout {
    /// The layout for fixed dimensions without transforms or filter, each metric reading a
    /// plain column or none; None otherwise, or when a dimension or metric reads `__time`
    /// (the row's time, not a member).
    fn new(
        timestamp_column: &str,
        dimensions: Option<&[(String, DimensionType)]>,
        has_transforms_or_filter: bool,
        metric_inputs: &[MetricInput],
    ) -> Option<MemberLayout> {
        let dimensions = dimensions?;
        let metric_columns = metric_columns(metric_inputs)?;
        let reads_time = dimensions.iter().any(|(name, _)| name == TIME_COLUMN)
            || metric_columns.contains(&Some(TIME_COLUMN));
        if has_transforms_or_filter || reads_time {
            return None;
        }
        let mut names: Vec<String> = vec![timestamp_column.to_string()];
        let mut place = |name: &str| match names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                names.push(name.to_string());
                names.len() - 1
            }
        };
        let dimensions = dimensions
            .iter()
            .map(|(name, kind)| (place(name), *kind))
            .collect();
        let metrics = metric_columns
            .iter()
            .map(|column| column.map(&mut place))
            .collect();
        Some(MemberLayout {
            names,
            time: 0,
            dimensions,
            metrics,
        })
    }
}

/// The row a transform or filter sees: the input row, `__time`, and values transforms set.
struct TransformRow<'a> {
    input: &'a InputRow,
    time: i64,
    computed: &'a [(String, ExprValue)],
}

impl Columns for TransformRow<'_> {
    fn column(&self, name: &str) -> ExprValue {
        if let Some((_, v)) = self.computed.iter().rev().find(|(n, _)| n == name) {
            return v.clone();
        }
        if name == TIME_COLUMN {
            return ExprValue::Long(self.time);
        }
        self.input.column(name)
    }
}

fn metric_input(aggregator: &Aggregator, path: &str) -> Result<MetricInput, SpecError> {
    let parse = |expression: &str| {
        Expr::parse(expression).map_err(|e| SpecError {
            path: format!("{path}.expression"),
            message: e.to_string(),
        })
    };
    Ok(match aggregator {
        Aggregator::Count { .. } => MetricInput::None,
        Aggregator::StringFirst(a) | Aggregator::StringLast(a) => {
            MetricInput::Column(a.field_name.clone())
        }
        Aggregator::Filtered {
            aggregator, filter, ..
        } => MetricInput::Filtered(
            RowFilter::compile(filter, &format!("{path}.filter"))?,
            Box::new(metric_input(aggregator, &format!("{path}.aggregator"))?),
        ),
        other => {
            let field = other.field().expect("field aggregators have fields");
            match (&field.field_name, &field.expression) {
                (Some(name), _) => MetricInput::Column(name.clone()),
                (None, Some(expression)) => MetricInput::Expression(parse(expression)?),
                (None, None) => MetricInput::None,
            }
        }
    })
}

impl RowTransformer {
    /// Compiles a data schema (and the rejection windows of its ioConfig).
    pub fn new(schema: &DataSchema, io: &KafkaIoConfig) -> Result<RowTransformer, SpecError> {
        let path = "spec.dataSchema";
        let spec = &schema.timestamp_spec;
        let missing_time = match &spec.missing_value {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => Some(parse_iso(s).ok_or_else(|| SpecError {
                path: format!("{path}.timestampSpec.missingValue"),
                message: format!("'{s}' is not an ISO-8601 time"),
            })?),
            Some(_) => {
                return Err(SpecError {
                    path: format!("{path}.timestampSpec.missingValue"),
                    message: "must be an ISO-8601 time or epoch milliseconds".into(),
                });
            }
        };
        let mut transforms = Vec::new();
        for (i, t) in schema.transform_spec.transforms.iter().enumerate() {
            let expr = Expr::parse(&t.expression).map_err(|e| SpecError {
                path: format!("{path}.transformSpec.transforms[{i}].expression"),
                message: e.to_string(),
            })?;
            transforms.push((t.name.clone(), expr));
        }
        let filter = schema
            .transform_spec
            .filter
            .as_ref()
            .map(|f| RowFilter::compile(f, &format!("{path}.transformSpec.filter")))
            .transpose()?;
        let declared = &schema.dimensions_spec.dimensions;
        let dimensions = (!declared.is_empty())
            .then(|| declared.iter().map(|d| (d.name.clone(), d.kind)).collect());
        let metric_inputs = schema
            .metrics_spec
            .iter()
            .enumerate()
            .map(|(i, m)| metric_input(m, &format!("{path}.metricsSpec[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        // Discovered dimensions leave out the time column, exclusions, metric inputs and
        // metric names (a column may not be both).
        let mut exclusions = schema.dimensions_spec.dimension_exclusions.clone();
        exclusions.push(spec.column.clone());
        exclusions.push(TIME_COLUMN.to_string());
        exclusions.extend(schema.metrics_spec.iter().map(|m| m.name().to_string()));
        for input in &metric_inputs {
            if let Some(c) = input.column() {
                exclusions.push(c.to_string());
            }
        }
        let movable = movable_dimensions(dimensions.as_deref(), &transforms, &metric_inputs);
        let members = MemberLayout::new(
            &spec.column,
            dimensions.as_deref(),
            !transforms.is_empty() || filter.is_some(),
            &metric_inputs,
        );
        let window = |p: &Option<crate::spec::Period>, field: &str| {
            p.map(|p| {
                p.fixed_millis()
                    .map(|ms| ms as i64)
                    .ok_or_else(|| SpecError {
                        path: format!("spec.ioConfig.{field}"),
                        message: "must be a fixed period (no months or years)".into(),
                    })
            })
            .transpose()
        };
        Ok(RowTransformer {
            timestamp_column: spec.column.clone(),
            timestamp_format: spec.format.clone(),
            missing_time,
            transforms,
            filter,
            dimensions,
            movable,
            exclusions,
            discover_types: schema.dimensions_spec.use_schema_discovery,
            metric_inputs,
            late_rejection_ms: window(
                &io.late_message_rejection_period,
                "lateMessageRejectionPeriod",
            )?,
            early_rejection_ms: window(
                &io.early_message_rejection_period,
                "earlyMessageRejectionPeriod",
            )?,
            members,
        })
    }

    /// A reader of only the members of a record its rows need, when they are known (fixed
    /// dimensions, no transforms or filter, metrics reading plain columns other than
    /// `__time`) and the format allows it (see [`MemberReader::new`]). What it reads goes
    /// through [`RowTransformer::apply_members`].
    pub fn member_reader(&self, format: &InputFormat) -> Option<MemberReader> {
        MemberReader::new(format, self.members.as_ref()?.names.clone())
    }

    /// Turns a record's members, read by [`RowTransformer::member_reader`]'s reader, into a
    /// stored row: the row [`RowTransformer::apply`] makes of an input row holding them. The
    /// dimensions' values move into the row, leaving nulls in `members`.
    ///
    /// # Panics
    /// When the transformer has no member reader (its rows need other columns).
    pub fn apply_members<'a>(&self, members: &mut [Member<'a>], now: i64) -> Outcome<'a> {
        let layout = self
            .members
            .as_ref()
            .expect("members are read only for rows that need no other column");
        debug_assert_eq!(members.len(), layout.names.len());
        let time = match self.read_time(Some(&members[layout.time])) {
            Ok(time) => time,
            Err(e) => return Outcome::Unparseable(e),
        };
        if let Err(e) = in_range(time) {
            return Outcome::Unparseable(e);
        }
        if self.rejected(time, now) {
            return Outcome::ThrownAway;
        }
        // Metrics read first: dimension values then move out (dimension names are unique).
        let metric_inputs = layout
            .metrics
            .iter()
            .map(|member| Some(member.map_or(ExprValue::Null, |i| members[i].clone().into())))
            .collect();
        let dimensions = layout
            .dimensions
            .iter()
            .map(|&(member, kind)| {
                dim_value(std::mem::replace(&mut members[member], Member::Null), kind)
            })
            .collect();
        Outcome::Row(IngestRow {
            time,
            dimensions,
            discovered: None,
            metric_inputs,
        })
    }

    /// The time of a row whose timestamp column holds `value` (None: the row has no such
    /// column).
    fn read_time(&self, value: Option<&Member<'_>>) -> Result<i64, String> {
        let format = &self.timestamp_format;
        match value {
            None | Some(Member::Null) => self.missing_time.ok_or_else(|| {
                format!(
                    "the timestamp column '{}' is missing",
                    self.timestamp_column
                )
            }),
            Some(Member::Text(s)) => parse_timestamp(TimeValue::Text(s), format),
            Some(Member::Long(v)) => parse_timestamp(TimeValue::Number(*v as f64), format),
            Some(Member::Double(v)) => parse_timestamp(TimeValue::Number(*v), format),
        }
    }

    /// Whether the rejection windows around `now` throw a row of this time away.
    fn rejected(&self, time: i64, now: i64) -> bool {
        self.late_rejection_ms.is_some_and(|late| time < now - late)
            || self
                .early_rejection_ms
                .is_some_and(|early| time > now + early)
    }

    /// The columns of an input row that discovery makes dimensions.
    fn discovered_names<'a>(&'a self, row: &'a InputRow) -> impl Iterator<Item = &'a str> {
        row.columns
            .iter()
            .map(|(n, _)| n.as_ref())
            .filter(|n| !self.exclusions.iter().any(|e| e == n))
    }

    /// Turns an input row into a stored row (taking values from it rather than copying them
    /// where nothing else reads them). `now` (epoch ms) anchors the rejection windows.
    pub fn apply(&self, mut input: InputRow, now: i64) -> Outcome<'static> {
        let time = self.read_time(input.get(&self.timestamp_column).map(Member::of).as_ref());
        let mut time = match time {
            Ok(t) => t,
            Err(e) => return Outcome::Unparseable(e),
        };
        let mut computed: Vec<(String, ExprValue)> = Vec::with_capacity(self.transforms.len());
        for (name, expr) in &self.transforms {
            let value = expr.eval(&TransformRow {
                input: &input,
                time,
                computed: &computed,
            });
            if name == TIME_COLUMN {
                match &value {
                    ExprValue::Long(t) => time = *t,
                    other => {
                        return Outcome::Unparseable(format!(
                            "the __time transform gave {other:?}, not a long"
                        ));
                    }
                }
            }
            computed.push((name.clone(), value));
        }
        if let Err(e) = in_range(time) {
            return Outcome::Unparseable(e);
        }
        let view = TransformRow {
            input: &input,
            time,
            computed: &computed,
        };
        if self.filter.as_ref().is_some_and(|f| !f.matches(&view)) {
            return Outcome::ThrownAway;
        }
        if self.rejected(time, now) {
            return Outcome::ThrownAway;
        }
        // Read first: dimension values move out of the row below (none that a metric reads).
        let metric_inputs = self.metric_inputs.iter().map(|m| m.read(&view)).collect();
        let (dimensions, discovered) = match &self.dimensions {
            Some(fixed) => (
                fixed
                    .iter()
                    .zip(&self.movable)
                    .map(|((name, kind), &movable)| {
                        let value = match movable {
                            true => input.take(name),
                            false => TransformRow {
                                input: &input,
                                time,
                                computed: &computed,
                            }
                            .column(name),
                        };
                        dim_value(value.into(), *kind)
                    })
                    .collect(),
                None,
            ),
            None => {
                let names: Vec<String> = self.discovered_names(&input).map(String::from).collect();
                let values = names
                    .iter()
                    .map(|name| {
                        let value = view.column(name);
                        let kind = match (&value, self.discover_types) {
                            (ExprValue::Long(_), true) => DimensionType::Long,
                            (ExprValue::Double(_), true) => DimensionType::Double,
                            _ => DimensionType::String,
                        };
                        dim_value(value.into(), kind)
                    })
                    .collect();
                (values, Some(names))
            }
        };
        Outcome::Row(IngestRow {
            time,
            dimensions,
            discovered,
            metric_inputs,
        })
    }
}

/// Which fixed dimensions can take their value out of the input row (see
/// `RowTransformer::movable`). Expression and filtered metrics may read any column, so with
/// one of them no dimension moves.
fn movable_dimensions(
    dimensions: Option<&[(String, DimensionType)]>,
    transforms: &[(String, Expr)],
    metric_inputs: &[MetricInput],
) -> Vec<bool> {
    let dimensions = dimensions.unwrap_or_default();
    let Some(read_by_metrics) = metric_columns(metric_inputs) else {
        return vec![false; dimensions.len()];
    };
    let read_by_metrics: Vec<&str> = read_by_metrics.into_iter().flatten().collect();
    dimensions
        .iter()
        .map(|(name, _)| {
            name != TIME_COLUMN
                && !transforms.iter().any(|(t, _)| t == name)
                && !read_by_metrics.contains(&name.as_str())
        })
        .collect()
}

/// The column each metric reads (None for one reading none), when each reads a plain column
/// or none; None when one may read any column (an expression or a filtered metric).
fn metric_columns(inputs: &[MetricInput]) -> Option<Vec<Option<&str>>> {
    inputs
        .iter()
        .map(|input| match input {
            MetricInput::None => Some(None),
            MetricInput::Column(c) => Some(Some(c.as_str())),
            MetricInput::Expression(_) | MetricInput::Filtered(..) => None,
        })
        .collect()
}

/// Why a row's final time cannot be stored: it is outside the years 0001 to 9999.
fn in_range(time: i64) -> Result<(), String> {
    if (EARLIEST_TIME..=LATEST_TIME).contains(&time) {
        Ok(())
    } else {
        Err(format!(
            "the timestamp {time} is outside the years 0001 to 9999"
        ))
    }
}

/// A value converted to a dimension's type; what does not convert is null, as in Druid.
fn dim_value(value: Member<'_>, kind: DimensionType) -> DimValue<'_> {
    match (kind, value) {
        (_, Member::Null) => DimValue::Null,
        (DimensionType::Long, v) => match v {
            Member::Long(l) => DimValue::Long(l),
            Member::Double(d) => DimValue::Long(d as i64),
            Member::Text(s) => s
                .trim()
                .parse::<i64>()
                .map(DimValue::Long)
                .or_else(|_| s.trim().parse::<f64>().map(|d| DimValue::Long(d as i64)))
                .unwrap_or(DimValue::Null),
            Member::Null => DimValue::Null,
        },
        (DimensionType::Float | DimensionType::Double, v) => match v {
            Member::Long(l) => DimValue::Double(l as f64),
            Member::Double(d) => DimValue::Double(d),
            Member::Text(s) => s
                .trim()
                .parse::<f64>()
                .map_or(DimValue::Null, DimValue::Double),
            Member::Null => DimValue::Null,
        },
        (_, Member::Text(s)) => DimValue::Text(s),
        (_, Member::Long(l)) => DimValue::Text(l.to_string().into()),
        (_, Member::Double(d)) => DimValue::Text(d.to_string().into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::spec::SupervisorSpec;

    fn transformer(data_schema: serde_json::Value, io_extra: serde_json::Value) -> RowTransformer {
        let mut io = json!({"topic": "t", "inputFormat": {"type": "json"}});
        io.as_object_mut()
            .unwrap()
            .extend(io_extra.as_object().unwrap().clone());
        let spec = SupervisorSpec::from_json(
            json!({"type": "kafka", "spec": {"dataSchema": data_schema, "ioConfig": io}})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        RowTransformer::new(&spec.spec.data_schema, &spec.spec.io_config).unwrap()
    }

    fn json_format() -> InputFormat {
        serde_json::from_value(json!({"type": "json"})).unwrap()
    }

    const NO_META: crate::input::RecordMeta<'static> = crate::input::RecordMeta {
        topic: "t",
        timestamp: 0,
        key: None,
        headers: &[],
    };

    fn row(value: serde_json::Value) -> InputRow {
        let reader = crate::input::RowReader::new(&json_format()).unwrap();
        reader
            .read(value.to_string().as_bytes(), &NO_META)
            .unwrap()
            .remove(0)
    }

    const NOW: i64 = 1_714_557_600_000; // 2024-05-01T10:00:00Z

    #[test]
    fn the_seed_schema() {
        let t = transformer(
            json!({"dataSource": "social", "timestampSpec": {"column": "time", "format": "iso"},
                "dimensionsSpec": {"dimensions": ["username", {"type": "long", "name": "views"}, "edited"]},
                "granularitySpec": {"rollup": false, "segmentGranularity": "hour"}}),
            json!({}),
        );
        let out = t.apply(row(json!({"time": "2024-05-01T10:00:01Z", "username": "mia", "views": "12", "edited": "True", "extra": 1})), NOW);
        assert_eq!(
            out,
            Outcome::Row(IngestRow {
                time: NOW + 1000,
                dimensions: vec![
                    DimValue::Text("mia".into()),
                    DimValue::Long(12),
                    DimValue::Text("True".into())
                ],
                discovered: None,
                metric_inputs: vec![],
            })
        );
        assert!(
            matches!(t.apply(row(json!({"time": "soon"})), NOW), Outcome::Unparseable(m) if m.contains("ISO-8601"))
        );
        assert!(
            matches!(t.apply(row(json!({"username": "x"})), NOW), Outcome::Unparseable(m) if m.contains("'time' is missing"))
        );
    }

    #[test]
    fn a_column_read_twice_keeps_its_value_for_the_later_reader() {
        // `views` is a dimension and a metric input, `title` a dimension a transform
        // replaces; `user` and `edited` are read once.
        let t = transformer(
            json!({"dataSource": "d", "timestampSpec": {"column": "time", "format": "millis"},
                "dimensionsSpec": {"dimensions": ["user", "title", {"type": "long", "name": "views"}, "edited"]},
                "transformSpec": {"transforms": [{"type": "expression", "name": "title", "expression": "concat(title, '!')"}]},
                "metricsSpec": [{"type": "longSum", "name": "total", "fieldName": "views"}],
                "granularitySpec": {"rollup": false}}),
            json!({}),
        );
        assert_eq!(t.movable, [true, false, false, true]);
        let out = t.apply(
            row(json!({"time": 5, "user": "mia", "title": "hi", "views": 3, "edited": "True"})),
            NOW,
        );
        let Outcome::Row(out) = out else {
            panic!("{out:?}")
        };
        let text = |s: &'static str| DimValue::Text(s.into());
        assert_eq!(
            out.dimensions,
            [text("mia"), text("hi!"), DimValue::Long(3), text("True")]
        );
        assert_eq!(out.metric_inputs, [Some(ExprValue::Long(3))]);

        let expression_metric = transformer(
            json!({"dataSource": "d", "timestampSpec": {"column": "time", "format": "millis"},
                "dimensionsSpec": {"dimensions": ["user", "edited"]},
                "metricsSpec": [{"type": "longSum", "name": "n", "expression": "strlen(user)"}]}),
            json!({}),
        );
        assert_eq!(
            expression_metric.movable,
            [false, false],
            "an expression may read any column"
        );
    }

    #[test]
    fn times_beyond_year_9999_are_unparseable_not_overflowing() {
        let t = transformer(
            json!({"dataSource": "d", "timestampSpec": {"column": "time", "format": "millis"},
                "dimensionsSpec": {"dimensions": []}, "granularitySpec": {"segmentGranularity": "year"}}),
            json!({}),
        );
        for time in [json!(1e30), json!(i64::MAX), json!(-1e20)] {
            assert!(
                matches!(t.apply(row(json!({"time": time})), NOW), Outcome::Unparseable(m) if m.contains("outside")),
                "{time}"
            );
        }
        assert!(matches!(
            t.apply(row(json!({"time": NOW})), NOW),
            Outcome::Row(_)
        ));
    }

    #[test]
    fn transforms_filter_discovery_and_metrics() {
        let t = transformer(
            json!({"dataSource": "d", "timestampSpec": {"column": "ts", "format": "millis", "missingValue": "2024-05-01T00:00:00Z"},
                "dimensionsSpec": {"dimensionExclusions": ["secret"]},
                "metricsSpec": [{"type": "count", "name": "count"}, {"type": "longSum", "name": "total", "fieldName": "n"},
                                {"type": "doubleSum", "name": "twice", "expression": "n * 2.0"}],
                "transformSpec": {
                    "transforms": [{"type": "expression", "name": "user", "expression": "upper(user)"},
                                   {"type": "expression", "name": "hour", "expression": "timestamp_format(timestamp_floor(__time, 'PT1H'))"}],
                    "filter": {"type": "not", "field": {"type": "selector", "dimension": "user", "value": "BOT"}}}}),
            json!({}),
        );
        let Outcome::Row(r) = t.apply(
            row(json!({"ts": NOW + 5, "user": "mia", "n": 4, "secret": "x"})),
            NOW,
        ) else {
            panic!("a row");
        };
        assert_eq!(r.time, NOW + 5);
        assert_eq!(
            r.discovered,
            Some(vec!["user".to_string()]),
            "the time column, metric inputs and exclusions are not dimensions"
        );
        assert_eq!(r.dimensions, vec![DimValue::Text("MIA".into())]);
        assert_eq!(
            r.metric_inputs,
            vec![
                Some(ExprValue::Null),
                Some(ExprValue::Long(4)),
                Some(ExprValue::Double(8.0))
            ]
        );
        assert_eq!(
            t.apply(row(json!({"ts": NOW, "user": "bot"})), NOW),
            Outcome::ThrownAway
        );
        let Outcome::Row(missing) = t.apply(row(json!({"user": "x"})), NOW) else {
            panic!("a row")
        };
        assert_eq!(missing.time, NOW - 36_000_000, "missingValue");
    }

    #[test]
    fn rejection_windows_throw_rows_away() {
        let t = transformer(
            json!({"dataSource": "d", "timestampSpec": {"column": "ts", "format": "millis"}}),
            json!({"lateMessageRejectionPeriod": "PT1H", "earlyMessageRejectionPeriod": "PT10M"}),
        );
        assert!(matches!(
            t.apply(row(json!({"ts": NOW - 30 * 60_000})), NOW),
            Outcome::Row(_)
        ));
        assert_eq!(
            t.apply(row(json!({"ts": NOW - 2 * 3_600_000})), NOW),
            Outcome::ThrownAway
        );
        assert_eq!(
            t.apply(row(json!({"ts": NOW + 20 * 60_000})), NOW),
            Outcome::ThrownAway
        );
    }

    #[test]
    fn members_read_alone_make_the_rows_whole_input_rows_make() {
        let schema = |timestamp: serde_json::Value, dimensions: serde_json::Value, metrics| {
            json!({"dataSource": "d", "timestampSpec": timestamp,
                "dimensionsSpec": {"dimensions": dimensions}, "metricsSpec": metrics})
        };
        let iso = json!({"column": "time", "format": "iso"});
        let auto =
            json!({"column": "time", "format": "auto", "missingValue": "2024-05-01T00:00:00Z"});
        let typed = json!(["user", {"type": "long", "name": "views"},
            {"type": "double", "name": "score"}, {"type": "float", "name": "ratio"}, "edited", "geo"]);
        let metrics = json!([{"type": "count", "name": "count"},
            {"type": "longSum", "name": "total", "fieldName": "views"},
            {"type": "doubleMax", "name": "top", "fieldName": "score"},
            {"type": "stringLast", "name": "last", "fieldName": "title"},
            {"type": "longSum", "name": "absent", "fieldName": "nowhere"}]);
        let transformers = [
            transformer(schema(iso.clone(), typed.clone(), json!([])), json!({})),
            transformer(schema(auto, typed.clone(), metrics.clone()), json!({})),
            // `title` is a dimension and a metric's input.
            transformer(
                schema(iso, json!(["user", "title"]), metrics),
                json!({"lateMessageRejectionPeriod": "PT1H", "earlyMessageRejectionPeriod": "PT10M"}),
            ),
        ];
        let records = [
            json!({"time": "2024-05-01T10:00:01Z", "user": "mia", "views": 3, "score": 1.5,
                "ratio": "0.25", "edited": true, "geo": {"city": "Oslo"}, "title": "hi", "extra": [1]}),
            json!({"time": "2024-05-01T09:30:00Z", "views": "12", "score": "x", "ratio": 7,
                "edited": null, "geo": [1, 2], "title": "caf\u{e9}"}),
            json!({"time": "2024-05-01T07:00:00Z", "user": 42, "views": 2.9, "score": 4}),
            json!({"time": "2024-05-01T10:30:00Z", "user": "late-or-early"}),
            json!({"time": 1_714_557_600_000i64, "user": "millis"}),
            json!({"time": "soon", "user": "x"}),
            json!({"time": "9999-12-31T23:59:59Z"}),
            json!({"time": 1e30}),
            json!({"time": null, "user": "null time"}),
            json!({"user": "no time"}),
        ];
        let mut seen = Vec::new();
        for t in &transformers {
            let reader = t.member_reader(&json_format()).expect("plain metrics");
            for record in &records {
                let text = record.to_string();
                let mut members = reader.read(text.as_bytes(), &NO_META).unwrap();
                let outcome = t.apply(row(record.clone()), NOW);
                assert_eq!(t.apply_members(&mut members, NOW), outcome, "{text}");
                seen.push(std::mem::discriminant(&outcome));
            }
        }
        for outcome in [
            Outcome::Row(IngestRow {
                time: 0,
                dimensions: vec![],
                discovered: None,
                metric_inputs: vec![],
            }),
            Outcome::ThrownAway,
            Outcome::Unparseable(String::new()),
        ] {
            assert!(seen.contains(&std::mem::discriminant(&outcome)));
        }
        for other in [
            schema(json!({"column": "time"}), json!([]), json!([])),
            schema(
                json!({"column": "time"}),
                json!(["user"]),
                json!([{"type": "longMax", "name": "latest", "fieldName": "__time"}]),
            ),
            schema(
                json!({"column": "time"}),
                json!(["user"]),
                json!([{"type": "longSum", "name": "n", "expression": "views + 1"}]),
            ),
            schema(
                json!({"column": "time"}),
                json!(["user"]),
                json!([{"type": "filtered", "name": "n",
                    "filter": {"type": "selector", "dimension": "user", "value": "x"},
                    "aggregator": {"type": "count", "name": "n"}}]),
            ),
            json!({"dataSource": "d", "timestampSpec": {"column": "time"},
                "dimensionsSpec": {"dimensions": ["user"]},
                "transformSpec": {"filter": {"type": "selector", "dimension": "user", "value": "x"}}}),
            json!({"dataSource": "d", "timestampSpec": {"column": "time"},
                "dimensionsSpec": {"dimensions": ["user"]},
                "transformSpec": {"transforms": [{"type": "expression", "name": "other", "expression": "1"}]}}),
        ] {
            assert!(
                transformer(other.clone(), json!({}))
                    .member_reader(&json_format())
                    .is_none(),
                "{other}"
            );
        }
    }

    #[test]
    fn a_transform_can_replace_the_time() {
        let t = transformer(
            json!({"dataSource": "d", "timestampSpec": {"column": "ts", "format": "millis"},
                "transformSpec": {"transforms": [{"type": "expression", "name": "__time", "expression": "__time + 1000"}]}}),
            json!({}),
        );
        let Outcome::Row(r) = t.apply(row(json!({"ts": 5})), NOW) else {
            panic!("a row")
        };
        assert_eq!(r.time, 1005);
    }
}

//! Druid's SQL time functions as DataFusion scalar functions: TIME_FLOOR, TIME_CEIL,
//! TIME_SHIFT, TIME_EXTRACT, TIME_PARSE, TIME_FORMAT, TIME_IN_INTERVAL,
//! MILLIS_TO_TIMESTAMP and TIMESTAMP_TO_MILLIS. Times are UTC (time zone arguments other than
//! UTC are refused).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, StringArray, TimestampMillisecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use millrace_segments::spec::{Granularity, Period};
use millrace_segments::time::{Buckets, bucket, civil_from_days, format_iso, parse_iso};

/// The Druid time functions, ready to register.
pub fn time_functions() -> Vec<ScalarUDF> {
    use TimeFunction::*;
    [
        TimeFloor,
        TimeCeil,
        TimeShift,
        TimeExtract,
        TimeParse,
        TimeFormat,
        TimeInInterval,
        MillisToTimestamp,
        TimestampToMillis,
    ]
    .into_iter()
    .map(|kind| {
        ScalarUDF::from(DruidTimeUdf {
            kind,
            signature: Signature::user_defined(Volatility::Immutable),
        })
    })
    .collect()
}

/// `__time`'s type: UTC milliseconds.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TimeFunction {
    TimeFloor,
    TimeCeil,
    TimeShift,
    TimeExtract,
    TimeParse,
    TimeFormat,
    TimeInInterval,
    MillisToTimestamp,
    TimestampToMillis,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DruidTimeUdf {
    kind: TimeFunction,
    signature: Signature,
}

impl TimeFunction {
    fn name(self) -> &'static str {
        match self {
            TimeFunction::TimeFloor => "time_floor",
            TimeFunction::TimeCeil => "time_ceil",
            TimeFunction::TimeShift => "time_shift",
            TimeFunction::TimeExtract => "time_extract",
            TimeFunction::TimeParse => "time_parse",
            TimeFunction::TimeFormat => "time_format",
            TimeFunction::TimeInInterval => "time_in_interval",
            TimeFunction::MillisToTimestamp => "millis_to_timestamp",
            TimeFunction::TimestampToMillis => "timestamp_to_millis",
        }
    }

    /// The types arguments are converted to, by position (fewest and most arguments).
    fn arguments(self) -> (usize, Vec<DataType>) {
        let ts = timestamp_type();
        let text = DataType::Utf8;
        match self {
            TimeFunction::TimeFloor | TimeFunction::TimeCeil => {
                (2, vec![ts.clone(), text.clone(), ts, text])
            }
            TimeFunction::TimeShift => (3, vec![ts, text.clone(), DataType::Int64, text]),
            TimeFunction::TimeExtract => (1, vec![ts, text.clone(), text]),
            TimeFunction::TimeParse => (1, vec![text.clone(), text.clone(), text]),
            TimeFunction::TimeFormat => (1, vec![ts, text.clone(), text]),
            TimeFunction::TimeInInterval => (2, vec![ts, text]),
            TimeFunction::MillisToTimestamp => (1, vec![DataType::Int64]),
            TimeFunction::TimestampToMillis => (1, vec![ts]),
        }
    }
}

impl ScalarUDFImpl for DruidTimeUdf {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let (fewest, types) = self.kind.arguments();
        if arg_types.len() < fewest || arg_types.len() > types.len() {
            return plan_err!(
                "{} takes {} to {} arguments, not {}",
                self.kind.name().to_uppercase(),
                fewest,
                types.len(),
                arg_types.len()
            );
        }
        Ok(types[..arg_types.len()].to_vec())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            TimeFunction::TimeExtract | TimeFunction::TimestampToMillis => DataType::Int64,
            TimeFunction::TimeFormat => DataType::Utf8,
            TimeFunction::TimeInInterval => DataType::Boolean,
            _ => timestamp_type(),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        // Only the time (and TIME_SHIFT's step count) varies by row; the other arguments are
        // read from their first row, so a constant stays one value instead of one per row.
        let per_row = |i: usize| i == 0 || (self.kind == TimeFunction::TimeShift && i == 2);
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .enumerate()
            .map(|(i, a)| a.to_array(if per_row(i) { rows } else { 1 }))
            .collect::<Result<_>>()?;
        let result: ArrayRef = match self.kind {
            TimeFunction::TimeFloor | TimeFunction::TimeCeil => {
                let granularity = granularity(&arrays, 1, 2)?;
                check_zone(&arrays, 3)?;
                let ceil = self.kind == TimeFunction::TimeCeil;
                floor_or_ceil(&millis(&arrays[0])?, &granularity, ceil)
            }
            TimeFunction::TimeShift => {
                let period = period_arg(&arrays, 1)?;
                check_zone(&arrays, 3)?;
                let steps = arrays[2].as_primitive::<arrow::datatypes::Int64Type>();
                let times = millis(&arrays[0])?;
                Arc::new(
                    times
                        .iter()
                        .zip(steps.iter())
                        .map(|(t, n)| Some(shift(t?, &period, n?)))
                        .collect::<TimestampMillisecondArray>()
                        .with_timezone("UTC"),
                )
            }
            TimeFunction::TimeExtract => {
                let unit = text_arg(&arrays, 1)?
                    .unwrap_or_else(|| "MILLISECOND".into())
                    .to_ascii_uppercase();
                check_zone(&arrays, 2)?;
                let times = millis(&arrays[0])?;
                let values = times
                    .iter()
                    .map(|t| t.map(|t| extract(t, &unit)).transpose())
                    .collect::<Result<Int64Array>>()?;
                Arc::new(values)
            }
            TimeFunction::TimeParse => {
                if text_arg(&arrays, 1)?.is_some() {
                    return Err(DataFusionError::NotImplemented(
                        "TIME_PARSE with a format is not supported yet (ISO-8601 text only)".into(),
                    ));
                }
                check_zone(&arrays, 2)?;
                let texts = arrays[0].as_string::<i32>();
                Arc::new(
                    texts
                        .iter()
                        .map(|t| t.and_then(parse_iso))
                        .collect::<TimestampMillisecondArray>()
                        .with_timezone("UTC"),
                )
            }
            TimeFunction::TimeFormat => {
                if text_arg(&arrays, 1)?.is_some() {
                    return Err(DataFusionError::NotImplemented(
                        "TIME_FORMAT with a format is not supported yet (ISO-8601 output only)"
                            .into(),
                    ));
                }
                check_zone(&arrays, 2)?;
                let times = millis(&arrays[0])?;
                Arc::new(
                    times
                        .iter()
                        .map(|t| t.map(format_iso))
                        .collect::<StringArray>(),
                )
            }
            TimeFunction::TimeInInterval => {
                let interval = text_arg(&arrays, 1)?.unwrap_or_default();
                let (start, end) = interval
                    .split_once('/')
                    .and_then(|(a, b)| Some((parse_iso(a)?, parse_iso(b)?)))
                    .ok_or_else(|| {
                        DataFusionError::Plan(format!(
                            "'{interval}' is not an ISO-8601 interval such as 2024-01-01/2024-02-01"
                        ))
                    })?;
                let times = millis(&arrays[0])?;
                Arc::new(
                    times
                        .iter()
                        .map(|t| t.map(|t| t >= start && t < end))
                        .collect::<BooleanArray>(),
                )
            }
            TimeFunction::MillisToTimestamp => {
                let values = arrays[0].as_primitive::<arrow::datatypes::Int64Type>();
                Arc::new(
                    values
                        .iter()
                        .collect::<TimestampMillisecondArray>()
                        .with_timezone("UTC"),
                )
            }
            TimeFunction::TimestampToMillis => {
                let times = millis(&arrays[0])?;
                Arc::new(times.iter().collect::<Int64Array>())
            }
        };
        Ok(ColumnarValue::Array(result))
    }
}

/// The buckets `TIME_FLOOR` puts times in, when `function` is `TIME_FLOOR` and these are its
/// arguments after the time (period, then origin and zone if given), each a constant of the
/// type the function takes. None for anything else, and for arguments it would refuse (so
/// running it reports why).
pub(crate) fn floor_granularity(
    function: &ScalarUDF,
    constants: &[ScalarValue],
) -> Option<Granularity> {
    let floor = function
        .inner()
        .downcast_ref::<DruidTimeUdf>()
        .is_some_and(|udf| udf.kind == TimeFunction::TimeFloor);
    let (_, types) = TimeFunction::TimeFloor.arguments();
    if !floor || constants.len() >= types.len() {
        return None;
    }
    // The arrays the function would see: the times (none here), then one row of each
    // constant, in the function's types (a null as a null of that type).
    let mut arrays: Vec<ArrayRef> = vec![arrow::array::new_empty_array(&types[0])];
    for (value, kind) in constants.iter().zip(&types[1..]) {
        let typed = match value.is_null() {
            true => ScalarValue::try_from(kind).ok()?,
            false if value.data_type() == *kind => value.clone(),
            false => return None,
        };
        arrays.push(typed.to_array().ok()?);
    }
    check_zone(&arrays, 3).ok()?;
    granularity(&arrays, 1, 2).ok()
}

/// A timestamp array as UTC milliseconds.
fn millis(array: &ArrayRef) -> Result<TimestampMillisecondArray> {
    let cast = cast(array, &timestamp_type())?;
    Ok(cast.as_primitive::<TimestampMillisecondType>().clone())
}

/// Each time floored (or, with `ceil`, ceiled) to its bucket. When the whole batch falls in
/// one bucket, that bucket serves every row; otherwise each row's bucket comes from
/// [`Buckets`], which reuses the bucket of the row before.
fn floor_or_ceil(
    times: &TimestampMillisecondArray,
    granularity: &Granularity,
    ceil: bool,
) -> ArrayRef {
    let times_ms = times.values();
    // A batch whose times all fall in one bucket (a segment's rows do, for a granularity no
    // finer than the segment's) needs no bucket per row: the least and greatest time tell,
    // in a loop the compiler vectorizes. (Null slots' values count too: at worst they send
    // the batch the slower way.)
    let (least, greatest) = times_ms
        .iter()
        .fold((i64::MAX, i64::MIN), |(least, greatest), &t| {
            (least.min(t), greatest.max(t))
        });
    let one_bucket = (!times_ms.is_empty())
        .then(|| bucket(least, granularity))
        .filter(|&(_, end)| greatest < end);
    // A time's floor is its bucket's start; its ceiling the end, unless it is the start.
    let pick = |t: i64, (start, end): (i64, i64)| if ceil && start != t { end } else { start };
    let values: Vec<i64> = if let Some(only) = one_bucket {
        times_ms.iter().map(|&t| pick(t, only)).collect()
    } else {
        let mut buckets = Buckets::new(granularity);
        times_ms.iter().map(|&t| pick(t, buckets.of(t))).collect()
    };
    Arc::new(
        TimestampMillisecondArray::new(values.into(), times.nulls().cloned()).with_timezone("UTC"),
    )
}

/// A constant text argument (the first row's value), if given.
fn text_arg(arrays: &[ArrayRef], index: usize) -> Result<Option<String>> {
    let Some(array) = arrays.get(index) else {
        return Ok(None);
    };
    let texts = array.as_string::<i32>();
    Ok((!texts.is_empty() && texts.is_valid(0)).then(|| texts.value(0).to_string()))
}

fn period_arg(arrays: &[ArrayRef], index: usize) -> Result<Period> {
    let text = text_arg(arrays, index)?
        .ok_or_else(|| DataFusionError::Plan("a period such as 'PT1H' is required".into()))?;
    Period::parse(&text).map_err(DataFusionError::Plan)
}

fn granularity(
    arrays: &[ArrayRef],
    period_index: usize,
    origin_index: usize,
) -> Result<Granularity> {
    let period = period_arg(arrays, period_index)?;
    let origin = match arrays.get(origin_index) {
        Some(origin) if origin.is_valid(0) => millis(origin)?.value(0),
        _ => 0,
    };
    Ok(Granularity::Period {
        period,
        origin_millis: origin,
    })
}

fn check_zone(arrays: &[ArrayRef], index: usize) -> Result<()> {
    match text_arg(arrays, index)?.as_deref() {
        None | Some("UTC") | Some("Etc/UTC") | Some("Z") => Ok(()),
        Some(zone) => Err(DataFusionError::NotImplemented(format!(
            "time zone '{zone}' is not supported yet (UTC only)"
        ))),
    }
}

/// `t` moved by `steps` periods (calendar months kept on the same day where it exists).
pub(crate) fn shift(t: i64, period: &Period, steps: i64) -> i64 {
    let mut result = t + period.millis as i64 * steps;
    if period.months > 0 {
        let day_ms = 86_400_000;
        let (year, month, day) = civil_from_days(result.div_euclid(day_ms));
        let total = year * 12 + i64::from(month) - 1 + i64::from(period.months) * steps;
        let (y, m) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
        let last_day = (28..=31)
            .rev()
            .find(|d| civil_from_days(millrace_segments::time::days_from_civil(y, m, *d)).1 == m)
            .unwrap_or(28);
        result = millrace_segments::time::days_from_civil(y, m, day.min(last_day)) * day_ms
            + result.rem_euclid(day_ms);
    }
    result
}

fn extract(t: i64, unit: &str) -> Result<i64> {
    let day_ms = 86_400_000;
    let days = t.div_euclid(day_ms);
    let ms_of_day = t.rem_euclid(day_ms);
    let (year, month, day) = civil_from_days(days);
    let day_of_year = days - millrace_segments::time::days_from_civil(year, 1, 1) + 1;
    // 1970-01-01 was a Thursday; ISO days of week run Monday=1 .. Sunday=7.
    let day_of_week = (days + 3).rem_euclid(7) + 1;
    Ok(match unit {
        "EPOCH" => t.div_euclid(1000),
        "MILLISECOND" => ms_of_day % 1000,
        "SECOND" => ms_of_day / 1000 % 60,
        "MINUTE" => ms_of_day / 60_000 % 60,
        "HOUR" => ms_of_day / 3_600_000,
        "DAY" => i64::from(day),
        "DOW" => day_of_week,
        "DOY" => day_of_year,
        "WEEK" => {
            // ISO week of the Thursday of this week.
            let thursday = days - day_of_week + 4;
            let (y, _, _) = civil_from_days(thursday);
            (thursday - millrace_segments::time::days_from_civil(y, 1, 1)) / 7 + 1
        }
        "MONTH" => i64::from(month),
        "QUARTER" => i64::from(month).div_euclid(3) + i64::from(month % 3 != 0),
        "YEAR" => year,
        other => return plan_err!("TIME_EXTRACT unit '{other}' is not known"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reusing the previous row's bucket, or one bucket for a whole batch, gives what working
    /// each row out alone gives, for times in any order, on and off boundaries, before 1970,
    /// with nulls and calendar months, in every slice of the times (empty, within one bucket,
    /// across several).
    #[test]
    fn floor_and_ceil_reuse_buckets_correctly() {
        let hour = 3_600_000;
        let times: Vec<Option<i64>> = vec![
            Some(0),
            Some(1),
            Some(hour - 1),
            Some(hour),
            None,
            Some(hour + 5),
            Some(-1),
            Some(-hour),
            Some(-hour - 1),
            Some(2 * hour),
            Some(hour + 7),
            Some(1_717_200_000_000), // 2024-06-01
            Some(1_717_199_999_999),
            Some(1_719_791_999_999), // 2024-06-30T23:59:59.999
        ];
        let array = TimestampMillisecondArray::from(times.clone()).with_timezone("UTC");
        for (period, origin) in [("PT1H", 0), ("PT1H", 1_000), ("P1M", 0), ("P3M", -hour)] {
            let granularity = Granularity::Period {
                period: Period::parse(period).unwrap(),
                origin_millis: origin,
            };
            for (ceil, offset) in [false, true]
                .into_iter()
                .flat_map(|ceil| (0..=times.len()).map(move |offset| (ceil, offset)))
            {
                for length in 0..=times.len() - offset {
                    let slice = array.slice(offset, length);
                    let out = floor_or_ceil(&slice, &granularity, ceil);
                    let out = out.as_primitive::<TimestampMillisecondType>();
                    let expected: Vec<Option<i64>> = times[offset..offset + length]
                        .iter()
                        .map(|t| {
                            t.map(|t| {
                                let (start, end) = bucket(t, &granularity);
                                if ceil && start != t { end } else { start }
                            })
                        })
                        .collect();
                    assert_eq!(
                        out.iter().collect::<Vec<_>>(),
                        expected,
                        "{period} from {origin}, ceil {ceil}, rows {offset}..+{length}"
                    );
                }
            }
        }
    }
}

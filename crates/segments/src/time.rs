//! Milliseconds since the epoch (UTC), from and to the forms Druid reads and writes: ISO-8601
//! text, epoch numbers in four units, Joda-Time patterns; and time buckets of a granularity.

pub use millrace_types::time::{civil_from_days, days_from_civil, days_in_month, parse_iso};

use crate::spec::{Granularity, Period, TimestampFormat};

const MS_PER_DAY: i64 = 86_400_000;

/// An ISO-8601 interval `start/end` (end exclusive) as epoch milliseconds; None when either
/// end is not an ISO time or the interval is backwards.
pub fn parse_interval(text: &str) -> Option<(i64, i64)> {
    let (start, end) = text.trim().split_once('/')?;
    let (start, end) = (parse_iso(start)?, parse_iso(end)?);
    (start <= end).then_some((start, end))
}

/// An interval as ISO-8601 text, `start/end`.
pub fn format_interval((start, end): (i64, i64)) -> String {
    format!("{}/{}", format_iso(start), format_iso(end))
}

/// ISO-8601 text in UTC with milliseconds, as Druid writes `__time`: `2024-05-01T10:15:30.123Z`.
pub fn format_iso(millis: i64) -> String {
    let days = millis.div_euclid(MS_PER_DAY);
    let ms_of_day = millis.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

/// A timestamp value of a row: text or a number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeValue<'a> {
    Text(&'a str),
    Number(f64),
}

/// Reads a row's time as its timestampSpec format says.
pub fn parse_timestamp(value: TimeValue<'_>, format: &TimestampFormat) -> Result<i64, String> {
    let number = |v: TimeValue<'_>| -> Option<f64> {
        match v {
            TimeValue::Number(n) => Some(n),
            TimeValue::Text(t) => t.trim().parse::<f64>().ok(),
        }
    };
    let scaled = |factor: f64| {
        number(value)
            .map(|n| (n * factor).floor() as i64)
            .ok_or_else(|| format!("{value:?} is not a number"))
    };
    match format {
        TimestampFormat::Millis => scaled(1.0),
        TimestampFormat::Posix => scaled(1000.0),
        TimestampFormat::Micro => scaled(0.001),
        TimestampFormat::Nano => scaled(0.000_001),
        TimestampFormat::Iso => match value {
            TimeValue::Text(t) => {
                parse_iso(t).ok_or_else(|| format!("'{t}' is not an ISO-8601 time"))
            }
            TimeValue::Number(_) => Err("expected ISO-8601 text, found a number".into()),
        },
        TimestampFormat::Auto => match value {
            TimeValue::Number(n) => Ok(n as i64),
            TimeValue::Text(t) => parse_iso(t)
                .or_else(|| t.trim().parse::<i64>().ok())
                .ok_or_else(|| format!("'{t}' is neither ISO-8601 nor epoch milliseconds")),
        },
        TimestampFormat::Pattern(pattern) => match value {
            TimeValue::Text(t) => parse_pattern(t, pattern),
            TimeValue::Number(_) => Err(format!(
                "expected text in the format '{pattern}', found a number"
            )),
        },
    }
}

/// Reads text by a Joda-Time pattern (the common letters: y M d H h m s S a and literals in
/// quotes; `Z` for an offset). Times are UTC unless the pattern reads an offset.
fn parse_pattern(text: &str, pattern: &str) -> Result<i64, String> {
    let fail = || format!("'{text}' does not match the format '{pattern}'");
    let t = text.as_bytes();
    let p: Vec<char> = pattern.chars().collect();
    let mut quoted = false;
    for &c in &p {
        if c == '\'' {
            quoted = !quoted;
        } else if !quoted && c.is_ascii_alphabetic() && !"yYuMdHkhKmsSaZ".contains(c) {
            return Err(format!(
                "the format letter '{c}' in '{pattern}' is not supported yet"
            ));
        }
    }
    let (mut year, mut month, mut day, mut hour, mut minute, mut second, mut millis) =
        (1970i64, 1u32, 1u32, 0i64, 0i64, 0i64, 0i64);
    let mut pm = None;
    let mut offset_ms = 0i64;
    let (mut i, mut pos) = (0usize, 0usize);
    let read_number = |pos: &mut usize, max: usize| -> Option<i64> {
        let start = *pos;
        while *pos < t.len() && *pos - start < max && t[*pos].is_ascii_digit() {
            *pos += 1;
        }
        (*pos > start).then(|| std::str::from_utf8(&t[start..*pos]).ok()?.parse().ok())?
    };
    while i < p.len() {
        let c = p[i];
        let run = p[i..].iter().take_while(|&&x| x == c).count();
        match c {
            'y' | 'Y' | 'u' => {
                year = read_number(&mut pos, if run == 2 { 2 } else { 9 }).ok_or_else(fail)?
            }
            'M' => month = read_number(&mut pos, 2).ok_or_else(fail)? as u32,
            'd' => day = read_number(&mut pos, 2).ok_or_else(fail)? as u32,
            'H' | 'k' => hour = read_number(&mut pos, 2).ok_or_else(fail)?,
            'h' | 'K' => hour = read_number(&mut pos, 2).ok_or_else(fail)? % 12,
            'm' => minute = read_number(&mut pos, 2).ok_or_else(fail)?,
            's' => second = read_number(&mut pos, 2).ok_or_else(fail)?,
            'S' => {
                let start = pos;
                let fraction = read_number(&mut pos, run.max(3)).ok_or_else(fail)?;
                let digits = (pos - start) as u32;
                millis = if digits >= 3 {
                    fraction / 10i64.pow(digits - 3)
                } else {
                    fraction * 10i64.pow(3 - digits)
                };
            }
            'a' => {
                let marker = t.get(pos..pos + 2).ok_or_else(fail)?.to_ascii_uppercase();
                pm = Some(match marker.as_slice() {
                    b"AM" => false,
                    b"PM" => true,
                    _ => return Err(fail()),
                });
                pos += 2;
            }
            'Z' => {
                if t.get(pos) == Some(&b'Z') {
                    pos += 1;
                } else {
                    let sign = match t.get(pos) {
                        Some(b'+') => 1,
                        Some(b'-') => -1,
                        _ => return Err(fail()),
                    };
                    pos += 1;
                    let hours = read_number(&mut pos, 2).ok_or_else(fail)?;
                    if t.get(pos) == Some(&b':') {
                        pos += 1;
                    }
                    let minutes = read_number(&mut pos, 2).unwrap_or(0);
                    offset_ms = sign * (hours * 60 + minutes) * 60_000;
                }
            }
            '\'' => {
                // A quoted literal ('' is a quote).
                let end = p[i + 1..]
                    .iter()
                    .position(|&x| x == '\'')
                    .ok_or_else(fail)?;
                let literal: String = if end == 0 {
                    "'".into()
                } else {
                    p[i + 1..i + 1 + end].iter().collect()
                };
                if !text[pos..].starts_with(&literal) {
                    return Err(fail());
                }
                pos += literal.len();
                i += end + 2;
                continue;
            }
            c if c.is_ascii_alphabetic() => {
                return Err(format!(
                    "the format letter '{c}' in '{pattern}' is not supported yet"
                ));
            }
            literal => {
                let mut buf = [0u8; 4];
                let bytes = literal.encode_utf8(&mut buf).as_bytes();
                for _ in 0..run {
                    if !t[pos..].starts_with(bytes) {
                        return Err(fail());
                    }
                    pos += bytes.len();
                }
            }
        }
        i += run;
    }
    if pos != t.len() || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(fail());
    }
    if pm == Some(true) {
        hour += 12;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(fail());
    }
    Ok(days_from_civil(year, month, day) * MS_PER_DAY
        + hour * 3_600_000
        + minute * 60_000
        + second * 1000
        + millis
        - offset_ms)
}

/// A row's stored time: its time truncated to the query granularity, but never before the
/// start of its time chunk. Druid keeps a row's stored time within its segment's interval
/// this way when the query granularity is coarser than the segment granularity or not
/// aligned with it (weeks in months); queries rely on a chunk's rows lying within it.
pub fn stored_time(millis: i64, query_granularity: &Granularity, chunk_start: i64) -> i64 {
    bucket(millis, query_granularity).0.max(chunk_start)
}

/// The buckets of one granularity for times that mostly come in order (a segment's rows
/// do): the bucket of the time before is kept while times stay in it, rather than worked out
/// again for each (a 64-bit division, or calendar arithmetic for months).
pub struct Buckets<'a> {
    granularity: &'a Granularity,
    current: (i64, i64),
}

impl<'a> Buckets<'a> {
    /// Buckets of `granularity`, none worked out yet.
    pub fn new(granularity: &'a Granularity) -> Buckets<'a> {
        // Empty to start with: no time is at or after 1 and before 0.
        Buckets {
            granularity,
            current: (1, 0),
        }
    }

    /// The bucket `[start, end)` that holds `millis`.
    pub fn of(&mut self, millis: i64) -> (i64, i64) {
        if !(self.current.0..self.current.1).contains(&millis) {
            self.current = bucket(millis, self.granularity);
        }
        self.current
    }
}

/// The bucket `[start, end)` of a granularity that holds `millis`.
pub fn bucket(millis: i64, granularity: &Granularity) -> (i64, i64) {
    match granularity {
        Granularity::All => (i64::MIN / 2, i64::MAX / 2),
        Granularity::None => (millis, millis + 1),
        Granularity::Period {
            period,
            origin_millis,
        } => period_bucket(millis, period, *origin_millis),
    }
}

fn period_bucket(millis: i64, period: &Period, origin: i64) -> (i64, i64) {
    if let Some(size) = period.fixed_millis().filter(|ms| *ms > 0) {
        let size = size as i64;
        let start = origin + (millis - origin).div_euclid(size) * size;
        return (start, start + size);
    }
    // Calendar months (with any days and time added to each step, as rare as that is).
    let months = i64::from(period.months.max(1));
    let (oy, om, _) = civil_from_days(origin.div_euclid(MS_PER_DAY));
    let (y, m, _) = civil_from_days(millis.div_euclid(MS_PER_DAY));
    let index = (y * 12 + i64::from(m) - 1) - (oy * 12 + i64::from(om) - 1);
    let step = index.div_euclid(months) * months;
    let month_start = |k: i64| {
        let total = oy * 12 + i64::from(om) - 1 + k;
        days_from_civil(total.div_euclid(12), (total.rem_euclid(12) + 1) as u32, 1) * MS_PER_DAY
    };
    (month_start(step), month_start(step + months))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trips() {
        for text in [
            "1970-01-01T00:00:00.000Z",
            "2024-02-29T23:59:59.999Z",
            "1969-12-31T23:59:59.999Z",
            "2000-03-01T12:00:00.000Z",
        ] {
            assert_eq!(format_iso(parse_iso(text).unwrap()), text);
        }
        assert_eq!(parse_iso("2024-05-01"), parse_iso("2024-05-01T00:00:00Z"));
        assert_eq!(
            parse_iso("2024-05-01T10:15"),
            Some(parse_iso("2024-05-01").unwrap() + 36_900_000)
        );
        assert_eq!(
            parse_iso("2024-05-01 10:00:00+02:00"),
            parse_iso("2024-05-01T08:00:00Z")
        );
        assert_eq!(
            parse_iso("2024-05-01T10:00:00.5-0130"),
            parse_iso("2024-05-01T11:30:00.500Z")
        );
        assert_eq!(
            parse_iso("2024-05-01T10:00:00.123456Z").map(|m| m % 1000),
            Some(123)
        );
        for bad in [
            "2024-13-01",
            "2024-02-30",
            "24-01-01",
            "2024-01-01T25:00",
            "2024-01-01Tx",
            "2024-01-01 junk",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_format() {
        let t = parse_iso("2024-05-01T10:00:00Z").unwrap();
        let p = |v, f: TimestampFormat| parse_timestamp(v, &f);
        assert_eq!(
            p(TimeValue::Number(t as f64), TimestampFormat::Millis),
            Ok(t)
        );
        assert_eq!(
            p(TimeValue::Text("1714557600"), TimestampFormat::Posix),
            Ok(t)
        );
        assert_eq!(
            p(
                TimeValue::Number(1_714_557_600_000_000.0),
                TimestampFormat::Micro
            ),
            Ok(t)
        );
        assert_eq!(
            p(
                TimeValue::Number(1_714_557_600_000_000_000.0),
                TimestampFormat::Nano
            ),
            Ok(t)
        );
        assert_eq!(
            p(
                TimeValue::Text("2024-05-01T10:00:00Z"),
                TimestampFormat::Auto
            ),
            Ok(t)
        );
        assert_eq!(
            p(TimeValue::Text("1714557600000"), TimestampFormat::Auto),
            Ok(t)
        );
        assert_eq!(
            p(
                TimeValue::Text("2024-05-01T10:00:00Z"),
                TimestampFormat::Iso
            ),
            Ok(t)
        );
        assert!(p(TimeValue::Text("yesterday"), TimestampFormat::Iso).is_err());
        let pattern = |f: &str| TimestampFormat::Pattern(f.into());
        assert_eq!(
            p(
                TimeValue::Text("2024-05-01 10:00:00"),
                pattern("yyyy-MM-dd HH:mm:ss")
            ),
            Ok(t)
        );
        assert_eq!(
            p(
                TimeValue::Text("01/05/2024 10:00:00.250 AM"),
                pattern("dd/MM/yyyy hh:mm:ss.SSS a")
            ),
            Ok(t + 250)
        );
        assert_eq!(
            p(
                TimeValue::Text("2024-05-01T12:00:00+0200"),
                pattern("yyyy-MM-dd'T'HH:mm:ssZ")
            ),
            Ok(t)
        );
        assert!(p(TimeValue::Text("2024-05-01"), pattern("yyyy-MM-dd HH")).is_err());
        assert!(
            p(TimeValue::Text("2024"), pattern("yyyy G"))
                .unwrap_err()
                .contains("'G'")
        );
    }

    #[test]
    fn buckets_of_granularities() {
        let t = parse_iso("2024-05-17T10:42:13.5Z").unwrap();
        let g = |name| Granularity::named(name).unwrap();
        let iso = |(a, b): (i64, i64)| (format_iso(a), format_iso(b));
        assert_eq!(
            iso(bucket(t, &g("hour"))),
            (
                "2024-05-17T10:00:00.000Z".into(),
                "2024-05-17T11:00:00.000Z".into()
            )
        );
        assert_eq!(iso(bucket(t, &g("day"))).0, "2024-05-17T00:00:00.000Z");
        assert_eq!(
            iso(bucket(t, &g("fifteen_minute"))).0,
            "2024-05-17T10:30:00.000Z"
        );
        assert_eq!(
            iso(bucket(t, &g("week"))).0,
            "2024-05-13T00:00:00.000Z",
            "weeks start on Monday"
        );
        assert_eq!(
            iso(bucket(t, &g("month"))),
            (
                "2024-05-01T00:00:00.000Z".into(),
                "2024-06-01T00:00:00.000Z".into()
            )
        );
        assert_eq!(
            iso(bucket(t, &g("quarter"))),
            (
                "2024-04-01T00:00:00.000Z".into(),
                "2024-07-01T00:00:00.000Z".into()
            )
        );
        assert_eq!(iso(bucket(t, &g("year"))).0, "2024-01-01T00:00:00.000Z");
        assert_eq!(bucket(t, &Granularity::None), (t, t + 1));
        let before_epoch = parse_iso("1969-12-31T23:30:00Z").unwrap();
        assert_eq!(
            iso(bucket(before_epoch, &g("hour"))).0,
            "1969-12-31T23:00:00.000Z"
        );
    }
}

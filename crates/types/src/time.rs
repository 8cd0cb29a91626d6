//! Calendar arithmetic on milliseconds since the epoch (UTC) and ISO-8601 times, shared by
//! the crates that read, show or bucket times.
//!
//! ISO parsing is hand-written because it runs once per ingested row.

const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// An instant as Java's `Instant.toString` writes it (KSML shows window times this way):
/// `2024-05-01T10:15:30Z`, with `.123` before the `Z` when there are milliseconds.
pub fn format_instant(millis: i64) -> String {
    let days = millis.div_euclid(MS_PER_DAY);
    let ms_of_day = millis.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let clock = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
    );
    match ms_of_day % 1000 {
        0 => format!("{clock}Z"),
        ms => format!("{clock}.{ms:03}Z"),
    }
}

/// The days of a month of a year.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Reads ISO-8601 date-time text: `2024-05-01`, `2024-05-01T10:15`, `2024-05-01T10:15:30.123`,
/// with `Z` or `±hh[:mm]`, or a space instead of `T`. Without a zone the time is UTC.
pub fn parse_iso(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    let mut pos = 0;
    let digits = |pos: &mut usize, n: usize| -> Option<i64> {
        let part = b.get(*pos..*pos + n)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        *pos += n;
        Some(
            part.iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
        )
    };
    let expect =
        |pos: &mut usize, c: u8| -> Option<()> { (b.get(*pos) == Some(&c)).then(|| *pos += 1) };
    let negative = b.first() == Some(&b'-');
    if negative || b.first() == Some(&b'+') {
        pos += 1;
    }
    let mut year = digits(&mut pos, 4)?;
    if negative {
        year = -year;
    }
    expect(&mut pos, b'-')?;
    let month = digits(&mut pos, 2)? as u32;
    let mut day = 1;
    if expect(&mut pos, b'-').is_some() {
        day = digits(&mut pos, 2)? as u32;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut millis = days_from_civil(year, month, day) * MS_PER_DAY;
    if matches!(b.get(pos), Some(b'T' | b't' | b' ')) {
        pos += 1;
        let hour = digits(&mut pos, 2)?;
        let mut minute = 0;
        let mut second = 0;
        let mut fraction_ms = 0;
        if expect(&mut pos, b':').is_some() {
            minute = digits(&mut pos, 2)?;
            if expect(&mut pos, b':').is_some() {
                second = digits(&mut pos, 2)?;
                if matches!(b.get(pos), Some(b'.' | b',')) {
                    pos += 1;
                    let start = pos;
                    while b.get(pos).is_some_and(u8::is_ascii_digit) {
                        pos += 1;
                    }
                    let frac = &b[start..pos];
                    if frac.is_empty() {
                        return None;
                    }
                    fraction_ms = frac
                        .iter()
                        .take(3)
                        .chain(std::iter::repeat(&b'0'))
                        .take(3)
                        .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
                }
            }
        }
        if hour > 24
            || minute > 59
            || second > 60
            || (hour == 24 && (minute, second, fraction_ms) != (0, 0, 0))
        {
            return None;
        }
        millis += hour * 3_600_000 + minute * 60_000 + second * 1000 + fraction_ms;
        match b.get(pos) {
            None => {}
            Some(b'Z' | b'z') => pos += 1,
            Some(&sign @ (b'+' | b'-')) => {
                pos += 1;
                let hours = digits(&mut pos, 2)?;
                let _ = expect(&mut pos, b':');
                let minutes = if pos < b.len() {
                    digits(&mut pos, 2)?
                } else {
                    0
                };
                let offset = (hours * 60 + minutes) * 60_000;
                millis -= if sign == b'+' { offset } else { -offset };
            }
            Some(_) => return None,
        }
    }
    (pos == b.len()).then_some(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_print_as_java_does() {
        assert_eq!(format_instant(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_instant(1_714_558_530_123),
            "2024-05-01T10:15:30.123Z"
        );
        assert_eq!(format_instant(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}

//! Durations as KSML writes them: milliseconds as an integer, `N` followed by a unit
//! (`ms`, `s`, `m`, `h`, `d`, `w`), or ISO-8601 (`PT5M`, `P1D`).

use std::time::Duration;

/// Parses a duration string; a bare number is milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    if text.starts_with(['P', 'p']) {
        return parse_iso(text);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("invalid duration '{text}'"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration '{text}': expected a number before the unit"))?;
    let ms_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        other => {
            return Err(format!(
                "invalid duration '{text}': unknown unit '{other}' (use ms, s, m, h, d or w)"
            ));
        }
    };
    Ok(Duration::from_millis(n.saturating_mul(ms_per_unit)))
}

/// Parses ISO-8601 durations with days and time parts (`P1DT2H`, `PT0.5S`); years and months
/// have no fixed length and are refused.
fn parse_iso(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid ISO-8601 duration '{text}'");
    let upper = text.to_ascii_uppercase();
    let body = &upper[1..];
    let (date, time) = match body.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let mut total_ms = 0f64;
    let mut add_parts = |part: &str, units: &[(char, f64)]| -> Result<(), String> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let scale = units
                .iter()
                .find(|(u, _)| *u == c)
                .map(|(_, s)| *s)
                .ok_or_else(invalid)?;
            let n: f64 = number.parse().map_err(|_| invalid())?;
            total_ms += n * scale;
            number.clear();
        }
        if number.is_empty() {
            Ok(())
        } else {
            Err(invalid())
        }
    };
    add_parts(date, &[('W', 604_800_000.0), ('D', 86_400_000.0)])?;
    if let Some(time) = time {
        if time.is_empty() {
            return Err(invalid());
        }
        add_parts(time, &[('H', 3_600_000.0), ('M', 60_000.0), ('S', 1_000.0)])?;
    }
    if date.is_empty() && time.is_none() {
        return Err(invalid());
    }
    Ok(Duration::from_millis(total_ms.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_iso() {
        let ms = |t| parse_duration(t).unwrap().as_millis();
        assert_eq!(ms("250"), 250);
        assert_eq!(ms("250ms"), 250);
        assert_eq!(ms("3s"), 3_000);
        assert_eq!(ms("5m"), 300_000);
        assert_eq!(ms("2h"), 7_200_000);
        assert_eq!(ms("1d"), 86_400_000);
        assert_eq!(ms("1w"), 604_800_000);
        assert_eq!(ms("PT5M"), 300_000);
        assert_eq!(ms("P1DT1H"), 90_000_000);
        assert_eq!(ms("PT0.5S"), 500);
    }

    #[test]
    fn bad_durations_say_why() {
        assert!(
            parse_duration("5x")
                .unwrap_err()
                .contains("unknown unit 'x'")
        );
        assert!(parse_duration("P1Y").is_err());
        assert!(parse_duration("soon").is_err());
    }
}

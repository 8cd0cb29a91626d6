//! ISO-8601 periods (`PT1H`, `P1D`, `P1M`) and Druid granularities (`hour`, `{"type":
//! "period", "period": "PT15M"}`).

use std::fmt;

use serde::{Deserialize, Deserializer};

/// An ISO-8601 period. Months and years have no fixed length, so they are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Period {
    pub months: u32,
    /// Weeks, days, hours, minutes and seconds, in milliseconds.
    pub millis: u64,
}

impl Period {
    /// Parses `P[nY][nM][nW][nD][T[nH][nM][n[.fff]S]]`.
    pub fn parse(text: &str) -> Result<Period, String> {
        let invalid = || format!("'{text}' is not an ISO-8601 period such as PT1H or P1D");
        let upper = text.trim().to_ascii_uppercase();
        let body = upper.strip_prefix('P').ok_or_else(invalid)?;
        if body.is_empty() {
            return Err(invalid());
        }
        let (date, time) = match body.split_once('T') {
            Some((_, "")) => return Err(invalid()),
            Some((d, t)) => (d, t),
            None => (body, ""),
        };
        let mut period = Period::default();
        let mut number = String::new();
        for (part, in_time) in [(date, false), (time, true)] {
            for c in part.chars() {
                if c.is_ascii_digit() || c == '.' {
                    number.push(c);
                    continue;
                }
                let n: f64 = number.parse().map_err(|_| invalid())?;
                number.clear();
                let whole = || {
                    if n.fract() == 0.0 {
                        Ok(n as u64)
                    } else {
                        Err(invalid())
                    }
                };
                match (c, in_time) {
                    ('Y', false) => period.months += 12 * whole()? as u32,
                    ('M', false) => period.months += whole()? as u32,
                    ('W', false) => period.millis += whole()? * 604_800_000,
                    ('D', false) => period.millis += whole()? * 86_400_000,
                    ('H', true) => period.millis += whole()? * 3_600_000,
                    ('M', true) => period.millis += whole()? * 60_000,
                    ('S', true) => period.millis += (n * 1000.0).round() as u64,
                    _ => return Err(invalid()),
                }
            }
            if !number.is_empty() {
                return Err(invalid());
            }
        }
        if period == Period::default() && !body.chars().any(|c| c.is_ascii_digit()) {
            return Err(invalid());
        }
        Ok(period)
    }

    /// The period as a fixed length, when it has no months or years.
    pub fn fixed_millis(&self) -> Option<u64> {
        (self.months == 0).then_some(self.millis)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P")?;
        if self.months > 0 {
            write!(f, "{}M", self.months)?;
        }
        let mut ms = self.millis;
        let days = ms / 86_400_000;
        ms %= 86_400_000;
        if days > 0 {
            write!(f, "{days}D")?;
        }
        if ms > 0 || (self.months == 0 && days == 0) {
            f.write_str("T")?;
            let (h, m, s, rest) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
            if h > 0 {
                write!(f, "{h}H")?;
            }
            if m > 0 {
                write!(f, "{m}M")?;
            }
            if s > 0 || rest > 0 || (h == 0 && m == 0) {
                if rest > 0 {
                    write!(f, "{s}.{rest:03}S")?;
                } else {
                    write!(f, "{s}S")?;
                }
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Period, D::Error> {
        let text = String::deserialize(deserializer)?;
        Period::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How rows are bucketed in time: segment time chunks, or query-time truncation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Granularity {
    /// One bucket for all time.
    All,
    /// No truncation (milliseconds as they are).
    None,
    /// Buckets of a period, aligned to `origin` (epoch by default) in UTC.
    Period { period: Period, origin_millis: i64 },
}

/// Where buckets of a period start when no origin is given: the epoch, except that whole weeks
/// start on Mondays (1970-01-01 was a Thursday), as Druid's ISO weeks do.
fn default_origin(period: &Period) -> i64 {
    const WEEK: u64 = 604_800_000;
    if period.months == 0 && period.millis > 0 && period.millis.is_multiple_of(WEEK) {
        -3 * 86_400_000
    } else {
        0
    }
}

impl Granularity {
    /// Druid's named granularities.
    pub fn named(name: &str) -> Option<Granularity> {
        let period = |text: &str| {
            let period = Period::parse(text).expect("built-in period");
            Granularity::Period {
                period,
                origin_millis: default_origin(&period),
            }
        };
        Some(match name.to_ascii_lowercase().as_str() {
            "all" => Granularity::All,
            "none" => Granularity::None,
            "second" => period("PT1S"),
            "minute" => period("PT1M"),
            "five_minute" => period("PT5M"),
            "ten_minute" => period("PT10M"),
            "fifteen_minute" => period("PT15M"),
            "thirty_minute" => period("PT30M"),
            "hour" => period("PT1H"),
            "six_hour" => period("PT6H"),
            "eight_hour" => period("PT8H"),
            "day" => period("P1D"),
            "week" => period("P1W"),
            "month" => period("P1M"),
            "quarter" => period("P3M"),
            "year" => period("P12M"),
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for Granularity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Granularity, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Object(GranularityObject),
        }
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
        enum GranularityObject {
            Period {
                period: Period,
                #[serde(rename = "timeZone")]
                time_zone: Option<String>,
                origin: Option<String>,
            },
            Duration {
                duration: u64,
                origin: Option<String>,
            },
            All,
            None,
        }
        let utc_only = |zone: &Option<String>| match zone.as_deref() {
            None | Some("UTC") | Some("Etc/UTC") => Ok(()),
            Some(other) => Err(serde::de::Error::custom(format!(
                "time zone '{other}' is not supported yet (UTC only)"
            ))),
        };
        let origin = |origin: &Option<String>, period: &Period| match origin {
            None => Ok(default_origin(period)),
            Some(text) => text.parse::<i64>().map_err(|_| {
                serde::de::Error::custom(format!(
                    "origin '{text}' is not supported yet (give it in epoch milliseconds)"
                ))
            }),
        };
        match Raw::deserialize(deserializer)? {
            Raw::Name(name) => Granularity::named(&name).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown granularity '{name}' (use none, second, minute, fifteen_minute, thirty_minute, hour, day, week, month, quarter, year, all, or a period object)"
                ))
            }),
            Raw::Object(GranularityObject::Period {
                period,
                time_zone,
                origin: o,
            }) => {
                utc_only(&time_zone)?;
                Ok(Granularity::Period {
                    origin_millis: origin(&o, &period)?,
                    period,
                })
            }
            Raw::Object(GranularityObject::Duration { duration, origin: o }) => {
                // Duration granularities count from the epoch, whatever their length.
                let period = Period {
                    months: 0,
                    millis: duration,
                };
                Ok(Granularity::Period {
                    period,
                    origin_millis: match o {
                        None => 0,
                        some => origin(&some, &period)?,
                    },
                })
            }
            Raw::Object(GranularityObject::All) => Ok(Granularity::All),
            Raw::Object(GranularityObject::None) => Ok(Granularity::None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_print() {
        assert_eq!(
            Period::parse("PT1H").unwrap().fixed_millis(),
            Some(3_600_000)
        );
        assert_eq!(
            Period::parse("P1D").unwrap().fixed_millis(),
            Some(86_400_000)
        );
        assert_eq!(Period::parse("PT0.5S").unwrap().millis, 500);
        assert_eq!(Period::parse("P1Y2M").unwrap().months, 14);
        assert_eq!(Period::parse("P1M").unwrap().fixed_millis(), None);
        assert_eq!(Period::parse("PT30M").unwrap().to_string(), "PT30M");
        assert_eq!(Period::parse("P1DT2H").unwrap().to_string(), "P1DT2H");
        for bad in ["1H", "P", "PT", "P1H", "PT1D", "PTXS"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn granularities_by_name_and_object() {
        let g: Granularity = serde_json::from_str("\"HOUR\"").unwrap();
        assert_eq!(g, Granularity::named("hour").unwrap());
        let g: Granularity = serde_json::from_str(r#"{"type":"period","period":"PT15M"}"#).unwrap();
        assert_eq!(
            g,
            Granularity::Period {
                period: Period::parse("PT15M").unwrap(),
                origin_millis: 0
            }
        );
        let g: Granularity =
            serde_json::from_str(r#"{"type":"duration","duration":60000}"#).unwrap();
        assert_eq!(g, Granularity::named("minute").unwrap());
        assert!(serde_json::from_str::<Granularity>("\"fortnight\"").is_err());
        let err = serde_json::from_str::<Granularity>(
            r#"{"type":"period","period":"P1D","timeZone":"Europe/Paris"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("UTC only"), "{err}");
    }
}

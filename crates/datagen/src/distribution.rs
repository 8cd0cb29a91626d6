//! The distributions a config draws numbers from: `constant`, `uniform`, `exponential` and
//! `normal`, as learn-druid's generator defines them.

use serde_json::Value;

use crate::fields::{ConfigError, Fields, error};
use crate::random::Random;

/// A distribution of numbers.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    Constant(f64),
    /// Uniform in [min, max + 1): learn-druid's definition, so that `{min: 0, max: 7}` picks
    /// each of 8 indexes (numbers are truncated where a whole number is needed).
    Uniform {
        min: f64,
        max: f64,
    },
    Exponential {
        mean: f64,
    },
    Normal {
        mean: f64,
        stddev: f64,
    },
}

/// What a distribution's parameters are written in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    /// Plain numbers.
    Number,
    /// Points in time: ISO-8601 text (or epoch seconds); `stddev` in seconds. Samples are
    /// epoch seconds.
    Timestamp,
}

impl Distribution {
    /// Reads a distribution object (`{"type": "normal", "mean": 70, "stddev": 20}`).
    pub fn parse(value: &Value, path: &str, unit: Unit) -> Result<Distribution, ConfigError> {
        let fields = Fields::of(value, path)?;
        let point = |field: &str| -> Result<f64, ConfigError> {
            match (unit, fields.required(field)?) {
                (Unit::Timestamp, Value::String(text)) => millrace_types::time::parse_iso(text)
                    .map(|millis| millis as f64 / 1000.0)
                    .ok_or_else(|| {
                        fields.error(field, format!("'{text}' is not an ISO-8601 time"))
                    }),
                _ => fields.number(field),
            }
        };
        let kind = fields.string("type")?;
        let distribution = match kind.to_ascii_lowercase().as_str() {
            "constant" => Distribution::Constant(point("value")?),
            "uniform" => {
                let (min, max) = (point("min")?, point("max")?);
                if max < min {
                    return Err(fields.error("max", "is below min"));
                }
                Distribution::Uniform { min, max }
            }
            "exponential" if unit == Unit::Timestamp => {
                return Err(fields.error(
                    "type",
                    "exponential has no meaning for timestamps; use uniform, normal or constant",
                ));
            }
            "exponential" => {
                let mean = fields.number("mean")?;
                if mean < 0.0 {
                    return Err(fields.error("mean", "must be at least 0"));
                }
                Distribution::Exponential { mean }
            }
            "normal" => {
                let stddev = fields.number("stddev")?;
                if stddev < 0.0 {
                    return Err(fields.error("stddev", "must be at least 0"));
                }
                Distribution::Normal {
                    mean: point("mean")?,
                    stddev,
                }
            }
            other => {
                return Err(error(
                    &fields.path_of("type"),
                    format!(
                        "unknown distribution '{other}' (constant, uniform, exponential or normal)"
                    ),
                ));
            }
        };
        Ok(distribution)
    }

    /// Draws a number.
    pub fn sample(&self, random: &mut Random) -> f64 {
        match *self {
            Distribution::Constant(value) => value,
            Distribution::Uniform { min, max } => min + random.unit() * (max + 1.0 - min),
            Distribution::Exponential { mean } => random.exponential(mean),
            Distribution::Normal { mean, stddev } => random.normal(mean, stddev),
        }
    }

    /// Draws an index into a list of `len` entries: truncated, and clamped to the list, as
    /// learn-druid picks enum values and cardinality entries.
    pub fn index(&self, random: &mut Random, len: usize) -> usize {
        let sample = self.sample(random);
        if sample.is_nan() || sample < 0.0 {
            0
        } else {
            (sample as usize).min(len.saturating_sub(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mean_of(distribution: &Distribution) -> f64 {
        let mut random = Random::new(3);
        (0..20_000)
            .map(|_| distribution.sample(&mut random))
            .sum::<f64>()
            / 20_000.0
    }

    #[test]
    fn samples_have_the_configured_means() {
        let parse = |v: Value| Distribution::parse(&v, "d", Unit::Number).unwrap();
        let normal = parse(json!({"type": "normal", "mean": 70, "stddev": 20}));
        assert!((mean_of(&normal) - 70.0).abs() < 0.6);
        let exponential = parse(json!({"type": "exponential", "mean": 10000}));
        assert!((mean_of(&exponential) - 10000.0).abs() < 250.0);
        let uniform = parse(json!({"type": "Uniform", "min": 1, "max": 140}));
        assert!((mean_of(&uniform) - 71.0).abs() < 1.0);
        assert_eq!(
            mean_of(&parse(json!({"type": "constant", "value": 4}))),
            4.0
        );
    }

    #[test]
    fn uniform_indexes_cover_min_to_max() {
        let uniform = Distribution::Uniform { min: 0.0, max: 7.0 };
        let mut random = Random::new(5);
        let mut seen = [0; 8];
        for _ in 0..8000 {
            seen[uniform.index(&mut random, 8)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 850), "{seen:?}");
    }

    #[test]
    fn timestamps_are_read_as_iso_text() {
        let value = json!({"type": "uniform", "min": "2024-01-01T00:00:00Z", "max": "2024-01-02"});
        let parsed = Distribution::parse(&value, "d", Unit::Timestamp).unwrap();
        assert_eq!(
            parsed,
            Distribution::Uniform {
                min: 1_704_067_200.0,
                max: 1_704_153_600.0
            }
        );
    }

    #[test]
    fn errors_name_the_field() {
        let bad = |v: Value| {
            Distribution::parse(&v, "states[0].delay", Unit::Number)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad(json!({"type": "poisson"})),
            "states[0].delay.type: unknown distribution 'poisson' (constant, uniform, exponential or normal)"
        );
        assert_eq!(
            bad(json!({"type": "normal", "mean": 1})),
            "states[0].delay.stddev: is required"
        );
        assert_eq!(
            bad(json!({"type": "uniform", "min": 5, "max": "x"})),
            "states[0].delay.max: expected a number"
        );
    }
}

//! Per-topic settings, named and valued as Kafka's topic-level configs.

use std::fmt;
use std::time::Duration;

/// What happens to a topic's old records (`cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// Records older than the retention are deleted.
    #[default]
    Delete,
    /// Only the latest record of each key is kept; tombstones (null values) go after
    /// `delete.retention.ms`.
    Compact,
    /// Compacted, and records older than the retention are deleted too.
    CompactDelete,
}

impl CleanupPolicy {
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    fn name(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

/// A topic's settings. The defaults are Kafka's: delete after the log's retention.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicConfig {
    pub cleanup_policy: CleanupPolicy,
    /// `retention.ms`: None keeps the log's default, `Some(None)` (-1) keeps records forever.
    pub retention: Option<Option<Duration>>,
    /// `delete.retention.ms`: how long a compacted topic keeps tombstones (default one day).
    pub delete_retention: Option<Duration>,
}

/// Kafka's default `delete.retention.ms`.
const DEFAULT_DELETE_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The topic configs this log applies.
pub const TOPIC_CONFIG_NAMES: [&str; 3] = ["cleanup.policy", "retention.ms", "delete.retention.ms"];

impl TopicConfig {
    /// A compacted topic, as Kafka Streams creates its changelogs.
    pub fn compacted() -> TopicConfig {
        TopicConfig {
            cleanup_policy: CleanupPolicy::Compact,
            ..TopicConfig::default()
        }
    }

    /// Reads Kafka topic configs; a name this log does not apply, or a bad value, is an error
    /// naming it (Kafka refuses unknown topic configs too).
    pub fn from_properties<'a>(
        properties: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TopicConfig, String> {
        let mut config = TopicConfig::default();
        for (name, value) in properties {
            let millis = || {
                value.trim().parse::<i64>().map_err(|_| {
                    format!("topic config {name} must be a whole number, found '{value}'")
                })
            };
            match name {
                "cleanup.policy" => {
                    let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
                    parts.sort_unstable();
                    parts.dedup();
                    config.cleanup_policy = match parts.as_slice() {
                        ["delete"] => CleanupPolicy::Delete,
                        ["compact"] => CleanupPolicy::Compact,
                        ["compact", "delete"] => CleanupPolicy::CompactDelete,
                        _ => {
                            return Err(format!(
                                "topic config cleanup.policy must be delete, compact or \
                                 'compact,delete', found '{value}'"
                            ));
                        }
                    };
                }
                "retention.ms" => {
                    config.retention = Some(match millis()? {
                        -1 => None,
                        n if n >= 0 => Some(Duration::from_millis(n as u64)),
                        n => {
                            return Err(format!(
                                "topic config retention.ms must be -1 or more, found {n}"
                            ));
                        }
                    });
                }
                "delete.retention.ms" => {
                    let n = u64::try_from(millis()?).map_err(|_| {
                        "topic config delete.retention.ms must not be negative".to_string()
                    })?;
                    config.delete_retention = Some(Duration::from_millis(n));
                }
                other => {
                    return Err(format!(
                        "unknown or unsupported topic config '{other}' (supported: {})",
                        TOPIC_CONFIG_NAMES.join(", ")
                    ));
                }
            }
        }
        Ok(config)
    }

    /// The settings that differ from the defaults, as Kafka topic configs.
    pub fn to_properties(&self) -> Vec<(&'static str, String)> {
        let mut properties = Vec::new();
        if self.cleanup_policy != CleanupPolicy::Delete {
            properties.push(("cleanup.policy", self.cleanup_policy.name().to_string()));
        }
        if let Some(retention) = self.retention {
            let millis = retention.map_or(-1, |d| d.as_millis() as i64);
            properties.push(("retention.ms", millis.to_string()));
        }
        if let Some(keep) = self.delete_retention {
            properties.push(("delete.retention.ms", keep.as_millis().to_string()));
        }
        properties
    }

    /// How long tombstones of a compacted topic are kept.
    pub fn tombstone_retention(&self) -> Duration {
        self.delete_retention.unwrap_or(DEFAULT_DELETE_RETENTION)
    }
}

impl fmt::Display for TopicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties = self.to_properties();
        if properties.is_empty() {
            return f.write_str("defaults");
        }
        let text: Vec<String> = properties.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&text.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_and_bad_ones_are_named() {
        let config = TopicConfig::from_properties([
            ("cleanup.policy", "delete, compact"),
            ("retention.ms", "-1"),
            ("delete.retention.ms", "500"),
        ])
        .unwrap();
        assert_eq!(config.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(config.retention, Some(None));
        assert_eq!(config.tombstone_retention(), Duration::from_millis(500));
        let text = config.to_properties();
        let again =
            TopicConfig::from_properties(text.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
        assert_eq!(again, config);
        assert!(TopicConfig::default().to_properties().is_empty());
        let unknown = TopicConfig::from_properties([("segment.ms", "5")]).unwrap_err();
        assert!(unknown.contains("'segment.ms'"), "{unknown}");
        let bad = TopicConfig::from_properties([("cleanup.policy", "keep")]).unwrap_err();
        assert!(bad.contains("'keep'"), "{bad}");
        assert!(TopicConfig::from_properties([("retention.ms", "-2")]).is_err());
    }
}

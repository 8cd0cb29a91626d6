//! The stream a supervisor reads: one topic, or every topic whose whole name a topicPattern
//! matches (Druid's multi-topic ingestion), and which task group reads each partition.

use millrace_catalog::TopicPartition;
use millrace_log::{Log, LogError};
use millrace_segments::spec::{SpecError, SupervisorSpec};
use regex::Regex;

/// The topic or topics of a spec.
#[derive(Debug, Clone)]
pub struct Stream {
    /// The topic, or the topicPattern as written.
    pub name: String,
    /// The compiled topicPattern, anchored to match whole names.
    pattern: Option<Regex>,
}

impl Stream {
    /// The stream of a spec; an invalid topicPattern is a spec error.
    pub fn of(spec: &SupervisorSpec) -> Result<Stream, SpecError> {
        let io = &spec.spec.io_config;
        if let Some(topic) = io.topic.as_ref().or(io.stream.as_ref()) {
            return Ok(Stream {
                name: topic.clone(),
                pattern: None,
            });
        }
        let written = io.topic_pattern.clone().unwrap_or_default();
        let pattern = Regex::new(&format!("^(?:{written})$")).map_err(|e| SpecError {
            path: "spec.ioConfig.topicPattern".into(),
            message: format!("not a valid regular expression: {e}"),
        })?;
        Ok(Stream {
            name: written,
            pattern: Some(pattern),
        })
    }

    /// The partitions to read now, in order; None when the topic named does not exist (a
    /// pattern that matches no topic yet has no partitions).
    pub fn partitions(&self, log: &dyn Log) -> Result<Option<Vec<TopicPartition>>, LogError> {
        let Some(pattern) = &self.pattern else {
            return Ok(log.partition_count(&self.name)?.map(|count| {
                (0..count)
                    .map(|p| TopicPartition::new(&self.name, p))
                    .collect()
            }));
        };
        let mut partitions = Vec::new();
        for topic in log.topics()? {
            if pattern.is_match(&topic.name) {
                partitions
                    .extend((0..topic.partitions).map(|p| TopicPartition::new(&topic.name, p)));
            }
        }
        partitions.sort();
        Ok(Some(partitions))
    }

    /// The task group that reads a partition: `partition % taskCount` for a topic, and for a
    /// topicPattern `|31 * hash(topic) + partition| % taskCount` with Java's string hash, as
    /// Druid assigns them.
    pub fn group_of(&self, partition: &TopicPartition, task_count: u32) -> u32 {
        let task_count = task_count.max(1);
        if self.pattern.is_none() {
            return partition.partition % task_count;
        }
        let hash = java_string_hash(&partition.topic)
            .wrapping_mul(31)
            .wrapping_add(partition.partition as i32);
        hash.unsigned_abs() % task_count
    }
}

/// Java's `String.hashCode`: over UTF-16 code units, wrapping.
fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(unit as i32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hashes_and_groups() {
        // Values Java prints for "".hashCode(), "a".hashCode() and "events".hashCode().
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("events"), -1291329255);
    }
}

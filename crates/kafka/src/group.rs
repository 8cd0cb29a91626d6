//! Consumer groups: a client per group for its committed offsets and commits, which becomes
//! a subscribed member (cooperative-sticky assignment) when this process joins the group to
//! share its partitions. The member only takes part in the group: its partitions are paused,
//! since the log's reader reads records where the caller asks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use millrace_log::{GroupMembership, LogError, RebalanceListener, TopicPartition};
use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};

use crate::broker;

/// A group's client.
pub type GroupConsumer = BaseConsumer<GroupContext>;

/// The group clients of one log, by group id.
pub type GroupClients = Arc<Mutex<HashMap<String, Arc<GroupConsumer>>>>;

/// Passes a member's assignment changes to its listener (none for a client that only reads
/// and commits offsets).
pub struct GroupContext {
    listener: Option<Arc<dyn RebalanceListener>>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    /// Revocations reach the listener before the partitions are given up, so that it commits
    /// first; a lost assignment (the member timed out) is told apart.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (Some(listener), Rebalance::Revoke(list)) = (&self.listener, rebalance) else {
            return;
        };
        let partitions = partitions_of(list);
        if consumer.assignment_lost() {
            listener.lost(&partitions);
        } else {
            listener.revoked(&partitions);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Some(listener) = &self.listener else {
            return;
        };
        match rebalance {
            Rebalance::Assign(list) => {
                if let Err(e) = consumer.pause(list) {
                    tracing::warn!("Kafka: pausing the group member's partitions: {e}");
                }
                listener.assigned(&partitions_of(list));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!("Kafka: group rebalance: {e}"),
        }
    }
}

fn partitions_of(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|e| TopicPartition {
            topic: e.topic().to_string(),
            partition: e.partition().max(0) as u32,
        })
        .collect()
}

/// Makes a group's client from the consumer's config: a member (subscribed to `topics`) when
/// there is a listener.
pub fn group_consumer(
    mut config: ClientConfig,
    group: &str,
    member: Option<(&[String], Arc<dyn RebalanceListener>)>,
) -> Result<GroupConsumer, LogError> {
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    let Some((topics, listener)) = member else {
        return config
            .create_with_context(GroupContext { listener: None })
            .map_err(|e| broker(format!("creating a consumer of group '{group}'"), e));
    };
    // Cooperative rebalances move only the partitions that change owner; the member's own
    // fetches are paused, so a small queue is enough.
    config
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("queued.max.messages.kbytes", "1024");
    let consumer: GroupConsumer = config
        .create_with_context(GroupContext {
            listener: Some(listener),
        })
        .map_err(|e| broker(format!("joining group '{group}'"), e))?;
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| broker(format!("joining group '{group}'"), e))?;
    Ok(consumer)
}

/// How often the same error of a group member is logged again while it lasts.
const REPEAT_WARNING: Duration = Duration::from_secs(10);

/// This process's membership of a group on Kafka.
pub struct KafkaMembership {
    pub group: String,
    pub consumer: Arc<GroupConsumer>,
    /// Where the member is registered while it lasts, so that commits go through it.
    pub clients: GroupClients,
    /// The last error logged, and when: a cluster that is down reports the same one at
    /// every poll.
    pub last_warning: Mutex<Option<(String, Instant)>>,
}

impl GroupMembership for KafkaMembership {
    fn poll(&self, timeout: Duration) -> Result<(), LogError> {
        // Partitions are paused, so nothing but the group's events arrives here.
        if let Some(Err(e)) = self.consumer.poll(timeout) {
            let message = e.to_string();
            let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
            let repeated = last
                .as_ref()
                .is_some_and(|(m, at)| *m == message && at.elapsed() < REPEAT_WARNING);
            if !repeated {
                tracing::warn!(group = %self.group, "Kafka group member: {message}");
                *last = Some((message, Instant::now()));
            }
        }
        Ok(())
    }
}

impl Drop for KafkaMembership {
    /// Leaves the group: later commits use a plain client again, and the member is closed
    /// (its partitions revoked through the listener) when the last user lets it go.
    fn drop(&mut self) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients
            .get(&self.group)
            .is_some_and(|c| Arc::ptr_eq(c, &self.consumer))
        {
            clients.remove(&self.group);
        }
    }
}

//! Sharing a consumer group's partitions between processes: a member joins with the topics it
//! reads, and the log tells it (through a [`RebalanceListener`]) which partitions it owns as
//! members come and go. On Kafka the group's coordinator decides; the embedded log belongs to
//! one process, whose only member gets every partition ([`SoleMember`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::LogError;

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

/// What a member is told as its share of the group changes. Called from
/// [`GroupMembership::poll`], on the polling thread.
pub trait RebalanceListener: Send + Sync {
    /// These partitions are now this member's.
    fn assigned(&self, partitions: &[TopicPartition]);

    /// These partitions are being taken from this member: return once the work done on them
    /// is committed. The group waits (its next owner starts from the committed offsets).
    fn revoked(&self, partitions: &[TopicPartition]);

    /// These partitions were taken without waiting (the member timed out or was fenced): work
    /// on them that is not committed must be dropped, since another member redoes it.
    fn lost(&self, partitions: &[TopicPartition]);
}

/// A process's membership of a group; leaving the group when dropped (after revoking what it
/// owns, through the listener).
pub trait GroupMembership: Send {
    /// Serves the group for up to `timeout` (heartbeats, rebalances), calling the listener
    /// when the assignment changes.
    fn poll(&self, timeout: Duration) -> Result<(), LogError>;
}

/// The only member of a group on a log one process owns: it is assigned every partition of
/// its topics at its first poll, and they are never taken away.
pub struct SoleMember {
    partitions: Vec<TopicPartition>,
    listener: Arc<dyn RebalanceListener>,
    assigned: AtomicBool,
}

impl SoleMember {
    /// The member owning these partitions.
    pub fn new(partitions: Vec<TopicPartition>, listener: Arc<dyn RebalanceListener>) -> Self {
        SoleMember {
            partitions,
            listener,
            assigned: AtomicBool::new(false),
        }
    }
}

impl GroupMembership for SoleMember {
    fn poll(&self, timeout: Duration) -> Result<(), LogError> {
        if self.assigned.swap(true, Ordering::SeqCst) {
            std::thread::sleep(timeout);
        } else {
            self.listener.assigned(&self.partitions);
        }
        Ok(())
    }
}

impl Drop for SoleMember {
    fn drop(&mut self) {
        if self.assigned.load(Ordering::SeqCst) {
            self.listener.revoked(&self.partitions);
        }
    }
}

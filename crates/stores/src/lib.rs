//! State stores as Kafka Streams has them: keyValue, window and session stores holding
//! serialized keys and values, in memory (ordered maps) or on disk (fjall), each task owning
//! its own instance.
//!
//! A [`Store`] buffers writes until its task commits: reads see the buffer first, a failed
//! record's writes are undone ([`Store::savepoint`]), and at commit the buffered writes become
//! changelog records and are applied to the backend together with the changelog offset they
//! reach, so a restart knows where to resume restoring.

mod backend;
pub mod entries;
pub mod keys;
mod persistent;
mod store;

use std::time::Duration;

pub use backend::{Backend, MemoryBackend};
pub use persistent::{PersistentBackend, StateDir};
pub use store::{ChangelogRecord, Store};

/// The kinds of stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    KeyValue,
    Window,
    Session,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::KeyValue => "keyValue",
            StoreKind::Window => "window",
            StoreKind::Session => "session",
        }
    }
}

/// What a store is, as its definition declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    pub name: String,
    pub kind: StoreKind,
    /// On disk (fjall) rather than in memory.
    pub persistent: bool,
    /// Values carry the timestamp of the record that wrote them.
    pub timestamped: bool,
    /// Keeps earlier values of a key for `history_retention` (keyValue stores).
    pub versioned: bool,
    pub history_retention: Duration,
    /// How long window and session stores keep their entries.
    pub retention: Duration,
    pub window_size: Duration,
    pub retain_duplicates: bool,
    /// Updates collapse per key until commit before they go downstream and to the changelog.
    pub caching: bool,
    /// Writes go to a changelog topic that restores the store.
    pub logging: bool,
}

impl StoreSpec {
    /// A keyValue store with every option off.
    pub fn key_value(name: &str) -> StoreSpec {
        StoreSpec {
            name: name.to_string(),
            kind: StoreKind::KeyValue,
            persistent: false,
            timestamped: false,
            versioned: false,
            history_retention: Duration::ZERO,
            retention: Duration::ZERO,
            window_size: Duration::ZERO,
            retain_duplicates: false,
            caching: false,
            logging: false,
        }
    }

    /// The changelog topic Kafka Streams names for this store.
    pub fn changelog_topic(&self, application_id: &str) -> String {
        format!("{application_id}-{}-changelog", self.name)
    }
}

/// Errors of stores.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store '{store}' on disk: {source}")]
    Disk {
        store: String,
        #[source]
        source: fjall::Error,
    },
    #[error("state directory {dir}: {reason}")]
    StateDir { dir: String, reason: String },
}

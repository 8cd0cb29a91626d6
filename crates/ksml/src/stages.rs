//! What flows at each point of a pipeline (Kafka Streams' KStream, KGroupedStream, windowed
//! streams and KTable), and which operations each accepts. Validation and the runtime's
//! topology builder both follow these rules, so they cannot disagree.

use crate::model::{OpKind, Operation};

/// What the records at a point of a pipeline are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A stream of records.
    Stream,
    /// Grouped by key (`groupByKey`, `groupBy`), waiting for an aggregation or windowing.
    Grouped,
    /// Grouped and windowed by time (`windowByTime`).
    TimeWindowed,
    /// Grouped and windowed by session (`windowBySession`).
    SessionWindowed,
    /// A table: the latest value of each key, as updates.
    Table,
    /// A table keyed by window (an aggregation of a windowed stream).
    WindowedTable,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Stream => "stream",
            Stage::Grouped => "grouped stream",
            Stage::TimeWindowed => "time-windowed stream",
            Stage::SessionWindowed => "session-windowed stream",
            Stage::Table => "table",
            Stage::WindowedTable => "windowed table",
        }
    }

    /// True where a pipeline may end: its records can go to a sink.
    pub fn can_sink(self) -> bool {
        matches!(self, Stage::Stream | Stage::Table | Stage::WindowedTable)
    }
}

/// The stage after `op`, or why `op` cannot follow `stage`.
pub fn stage_after(stage: Stage, op: &Operation) -> Result<Stage, String> {
    use OpKind as K;
    let fail = |needs: &str| {
        Err(format!(
            "operation '{}' needs {needs}, but follows a {}",
            op.type_name,
            stage.name()
        ))
    };
    match (op.kind, stage) {
        (K::GroupByKey | K::GroupBy, Stage::Stream) => Ok(Stage::Grouped),
        (K::GroupByKey | K::GroupBy, _) => fail("a stream"),
        (K::WindowByTime, Stage::Grouped) => Ok(Stage::TimeWindowed),
        (K::WindowBySession, Stage::Grouped) => Ok(Stage::SessionWindowed),
        (K::WindowByTime | K::WindowBySession, _) => {
            fail("a grouped stream (groupByKey or groupBy before it)")
        }
        (K::Count | K::Reduce | K::Aggregate, Stage::Grouped) => Ok(Stage::Table),
        (K::Count | K::Reduce | K::Aggregate, Stage::TimeWindowed | Stage::SessionWindowed) => {
            Ok(Stage::WindowedTable)
        }
        (K::Cogroup, Stage::Grouped) => Ok(Stage::Grouped),
        (K::Count | K::Reduce | K::Aggregate | K::Cogroup, _) => {
            fail("a grouped stream (groupByKey or groupBy before it)")
        }
        (K::ToStream, Stage::Table | Stage::WindowedTable) => Ok(Stage::Stream),
        (K::ToStream, _) => fail("a table"),
        (K::Suppress, Stage::Table) if op.text("until") == Some("windowCloses") => {
            fail("a windowed table (suppress until windowCloses)")
        }
        (K::Suppress, Stage::Table | Stage::WindowedTable) => Ok(stage),
        (K::Suppress, _) => fail("a table"),
        (K::ToTable, Stage::Stream) => Ok(Stage::Table),
        (K::ToTable, _) => fail("a stream"),
        (K::Join | K::LeftJoin | K::OuterJoin, Stage::Stream | Stage::Table) => Ok(stage),
        (K::Join | K::LeftJoin | K::OuterJoin, _) => fail("a stream or a table"),
        (_, Stage::Stream) => Ok(Stage::Stream),
        (_, Stage::Table | Stage::WindowedTable) => Err(format!(
            "operation '{}' on a {} is not supported yet: put toStream before it",
            op.type_name,
            stage.name()
        )),
        (_, _) => fail("a stream"),
    }
}

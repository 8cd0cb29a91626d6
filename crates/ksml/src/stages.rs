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
    /// A grouped stream with its aggregator (`cogroup`), waiting for `aggregate`.
    Cogrouped,
    /// A cogrouped stream windowed by time.
    CogroupedTimeWindowed,
    /// A cogrouped stream windowed by session.
    CogroupedSessionWindowed,
    /// A table regrouped by a new key (`groupBy` on a table): its updates are added to and
    /// taken out of aggregates (adder and subtractor).
    GroupedTable,
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
            Stage::Cogrouped => "cogrouped stream",
            Stage::CogroupedTimeWindowed => "time-windowed cogrouped stream",
            Stage::CogroupedSessionWindowed => "session-windowed cogrouped stream",
            Stage::GroupedTable => "grouped table",
            Stage::Table => "table",
            Stage::WindowedTable => "windowed table",
        }
    }

    /// True where a pipeline may end: its records can go to a sink.
    pub fn can_sink(self) -> bool {
        matches!(self, Stage::Stream | Stage::Table | Stage::WindowedTable)
    }

    /// True for the stages of a table (plain or windowed).
    pub fn is_table(self) -> bool {
        matches!(self, Stage::Table | Stage::WindowedTable)
    }

    /// True for session-windowed stages, whose aggregations need a merger.
    pub fn is_session_windowed(self) -> bool {
        matches!(
            self,
            Stage::SessionWindowed | Stage::CogroupedSessionWindowed
        )
    }
}

/// The stage after `op`, or why `op` cannot follow `stage`.
pub fn stage_after(stage: Stage, op: &Operation) -> Result<Stage, String> {
    use OpKind as K;
    use Stage as S;
    let fail = |needs: &str| {
        Err(format!(
            "operation '{}' needs {needs}, but follows a {}",
            op.type_name,
            stage.name()
        ))
    };
    match (op.kind, stage) {
        (K::GroupByKey | K::GroupBy, S::Stream) => Ok(S::Grouped),
        (K::GroupBy, S::Table) => Ok(S::GroupedTable),
        (K::GroupByKey, _) => fail("a stream"),
        (K::GroupBy, _) => fail("a stream or a table"),
        (K::WindowByTime, S::Grouped) => Ok(S::TimeWindowed),
        (K::WindowByTime, S::Cogrouped) => Ok(S::CogroupedTimeWindowed),
        (K::WindowBySession, S::Grouped) => Ok(S::SessionWindowed),
        (K::WindowBySession, S::Cogrouped) => Ok(S::CogroupedSessionWindowed),
        (K::WindowByTime | K::WindowBySession, _) => {
            fail("a grouped stream (groupByKey or groupBy before it)")
        }
        (K::Cogroup, S::Grouped) => Ok(S::Cogrouped),
        (K::Cogroup, S::Cogrouped) => Err(
            "cogroup of a cogrouped stream is not supported (KSML refuses it too): one cogroup \
             per grouped stream"
                .into(),
        ),
        (K::Count | K::Reduce | K::Aggregate, S::Grouped | S::GroupedTable) => Ok(S::Table),
        (K::Count | K::Reduce | K::Aggregate, S::TimeWindowed | S::SessionWindowed) => {
            Ok(S::WindowedTable)
        }
        (K::Aggregate, S::Cogrouped) => Ok(S::Table),
        (K::Aggregate, S::CogroupedTimeWindowed | S::CogroupedSessionWindowed) => {
            Ok(S::WindowedTable)
        }
        (K::Count | K::Reduce, S::Cogrouped)
        | (K::Count | K::Reduce, S::CogroupedTimeWindowed | S::CogroupedSessionWindowed) => {
            fail("a grouped stream (a cogrouped stream is aggregated with aggregate)")
        }
        (K::Count | K::Reduce | K::Aggregate | K::Cogroup, _) => {
            fail("a grouped stream (groupByKey or groupBy before it)")
        }
        (K::ToStream, S::Table | S::WindowedTable) => Ok(S::Stream),
        (K::ToStream, _) => fail("a table"),
        (K::Suppress, S::Table) if op.text("until") == Some("windowCloses") => {
            fail("a windowed table (suppress until windowCloses)")
        }
        (K::Suppress, S::Table | S::WindowedTable) => Ok(stage),
        (K::Suppress, _) => fail("a table"),
        (K::ToTable, S::Stream) => Ok(S::Table),
        (K::ToTable, _) => fail("a stream"),
        (K::Join | K::LeftJoin | K::OuterJoin, S::Stream | S::Table) => Ok(stage),
        (K::Join | K::LeftJoin | K::OuterJoin, _) => fail("a stream or a table"),
        (K::Filter | K::FilterNot | K::MapValues, S::Table | S::WindowedTable) => Ok(stage),
        (_, S::Stream) => Ok(S::Stream),
        (_, S::Table | S::WindowedTable) => Err(format!(
            "operation '{}' does not apply to a {} (KSML's tables take filter, filterNot, \
             mapValues, suppress, groupBy, joins and toStream): put toStream before it",
            op.type_name,
            stage.name()
        )),
        (_, _) => fail("a stream"),
    }
}

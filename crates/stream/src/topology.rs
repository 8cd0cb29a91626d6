//! The executable topology: validated definitions turned into a graph of operator nodes fed by
//! sources (one per input topic), with every Python function compiled once.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace_log::{Log, LogError};
use millrace_python::{Namespace, PyFunction, Python, PythonError};
use millrace_types::DataType;

use millrace_ksml::load::python_spec;
use millrace_ksml::model::*;
use millrace_ksml::stages::Stage;
use millrace_python::pyo3::prelude::*;
use millrace_stores::{StoreKind, StoreSpec};

use crate::global::{GlobalId, GlobalTable};
pub use crate::py_stores::{
    EntryFormat, KeyValueStoreHandle, SessionStoreHandle, VersionedKeyValueStoreHandle,
    WindowStoreHandle,
};
use crate::task_stores::{StoreId, StoreSlot};

/// Index of a node in [`Topology::nodes`].
pub type NodeId = usize;
/// Index of a function in [`Topology::functions`].
pub type FnId = usize;

/// A compiled KSML function and the type its results are converted to.
pub struct Function {
    pub name: String,
    pub function_type: FunctionType,
    pub result_type: Option<DataType>,
    /// The stores it lists in `stores:`.
    pub stores: Vec<StoreId>,
    pub py: PyFunction,
}

/// Where `print` writes.
pub enum PrintTarget {
    Stdout,
    File(Mutex<BufWriter<File>>),
}

impl PrintTarget {
    pub fn write_line(&self, line: &str) -> std::io::Result<()> {
        match self {
            PrintTarget::Stdout => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")
            }
            PrintTarget::File(file) => {
                let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
                writeln!(file, "{line}")?;
                file.flush()
            }
        }
    }
}

/// A topic a node writes to, with the types records are encoded in.
pub struct TopicTarget {
    /// Shared with every record emitted to it, so emitting allocates no name.
    pub topic: Arc<str>,
    pub key_type: DataType,
    pub value_type: DataType,
    pub partitioner: Option<FnId>,
    /// A grouped table's repartition topic: a record's old value rides along in the
    /// [`OLD_VALUE_HEADER`] header, for the aggregation to take out.
    pub carries_old_values: bool,
}

/// The header in which a grouped table's repartition records carry the old value of their
/// update (encoded as the value is); the reading side takes it off again.
pub const OLD_VALUE_HEADER: &str = "millrace.old";

/// What a node does to each record.
pub enum Step {
    Filter {
        predicate: FnId,
        keep_when: bool,
    },
    Peek {
        action: FnId,
    },
    MapValues {
        mapper: FnId,
    },
    MapKey {
        mapper: FnId,
    },
    Map {
        mapper: FnId,
    },
    FlatMap {
        mapper: FnId,
    },
    FlatMapValues {
        mapper: FnId,
    },
    TransformMetadata {
        mapper: FnId,
    },
    ConvertKey,
    ConvertValue,
    /// Passes records on unchanged (merge points and `as` outputs).
    Pass,
    /// count, reduce or aggregate of a grouped (and maybe windowed) stream into a store.
    Aggregate(Box<Aggregation>),
    /// Holds a table's updates back until a window closes or a time limit passes.
    Suppress(Box<Suppression>),
    /// Keeps the latest value of each key in a store (a table read from a topic, toTable).
    Materialize {
        store: StoreId,
    },
    /// Keeps a table update when its new value passes the predicate (otherwise the update
    /// deletes the key); the old value likewise, for nodes downstream that read it.
    TableFilter {
        predicate: FnId,
        keep_when: bool,
    },
    /// Maps a table update's new value (and its old value, for nodes downstream that read it).
    TableMapValues {
        mapper: FnId,
    },
    /// Picks a new key and value for a table update's old and new values (groupBy on a
    /// table): the old pair goes on to be taken out of its aggregate, the new one to be added.
    TableGroupBy {
        mapper: FnId,
    },
    /// Reads a grouped table's repartition records back: the old value from its header.
    ReadOldValues,
    /// Joins each stream record with the table's value for its key.
    TableJoin(Box<TableJoin>),
    /// One side of a table-table join: joins each update with the other table's value for
    /// its key.
    TableTableJoin(Box<TableTableJoinSide>),
    /// A part of a foreign-key join of two tables.
    ForeignKeyJoin(Box<ForeignKeyPart>),
    /// Joins each stream record with a global table's value for a key its mapper picks.
    GlobalJoin(Box<GlobalJoin>),
    /// One side of a stream-stream join: keeps the record, joins it with the other side's
    /// records of its key within the time difference.
    StreamJoin(Box<StreamJoinSide>),
    /// First branch whose condition holds (or that has none) gets the record.
    Branch {
        branches: Vec<(Option<FnId>, NodeId)>,
    },
    To(TopicTarget),
    ToTopicNameExtractor {
        extractor: FnId,
        partitioner: Option<FnId>,
    },
    ForEach {
        action: FnId,
    },
    Print {
        target: PrintTarget,
        label: Option<String>,
        mapper: Option<FnId>,
    },
}

/// How an aggregation combines a record with what its store holds for the key.
pub enum AggregationKind {
    Count,
    Reduce {
        reducer: FnId,
    },
    Aggregate {
        initializer: FnId,
        aggregator: FnId,
        /// Combines two sessions' aggregates when a record joins them (session windows).
        merger: Option<FnId>,
    },
    /// count of a grouped table: an update's old value counts one less, its new value one more.
    TableCount,
    /// reduce of a grouped table: an update's old value is taken out of the aggregate with
    /// `subtractor`, its new value added with `adder`.
    TableReduce {
        adder: FnId,
        subtractor: FnId,
    },
    /// aggregate of a grouped table, as TableReduce with an `initializer` for new keys.
    TableAggregate {
        initializer: FnId,
        adder: FnId,
        subtractor: FnId,
    },
}

impl AggregationKind {
    /// True for the aggregations of a grouped table, whose updates carry old values.
    pub fn of_grouped_table(&self) -> bool {
        matches!(
            self,
            AggregationKind::TableCount
                | AggregationKind::TableReduce { .. }
                | AggregationKind::TableAggregate { .. }
        )
    }
}

/// Tumbling or hopping windows (milliseconds): a record at `t` belongs to every window
/// `[start, start + size)` with `start` a multiple of `advance` and `start <= t < start + size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    pub size: i64,
    pub advance: i64,
    /// How long after a window ends records are still added to it.
    pub grace: i64,
}

impl TimeWindows {
    fn of(op: &Operation) -> TimeWindows {
        let millis = |field: &str| op.duration(field).map(|d| d.as_millis() as i64);
        let size = millis("duration").expect("validated").max(1);
        TimeWindows {
            size,
            advance: millis("advanceBy").unwrap_or(size),
            grace: millis("grace").unwrap_or(0),
        }
    }

    /// The starts of the windows a timestamp belongs to, as Kafka Streams computes them.
    pub fn starts_for(&self, timestamp: i64) -> impl Iterator<Item = i64> + '_ {
        let first = (timestamp - self.size + self.advance).max(0) / self.advance * self.advance;
        (0..)
            .map(move |i| first + i * self.advance)
            .take_while(move |start| *start <= timestamp)
    }
}

/// Session windows (milliseconds): a key's records less than `gap` apart form one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    pub gap: i64,
    /// How long after a session ends records may still extend it.
    pub grace: i64,
}

/// Sliding windows (milliseconds), as Kafka Streams': every window `[start, start +
/// time_difference]` (both ends included) that begins or ends at a record of the key; records
/// within the time difference of each other share a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    pub time_difference: i64,
    pub grace: i64,
}

/// The windows of a windowed aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    Time(TimeWindows),
    Session(SessionWindows),
    Sliding(SlidingWindows),
}

impl Windows {
    pub fn grace(&self) -> i64 {
        match self {
            Windows::Time(w) => w.grace,
            Windows::Session(s) => s.grace,
            Windows::Sliding(w) => w.grace,
        }
    }

    /// The size of a window, where all have one (None for sessions).
    pub fn size(&self) -> Option<i64> {
        match self {
            Windows::Time(w) => Some(w.size),
            Windows::Sliding(w) => Some(w.time_difference),
            Windows::Session(_) => None,
        }
    }

    /// The least a window store keeps a window for: until it can no longer change.
    fn least_retention(&self) -> i64 {
        match self {
            Windows::Time(w) => w.size + w.grace,
            Windows::Session(s) => s.gap + s.grace,
            Windows::Sliding(w) => w.time_difference + w.grace,
        }
    }
}

/// An aggregation node's work: its store and how it combines.
pub struct Aggregation {
    pub store: StoreId,
    pub kind: AggregationKind,
    /// The windows of a windowed aggregation (its store is a window or session store).
    pub windows: Option<Windows>,
    /// Sliding windows: the window store keeping the records, each window's aggregate is
    /// worked out from them.
    pub records: Option<StoreId>,
}

/// A stream-table join.
pub struct TableJoin {
    /// The table's store.
    pub store: StoreId,
    pub joiner: FnId,
    /// leftJoin: a record with no table value is joined with None (join drops it).
    pub left: bool,
}

/// Which records a join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Those that found a match.
    Inner,
    /// Every left one, matched or not.
    Left,
    /// Every one of either side.
    Outer,
}

impl JoinKind {
    /// The join an operation (join, leftJoin, outerJoin) makes.
    fn of(kind: OpKind) -> JoinKind {
        match kind {
            OpKind::LeftJoin => JoinKind::Left,
            OpKind::OuterJoin => JoinKind::Outer,
            _ => JoinKind::Inner,
        }
    }
}

/// One side of a table-table join (each side has a node; each reads the other's store).
pub struct TableTableJoinSide {
    /// The other table's store, read for its value of each update's key.
    pub other_store: StoreId,
    pub joiner: FnId,
    pub kind: JoinKind,
    /// This is the left table: its value is the joiner's value1.
    pub left: bool,
}

/// A part of a foreign-key join of two tables (see the builder's `foreign_key_join`).
pub enum ForeignKeyPart {
    /// This table's updates: subscribe the key to the other table's key the extractor picks
    /// (first child: the registration topic), unsubscribe from the old one; an update with no
    /// foreign key, or a deletion, is answered at once (second child: the response topic).
    Subscribe {
        extractor: FnId,
        this_store: StoreId,
        other_store: StoreId,
        /// A left join: every update gets an answer, found or not.
        left: bool,
    },
    /// Subscriptions read back, partitioned like the other table: kept, and answered with the
    /// other table's value.
    Register {
        subscriptions: StoreId,
        other_store: StoreId,
    },
    /// The other table's updates: answered to every key subscribed to them.
    OtherUpdate {
        subscriptions: StoreId,
        other_store: StoreId,
    },
    /// Answers read back, partitioned like this table: joined with this table's current
    /// value, unless that changed since the subscription (a stale answer).
    Resolve {
        this_store: StoreId,
        other_store: StoreId,
        joiner: FnId,
        left: bool,
    },
}

/// A stream-globalTable join.
pub struct GlobalJoin {
    pub global: GlobalId,
    /// Picks the global table's key from the record (a keyValueMapper).
    pub mapper: FnId,
    pub joiner: FnId,
    /// leftJoin: a record with no global value is joined with None (join drops it).
    pub left: bool,
}

/// One side of a stream-stream join (each side has a node; they share the two stores).
pub struct StreamJoinSide {
    /// Where this side's records wait for the other's.
    pub this_store: StoreId,
    pub other_store: StoreId,
    pub joiner: FnId,
    /// Records join when at most this far apart (ms).
    pub time_difference: i64,
    pub grace: i64,
    /// This is the left side: its value is the joiner's value1.
    pub left: bool,
    pub kind: JoinKind,
    /// leftJoin and outerJoin: where records that met no match wait until their window
    /// closes, to be joined with None then (shared by both sides).
    pub unmatched: Option<StoreId>,
}

/// When suppress lets a key's latest update go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuppressUntil {
    /// Once stream time reaches the window's end plus the windowing's grace.
    WindowCloses { grace: i64 },
    /// Once stream time is `limit` past the key's first held update.
    TimeLimit { limit: i64 },
}

/// A suppress node's work: its buffer (a logged in-memory store) and its limits.
pub struct Suppression {
    pub store: StoreId,
    pub until: SuppressUntil,
    pub max_records: Option<u64>,
    pub max_bytes: Option<u64>,
    /// A full buffer lets its oldest updates go early (otherwise the run stops).
    pub emit_early_when_full: bool,
}

/// An operator node. `key_type`/`value_type` are the types of the records it receives;
/// `out_key_type`/`out_value_type` those it passes on.
pub struct OpNode {
    pub name: String,
    pub step: Step,
    pub children: Vec<NodeId>,
    pub key_type: DataType,
    pub value_type: DataType,
    pub out_key_type: DataType,
    pub out_value_type: DataType,
    /// The namespace (definition) the node belongs to, for messages.
    pub namespace: String,
    /// A node downstream reads the old values of this node's table updates (a grouped table's
    /// subtractor, a table-table join), as Kafka Streams' `sendOldValues`: the node works
    /// them out and passes them on.
    pub sends_old_values: bool,
}

/// A topic read by the application, and the nodes its records go to.
pub struct Source {
    pub topic: String,
    pub roots: Vec<NodeId>,
    pub key_type: DataType,
    pub value_type: DataType,
    pub offset_reset: OffsetReset,
    pub timestamp_extractor: Option<FnId>,
}

/// A producer ready to run.
pub struct ProducerPlan {
    pub name: String,
    pub generator: FnId,
    pub target: TopicTarget,
    pub interval: Option<Duration>,
    pub count: Option<u64>,
    pub batch_size: u32,
    pub condition: Option<FnId>,
    pub until: Option<FnId>,
}

/// The compiled application: operator nodes, sources feeding them, functions, state stores
/// and producers.
pub struct Topology {
    pub nodes: Vec<OpNode>,
    pub sources: Vec<Source>,
    pub functions: Vec<Function>,
    pub stores: Vec<StoreSlot>,
    /// Global tables, loaded before processing and shared by every task.
    pub globals: Vec<GlobalTable>,
    /// Every node after the nodes that pass records to it.
    upstream_first: Vec<NodeId>,
    pub producers: Vec<ProducerPlan>,
    /// Kept alive for the functions compiled in them.
    _namespaces: Vec<Namespace>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Python(#[from] PythonError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(
        "store '{store}' holds the results of operation '{operation}' and is listed by a \
         function too: functions cannot use an aggregation's store yet"
    )]
    SharedStore { store: String, operation: String },
    #[error(
        "join '{operation}': the stream has {stream_partitions} partition(s) but topic \
         '{other}' has {other_partitions}; joined topics must be co-partitioned (the same \
         partition count)"
    )]
    NotCopartitioned {
        operation: String,
        stream_partitions: u32,
        other: String,
        other_partitions: u32,
    },
    #[error("cannot open print file {file}: {source}")]
    PrintFile {
        file: String,
        source: std::io::Error,
    },
}

/// What the records at some point of a pipeline are: their types, their stage (stream,
/// grouped, windowed, table), and what grouping needs to know.
#[derive(Clone)]
struct Types {
    key: DataType,
    value: DataType,
    stage: Stage,
    /// The key was changed since the records were partitioned by it: grouping goes through a
    /// repartition topic first, as in Kafka Streams.
    key_changed: bool,
    /// The windows of a windowByTime or windowBySession, for the aggregation that follows.
    windows: Option<Windows>,
    /// Partitions of the topic the records were read from; repartition topics get as many.
    partitions: u32,
    /// The grace of the windows a windowed table's keys come from.
    window_grace: Option<i64>,
    /// The store holding a table's latest values, where one does (a table read from a topic,
    /// an aggregation, toTable): what a table-table join looks keys up in.
    table_store: Option<StoreId>,
    /// The aggregator of a cogrouped stream, for the aggregate that follows.
    cogroup: Option<FnId>,
}

impl Types {
    /// A stream read from a topic.
    fn of_topic(key: DataType, value: DataType, partitions: u32) -> Types {
        Types {
            key,
            value,
            stage: Stage::Stream,
            key_changed: false,
            windows: None,
            partitions,
            window_grace: None,
            table_store: None,
            cogroup: None,
        }
    }

    /// A table read from a topic.
    fn of_table(topic: &TopicDef, partitions: u32) -> Types {
        Types {
            stage: Stage::Table,
            ..Types::of_topic(topic.key_type.clone(), topic.value_type.clone(), partitions)
        }
    }

    /// The same records with other key and value types.
    fn with(&self, key: DataType, value: DataType) -> Types {
        Types {
            key,
            value,
            ..self.clone()
        }
    }
}

/// A repartition topic in a pipeline: the node writing it, and what reading it back gives.
struct TopicLink {
    writer: NodeId,
    topic: String,
    wire: Types,
}

struct Builder<'a> {
    log: &'a dyn Log,
    application_id: &'a str,
    nodes: Vec<OpNode>,
    sources: Vec<Source>,
    functions: Vec<Function>,
    stores: Vec<StoreSlot>,
    /// (definition index, function name) -> compiled function.
    function_ids: HashMap<(usize, String), FnId>,
    /// (definition index, store name) -> store.
    store_ids: HashMap<(usize, String), StoreId>,
    /// (definition index, table name) -> the node materializing it and its store.
    tables: HashMap<(usize, String), (NodeId, StoreId)>,
    globals: Vec<GlobalTable>,
    /// (definition index, global table name) -> global table.
    global_ids: HashMap<(usize, String), GlobalId>,
    /// `as` names -> the Pass node publishing them and their types.
    published: HashMap<(usize, String), (NodeId, Types)>,
    /// Pipelines waiting for an `as` name: (definition, name) -> their first nodes.
    subscribers: HashMap<(usize, String), Vec<NodeId>>,
    namespace: String,
    definition: usize,
}

impl Topology {
    /// Compiles definitions (already validated) into a topology; topics read are created when
    /// missing, so that their partition counts are known.
    pub fn build(
        py: Python<'_>,
        definitions: &[Definition],
        log: &dyn Log,
        application_id: &str,
        with_pipelines: bool,
        with_producers: bool,
    ) -> Result<Topology, BuildError> {
        let mut builder = Builder {
            log,
            application_id,
            nodes: Vec::new(),
            sources: Vec::new(),
            functions: Vec::new(),
            stores: Vec::new(),
            function_ids: HashMap::new(),
            store_ids: HashMap::new(),
            tables: HashMap::new(),
            globals: Vec::new(),
            global_ids: HashMap::new(),
            published: HashMap::new(),
            subscribers: HashMap::new(),
            namespace: String::new(),
            definition: 0,
        };
        let mut namespaces = Vec::new();
        for (index, definition) in definitions.iter().enumerate() {
            namespaces.push(builder.compile_functions(py, index, definition)?);
        }
        let mut producers = Vec::new();
        for (index, definition) in definitions.iter().enumerate() {
            builder.definition = index;
            builder.namespace = definition.namespace.clone();
            if with_pipelines {
                // Pipelines publishing `as` names first, so that readers find their types.
                let mut order: Vec<&PipelineDef> = definition.pipelines.iter().collect();
                order.sort_by_key(|p| !definition.topics.contains_key(&p.from.name));
                for pipeline in order {
                    builder.pipeline(definition, pipeline)?;
                }
            }
            if with_producers {
                for producer in &definition.producers {
                    producers.push(builder.producer(definition, producer)?);
                }
            }
        }
        builder.link_published();
        let mut topology = Topology {
            nodes: builder.nodes,
            sources: builder.sources,
            functions: builder.functions,
            stores: builder.stores,
            globals: builder.globals,
            upstream_first: Vec::new(),
            producers,
            _namespaces: namespaces,
        };
        topology.upstream_first = topology.order_upstream_first();
        topology.mark_old_value_senders();
        Ok(topology)
    }

    /// Marks the nodes whose old values a node downstream reads (Kafka Streams'
    /// `sendOldValues`), downstream first: grouped tables and table-table joins read them,
    /// and the table operations between pass them on.
    fn mark_old_value_senders(&mut self) {
        for &id in self.upstream_first.iter().rev() {
            let reads_old = |child: &OpNode| match &child.step {
                Step::TableGroupBy { .. } | Step::TableTableJoin(_) => true,
                Step::ForeignKeyJoin(part) => {
                    matches!(part.as_ref(), ForeignKeyPart::Subscribe { .. })
                }
                Step::TableFilter { .. }
                | Step::TableMapValues { .. }
                | Step::Suppress(_)
                | Step::Pass => child.sends_old_values,
                _ => false,
            };
            let sends = self
                .successors(id)
                .any(|child| reads_old(&self.nodes[child]));
            self.nodes[id].sends_old_values = sends;
        }
    }

    /// The nodes in topological order (Kahn's algorithm over the operator graph).
    fn order_upstream_first(&self) -> Vec<NodeId> {
        let mut incoming = vec![0usize; self.nodes.len()];
        for id in 0..self.nodes.len() {
            for next in self.successors(id) {
                incoming[next] += 1;
            }
        }
        let mut ready: Vec<NodeId> = (0..self.nodes.len())
            .filter(|&n| incoming[n] == 0)
            .collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(id) = ready.pop() {
            order.push(id);
            for next in self.successors(id) {
                incoming[next] -= 1;
                if incoming[next] == 0 {
                    ready.push(next);
                }
            }
        }
        order
    }
}

impl Builder<'_> {
    fn compile_functions(
        &mut self,
        py: Python<'_>,
        index: usize,
        definition: &Definition,
    ) -> Result<Namespace, BuildError> {
        let namespace = Namespace::new(py, &definition.namespace, &definition.file_name())?;
        self.add_stores(py, index, definition, &namespace)?;
        for function in &definition.functions {
            if let Some(code) = &function.global_code {
                namespace.run_global_code(py, &function.name, code)?;
            }
            let compiled = namespace.define(py, &python_spec(function))?;
            self.function_ids
                .insert((index, function.name.clone()), self.functions.len());
            self.functions.push(Function {
                name: function.name.clone(),
                function_type: function.function_type.unwrap_or(FunctionType::Generic),
                result_type: function.result_type.clone(),
                stores: function
                    .stores
                    .iter()
                    .map(|r| self.store_ids[&(index, r.name.clone())])
                    .collect(),
                py: compiled,
            });
        }
        Ok(namespace)
    }

    /// Registers a definition's stores, and puts handles of those Python can use into the
    /// namespace's `stores`.
    fn add_stores(
        &mut self,
        py: Python<'_>,
        index: usize,
        definition: &Definition,
        namespace: &Namespace,
    ) -> Result<(), BuildError> {
        let failed = |e| millrace_python::python_error(py, e, "making store handles");
        let handles = namespace
            .globals(py)
            .get_item("stores")
            .map_err(failed)?
            .expect("a namespace has a stores dict");
        for store in definition.stores.values() {
            let id = self.stores.len();
            let slot = store_slot(store, self.application_id);
            let (name, key_type, value_type) =
                (&store.name, slot.key_type.clone(), slot.value_type.clone());
            let millis = |d: Duration| d.as_millis() as i64;
            let handle = match store.store_type {
                StoreType::KeyValue if store.versioned => {
                    let history = millis(store.history_retention);
                    let handle =
                        VersionedKeyValueStoreHandle::new(name, id, key_type, value_type, history);
                    Bound::new(py, handle).map(Bound::into_any)
                }
                StoreType::KeyValue => {
                    let format = match store.timestamped {
                        true => EntryFormat::Timestamped,
                        false => EntryFormat::Plain,
                    };
                    let handle = KeyValueStoreHandle::new(name, id, key_type, value_type, format);
                    Bound::new(py, handle).map(Bound::into_any)
                }
                StoreType::Window => {
                    let size = millis(store.window_size);
                    let handle = WindowStoreHandle::new(
                        name,
                        id,
                        key_type,
                        value_type,
                        size,
                        store.timestamped,
                    );
                    Bound::new(py, handle).map(Bound::into_any)
                }
                StoreType::Session => {
                    let handle = SessionStoreHandle::new(name, id, key_type, value_type);
                    Bound::new(py, handle).map(Bound::into_any)
                }
            };
            let handle = handle.map_err(failed)?;
            handles.set_item(&store.name, handle).map_err(failed)?;
            self.store_ids.insert((index, store.name.clone()), id);
            self.stores.push(slot);
        }
        Ok(())
    }

    fn function(&self, reference: &Ref) -> FnId {
        self.function_ids[&(self.definition, reference.name.clone())]
    }

    fn result_type(&self, id: FnId) -> DataType {
        self.functions[id]
            .result_type
            .clone()
            .unwrap_or(DataType::Any)
    }

    fn add_node(&mut self, name: String, step: Step, input: &Types, output: &Types) -> NodeId {
        self.nodes.push(OpNode {
            name,
            step,
            children: Vec::new(),
            key_type: input.key.clone(),
            value_type: input.value.clone(),
            out_key_type: output.key.clone(),
            out_value_type: output.value.clone(),
            namespace: self.namespace.clone(),
            sends_old_values: false,
        });
        self.nodes.len() - 1
    }

    /// The source reading `topic`, created on first use.
    fn source(&mut self, topic: &TopicDef) -> Result<usize, BuildError> {
        if let Some(i) = self.sources.iter().position(|s| s.topic == topic.topic) {
            return Ok(i);
        }
        self.log.ensure_topic(&topic.topic)?;
        self.sources.push(Source {
            topic: topic.topic.clone(),
            roots: Vec::new(),
            key_type: topic.key_type.clone(),
            value_type: topic.value_type.clone(),
            offset_reset: topic.offset_reset.unwrap_or(OffsetReset::Earliest),
            timestamp_extractor: topic.timestamp_extractor.as_ref().map(|r| self.function(r)),
        });
        Ok(self.sources.len() - 1)
    }

    fn pipeline(
        &mut self,
        definition: &Definition,
        pipeline: &PipelineDef,
    ) -> Result<(), BuildError> {
        let types = match definition.topics.get(&pipeline.from.name) {
            Some(topic) => Types::of_topic(
                topic.key_type.clone(),
                topic.value_type.clone(),
                self.log.ensure_topic(&topic.topic)?,
            ),
            None => self
                .published
                .get(&(self.definition, pipeline.from.name.clone()))
                .map(|(_, t)| t.clone())
                .unwrap_or_else(|| Types::of_topic(DataType::Any, DataType::Any, 1)),
        };
        let mut types = types;
        let table = match definition.topics.get(&pipeline.from.name) {
            Some(topic) if topic.kind == TopicKind::Table => {
                let (node, store) = self.table(definition, topic)?;
                types.stage = Stage::Table;
                types.table_store = Some(store);
                Some(node)
            }
            _ => None,
        };
        let first = self.chain(
            definition,
            &pipeline.name,
            &pipeline.via,
            &pipeline.sink,
            types,
        )?;
        match (table, definition.topics.get(&pipeline.from.name)) {
            (Some(table), _) => self.nodes[table].children.push(first),
            (None, Some(topic)) => {
                let source = self.source(topic)?;
                self.sources[source].roots.push(first);
            }
            (None, None) => self
                .subscribers
                .entry((self.definition, pipeline.from.name.clone()))
                .or_default()
                .push(first),
        }
        Ok(())
    }

    fn link_published(&mut self) {
        for (key, readers) in std::mem::take(&mut self.subscribers) {
            if let Some((node, _)) = self.published.get(&key) {
                self.nodes[*node].children.extend(readers);
            }
        }
    }

    /// Builds the nodes for `ops` then `sink`; returns the first node.
    fn chain(
        &mut self,
        definition: &Definition,
        owner: &str,
        ops: &[Operation],
        sink: &Sink,
        types: Types,
    ) -> Result<NodeId, BuildError> {
        let Some((op, rest)) = ops.split_first() else {
            return self.sink(definition, owner, sink, types);
        };
        let f = |field: &str| op.function(field).map(|r| self.function(r));
        let mut out = types.clone();
        let on_table = types.stage.is_table();
        if on_table {
            // An operation's result is not kept in a store unless its `store` asks for one.
            out.table_store = None;
        }
        let step = match op.kind {
            OpKind::Filter | OpKind::FilterNot if on_table => Step::TableFilter {
                predicate: f("if").expect("validated"),
                keep_when: op.kind == OpKind::Filter,
            },
            OpKind::MapValues if on_table => {
                let mapper = f("mapper").expect("validated");
                out.value = self.result_type(mapper);
                Step::TableMapValues { mapper }
            }
            OpKind::GroupBy if on_table => {
                let mapper = f("mapper").expect("validated");
                return self.group_table(definition, owner, op, rest, sink, types, mapper);
            }
            OpKind::Join | OpKind::LeftJoin | OpKind::OuterJoin if on_table => {
                return self.table_table_join(definition, owner, op, rest, sink, types);
            }
            OpKind::Cogroup => {
                out.stage = Stage::Cogrouped;
                out.cogroup = f("aggregator");
                return self.chain(definition, owner, rest, sink, out);
            }
            OpKind::Filter | OpKind::FilterNot => Step::Filter {
                predicate: f("if").expect("validated"),
                keep_when: op.kind == OpKind::Filter,
            },
            OpKind::Peek => Step::Peek {
                action: f("forEach").expect("validated"),
            },
            OpKind::MapValues => {
                let mapper = f("mapper").expect("validated");
                out.value = self.result_type(mapper);
                Step::MapValues { mapper }
            }
            OpKind::MapKey => {
                let mapper = f("mapper").expect("validated");
                out.key = self.result_type(mapper);
                out.key_changed = true;
                Step::MapKey { mapper }
            }
            OpKind::Map => {
                let mapper = f("mapper").expect("validated");
                (out.key, out.value) = pair_types(&self.result_type(mapper));
                out.key_changed = true;
                Step::Map { mapper }
            }
            OpKind::FlatMap => {
                let mapper = f("mapper").expect("validated");
                out.key_changed = true;
                (out.key, out.value) = match self.result_type(mapper) {
                    DataType::List(inner) => pair_types(&inner),
                    _ => (DataType::Any, DataType::Any),
                };
                Step::FlatMap { mapper }
            }
            OpKind::FlatMapValues => {
                let mapper = f("mapper").expect("validated");
                out.value = match self.result_type(mapper) {
                    DataType::List(inner) => *inner,
                    _ => DataType::Any,
                };
                Step::FlatMapValues { mapper }
            }
            OpKind::TransformMetadata => Step::TransformMetadata {
                mapper: f("mapper").expect("validated"),
            },
            OpKind::ConvertKey => {
                out.key = op.data_type("into").cloned().expect("validated");
                out.key_changed = true;
                Step::ConvertKey
            }
            OpKind::ConvertValue => {
                out.value = op.data_type("into").cloned().expect("validated");
                Step::ConvertValue
            }
            OpKind::ConvertKeyValue => {
                (out.key, out.value) = pair_types(op.data_type("into").expect("validated"));
                out.key_changed = true;
                let mid = out.with(out.key.clone(), types.value.clone());
                let key_node = self.add_node(op.name.clone(), Step::ConvertKey, &types, &mid);
                let value_node =
                    self.add_node(format!("{}_value", op.name), Step::ConvertValue, &mid, &out);
                self.nodes[key_node].children.push(value_node);
                let next = self.chain(definition, owner, rest, sink, out)?;
                self.nodes[value_node].children.push(next);
                return Ok(key_node);
            }
            OpKind::Merge => {
                let other = op.topic("stream").expect("validated");
                let topic = &definition.topics[&other.name];
                let node = self.add_node(op.name.clone(), Step::Pass, &types, &types);
                let source = self.source(topic)?;
                self.sources[source].roots.push(node);
                let next = self.chain(definition, owner, rest, sink, types)?;
                self.nodes[node].children.push(next);
                return Ok(node);
            }
            OpKind::Repartition => {
                let partitions = op
                    .integer("numberOfPartitions")
                    .map_or(types.partitions, |n| n.max(1) as u32);
                let partitioner = f("partitioner");
                let link = self.through_topic(&op.name, partitions, partitioner, &types)?;
                return self.read_back(definition, owner, link, rest, sink);
            }
            OpKind::GroupByKey => {
                return self.group(definition, owner, op, rest, sink, types, None);
            }
            OpKind::GroupBy => {
                let mapper = f("mapper").expect("validated");
                return self.group(definition, owner, op, rest, sink, types, Some(mapper));
            }
            OpKind::WindowByTime => {
                out.stage = match types.stage {
                    Stage::Cogrouped => Stage::CogroupedTimeWindowed,
                    _ => Stage::TimeWindowed,
                };
                out.windows = Some(match op.text("windowType") {
                    Some("sliding") => Windows::Sliding(SlidingWindows {
                        time_difference: millis(op, "timeDifference"),
                        grace: millis(op, "grace"),
                    }),
                    _ => Windows::Time(TimeWindows::of(op)),
                });
                return self.chain(definition, owner, rest, sink, out);
            }
            OpKind::WindowBySession => {
                out.stage = match types.stage {
                    Stage::Cogrouped => Stage::CogroupedSessionWindowed,
                    _ => Stage::SessionWindowed,
                };
                out.windows = Some(Windows::Session(SessionWindows {
                    gap: millis(op, "inactivityGap"),
                    grace: millis(op, "grace"),
                }));
                return self.chain(definition, owner, rest, sink, out);
            }
            OpKind::Count | OpKind::Reduce | OpKind::Aggregate => {
                let (aggregation, after) = self.aggregation(definition, op, &types)?;
                out = after;
                Step::Aggregate(Box::new(aggregation))
            }
            OpKind::Suppress => Step::Suppress(Box::new(self.suppression(op, &types))),
            OpKind::ToTable => {
                let value_type = types.value.clone();
                let store = self.operation_store(definition, op, &types, &value_type)?;
                out.stage = Stage::Table;
                out.table_store = Some(store);
                Step::Materialize { store }
            }
            OpKind::Join | OpKind::LeftJoin | OpKind::OuterJoin if op.topic("stream").is_some() => {
                return self.stream_join(definition, owner, op, ops, rest, sink, types);
            }
            OpKind::Join | OpKind::LeftJoin if op.topic("globalTable").is_some() => {
                let reference = op.topic("globalTable").expect("just checked");
                let global = self.global(&definition.topics[&reference.name])?;
                let joiner = self.function(op.function("valueJoiner").expect("validated"));
                out.value = self.result_type(joiner);
                Step::GlobalJoin(Box::new(GlobalJoin {
                    global,
                    mapper: self.function(op.function("mapper").expect("validated")),
                    joiner,
                    left: op.kind == OpKind::LeftJoin,
                }))
            }
            OpKind::Join | OpKind::LeftJoin => {
                let reference = op.topic("table").expect("validated: a stream-table join");
                let table = &definition.topics[&reference.name];
                let (_, store) = self.table(definition, table)?;
                if let Some(repartitioned) =
                    self.copartition(definition, owner, op, ops, sink, &types, &table.topic)?
                {
                    return Ok(repartitioned);
                }
                let joiner = self.function(op.function("valueJoiner").expect("validated"));
                out.value = self.result_type(joiner);
                Step::TableJoin(Box::new(TableJoin {
                    store,
                    joiner,
                    left: op.kind == OpKind::LeftJoin,
                }))
            }
            OpKind::ToStream => {
                out.stage = Stage::Stream;
                match f("mapper") {
                    Some(mapper) => {
                        out.key = self.result_type(mapper);
                        out.key_changed = true;
                        Step::MapKey { mapper }
                    }
                    None => Step::Pass,
                }
            }
            other => unreachable!("validation rejects unsupported operation {other:?}"),
        };
        let node = self.add_node(op.name.clone(), step, &types, &out);
        let next = self.table_then(definition, owner, op, rest, sink, out)?;
        self.nodes[node].children.push(next);
        Ok(node)
    }

    /// The rest of a pipeline after `op`; when `op` made a table and names a `store`, the
    /// table is kept in that store first (a filtered or mapped table, a join's result).
    fn table_then(
        &mut self,
        definition: &Definition,
        owner: &str,
        op: &Operation,
        rest: &[Operation],
        sink: &Sink,
        mut types: Types,
    ) -> Result<NodeId, BuildError> {
        let keeps = matches!(
            op.kind,
            OpKind::Filter | OpKind::FilterNot | OpKind::MapValues
        ) || (matches!(op.kind, OpKind::Join | OpKind::LeftJoin | OpKind::OuterJoin)
            && op.topic("table").is_some());
        let Some(reference) = op
            .store("store")
            .filter(|_| keeps && types.stage == Stage::Table)
        else {
            return self.chain(definition, owner, rest, sink, types);
        };
        let store = self.named_store(
            definition,
            reference,
            &op.name,
            &types.key,
            &types.value.clone(),
        )?;
        types.table_store = Some(store);
        let node = self.add_node(
            format!("{}_store", op.name),
            Step::Materialize { store },
            &types,
            &types,
        );
        let next = self.chain(definition, owner, rest, sink, types)?;
        self.nodes[node].children.push(next);
        Ok(node)
    }

    /// Sends records through an internal topic `<application.id>-<name>-repartition` with
    /// `partitions` partitions, as Kafka Streams' repartitioning does: the returned link is
    /// the node writing it and what reading it back gives.
    fn through_topic(
        &mut self,
        name: &str,
        partitions: u32,
        partitioner: Option<FnId>,
        types: &Types,
    ) -> Result<TopicLink, BuildError> {
        let topic = format!("{}-{name}-repartition", self.application_id);
        self.log.create_topic(&topic, partitions)?;
        // Untyped data crosses the internal topic as JSON, which keeps its kind exactly.
        let mut wire = types.with(stored_type(&types.key), stored_type(&types.value));
        wire.key_changed = false;
        wire.partitions = self.log.ensure_topic(&topic)?;
        let target = TopicTarget {
            topic: topic.as_str().into(),
            key_type: wire.key.clone(),
            value_type: wire.value.clone(),
            partitioner,
            carries_old_values: types.stage == Stage::GroupedTable,
        };
        let writer = self.add_node(name.to_string(), Step::To(target), types, &wire);
        Ok(TopicLink {
            writer,
            topic,
            wire,
        })
    }

    /// Builds the rest of a pipeline reading an internal topic back; returns the writer.
    fn read_back(
        &mut self,
        definition: &Definition,
        owner: &str,
        link: TopicLink,
        rest: &[Operation],
        sink: &Sink,
    ) -> Result<NodeId, BuildError> {
        let mut root = self.chain(definition, owner, rest, sink, link.wire.clone())?;
        if link.wire.stage == Stage::GroupedTable {
            let name = format!("{}_read", self.nodes[link.writer].name);
            let reader = self.add_node(name, Step::ReadOldValues, &link.wire, &link.wire);
            self.nodes[reader].children.push(root);
            root = reader;
        }
        self.sources.push(Source {
            topic: link.topic,
            roots: vec![root],
            key_type: link.wire.key,
            value_type: link.wire.value,
            offset_reset: OffsetReset::Earliest,
            timestamp_extractor: None,
        });
        Ok(link.writer)
    }

    /// groupByKey, or groupBy with a key mapper: records go through a repartition topic when
    /// their key has changed, so that each key lands in one task.
    #[allow(clippy::too_many_arguments)]
    fn group(
        &mut self,
        definition: &Definition,
        owner: &str,
        op: &Operation,
        rest: &[Operation],
        sink: &Sink,
        types: Types,
        mapper: Option<FnId>,
    ) -> Result<NodeId, BuildError> {
        let mut keyed = types.clone();
        keyed.stage = Stage::Grouped;
        let select = mapper.map(|mapper| {
            keyed.key = self.result_type(mapper);
            keyed.key_changed = true;
            self.add_node(
                format!("{}_selectKey", op.name),
                Step::MapKey { mapper },
                &types,
                &keyed,
            )
        });
        let first = if keyed.key_changed {
            let link = self.through_topic(&op.name, keyed.partitions, None, &keyed)?;
            self.read_back(definition, owner, link, rest, sink)?
        } else {
            self.chain(definition, owner, rest, sink, keyed)?
        };
        match select {
            Some(node) => {
                self.nodes[node].children.push(first);
                Ok(node)
            }
            None => Ok(first),
        }
    }

    /// groupBy on a table: each update's old and new values get their new key and value from
    /// `mapper`, and always go through a repartition topic, as in Kafka Streams.
    #[allow(clippy::too_many_arguments)]
    fn group_table(
        &mut self,
        definition: &Definition,
        owner: &str,
        op: &Operation,
        rest: &[Operation],
        sink: &Sink,
        types: Types,
        mapper: FnId,
    ) -> Result<NodeId, BuildError> {
        let mut keyed = types.clone();
        keyed.stage = Stage::GroupedTable;
        (keyed.key, keyed.value) = pair_types(&self.result_type(mapper));
        keyed.table_store = None;
        let select = self.add_node(
            format!("{}_select", op.name),
            Step::TableGroupBy { mapper },
            &types,
            &keyed,
        );
        let link = self.through_topic(&op.name, keyed.partitions, None, &keyed)?;
        let first = self.read_back(definition, owner, link, rest, sink)?;
        self.nodes[select].children.push(first);
        Ok(select)
    }

    /// A table-table join: a node for each table, each joining the updates of its table with
    /// the other's value for the key, both passing the joined table on. A table that no store
    /// holds (a filtered or mapped one) is kept in one named after the operation first.
    #[allow(clippy::too_many_arguments)]
    fn table_table_join(
        &mut self,
        definition: &Definition,
        owner: &str,
        op: &Operation,
        rest: &[Operation],
        sink: &Sink,
        types: Types,
    ) -> Result<NodeId, BuildError> {
        let reference = op.topic("table").expect("validated: a table-table join");
        let other = &definition.topics[&reference.name];
        if op.function("foreignKeyExtractor").is_some() {
            return self.foreign_key_join(definition, owner, op, rest, sink, types, other);
        }
        let (other_node, other_store) = self.table(definition, other)?;
        let other_partitions = self.log.ensure_topic(&other.topic)?;
        if types.partitions != other_partitions {
            return Err(BuildError::NotCopartitioned {
                operation: op.name.clone(),
                stream_partitions: types.partitions,
                other: other.topic.clone(),
                other_partitions,
            });
        }
        let (first, this_store) = self.kept_table(op, &types);
        let joiner = self.function(op.function("valueJoiner").expect("validated"));
        let kind = JoinKind::of(op.kind);
        let mut out = types.clone();
        out.value = self.result_type(joiner);
        out.table_store = None;
        let side = |other_store, left| {
            Step::TableTableJoin(Box::new(TableTableJoinSide {
                other_store,
                joiner,
                kind,
                left,
            }))
        };
        let this = self.add_node(op.name.clone(), side(other_store, true), &types, &out);
        let other_types = Types::of_table(other, other_partitions);
        let that = self.add_node(
            format!("{}_other", op.name),
            side(this_store, false),
            &other_types,
            &out,
        );
        let next = self.table_then(definition, owner, op, rest, sink, out)?;
        self.nodes[this].children.push(next);
        self.nodes[that].children.push(next);
        self.nodes[other_node].children.push(that);
        Ok(self.entered_at(first, this))
    }

    /// A join's first node: the node keeping this table in a store, where the join needed
    /// one (see [`Builder::kept_table`]), ahead of `join`.
    fn entered_at(&mut self, kept: Option<NodeId>, join: NodeId) -> NodeId {
        match kept {
            Some(materialize) => {
                self.nodes[materialize].children.push(join);
                materialize
            }
            None => join,
        }
    }

    /// The store holding a joined table's latest values: its own, or for a table no store
    /// holds (a filtered or mapped one) a store named after the operation, with the node
    /// keeping the table in it (the join's first node then).
    fn kept_table(&mut self, op: &Operation, types: &Types) -> (Option<NodeId>, StoreId) {
        if let Some(store) = types.table_store {
            return (None, store);
        }
        let name = format!("{}-this-store", op.name);
        let store = self.uncached_store(&name, types, &types.value, false);
        let node = self.add_node(
            format!("{}_this", op.name),
            Step::Materialize { store },
            types,
            types,
        );
        (Some(node), store)
    }

    /// A foreign-key join of two tables, as Kafka Streams does it (the tables need not be
    /// co-partitioned): each update of this table subscribes its key to the other table's key
    /// its `foreignKeyExtractor` picks, through a registration topic partitioned like the
    /// other table; the other table's side keeps the subscriptions in a store and answers each
    /// subscription and each of its own updates through a response topic partitioned like
    /// this table, where answers meet this table's current value. The joined table is kept in
    /// the join's `store` (or one named after it), which gives its old values.
    #[allow(clippy::too_many_arguments)]
    fn foreign_key_join(
        &mut self,
        definition: &Definition,
        owner: &str,
        op: &Operation,
        rest: &[Operation],
        sink: &Sink,
        types: Types,
        other: &TopicDef,
    ) -> Result<NodeId, BuildError> {
        let (other_node, other_store) = self.table(definition, other)?;
        let other_partitions = self.log.ensure_topic(&other.topic)?;
        let (first, this_store) = self.kept_table(op, &types);
        let extractor = self.function(op.function("foreignKeyExtractor").expect("checked"));
        let joiner = self.function(op.function("valueJoiner").expect("validated"));
        let raw = Types::of_topic(DataType::Bytes, DataType::Bytes, types.partitions);
        let writer = |builder: &mut Self, suffix: &str, partitions: u32| {
            let topic = format!("{}-{}-{suffix}-topic", builder.application_id, op.name);
            builder.log.create_topic(&topic, partitions)?;
            let target = TopicTarget {
                topic: topic.as_str().into(),
                key_type: DataType::Bytes,
                value_type: DataType::Bytes,
                partitioner: None,
                carries_old_values: false,
            };
            let node = builder.add_node(
                format!("{}_{suffix}", op.name),
                Step::To(target),
                &raw,
                &raw,
            );
            Ok::<_, BuildError>((topic, node))
        };
        let (registrations, register_writer) =
            writer(self, "subscription-registration", other_partitions)?;
        let (responses, respond_writer) = writer(self, "subscription-response", types.partitions)?;
        let subscriptions = self.internal_store(&format!("{}-subscription-store", op.name));
        let part = |part| Step::ForeignKeyJoin(Box::new(part));
        let subscribe = self.add_node(
            op.name.clone(),
            part(ForeignKeyPart::Subscribe {
                extractor,
                this_store,
                other_store,
                left: op.kind == OpKind::LeftJoin,
            }),
            &types,
            &raw,
        );
        self.nodes[subscribe].children = vec![register_writer, respond_writer];
        let register = self.add_node(
            format!("{}_subscriptions", op.name),
            part(ForeignKeyPart::Register {
                subscriptions,
                other_store,
            }),
            &raw,
            &raw,
        );
        self.nodes[register].children.push(respond_writer);
        let other_types = Types::of_table(other, other_partitions);
        let other_update = self.add_node(
            format!("{}_other", op.name),
            part(ForeignKeyPart::OtherUpdate {
                subscriptions,
                other_store,
            }),
            &other_types,
            &raw,
        );
        self.nodes[other_update].children.push(respond_writer);
        self.nodes[other_node].children.push(other_update);
        let mut out = types.clone();
        out.value = self.result_type(joiner);
        out.table_store = None;
        let resolve = self.add_node(
            format!("{}_resolve", op.name),
            part(ForeignKeyPart::Resolve {
                this_store,
                other_store,
                joiner,
                left: op.kind == OpKind::LeftJoin,
            }),
            &raw,
            &out,
        );
        // The joined table in a store, for its old values.
        let result_store = match op.store("store") {
            Some(reference) => self.named_store(
                definition,
                reference,
                &op.name,
                &out.key,
                &out.value.clone(),
            )?,
            None => self.uncached_store(&format!("{}-store", op.name), &out, &out.value, false),
        };
        out.table_store = Some(result_store);
        let keep = self.add_node(
            format!("{}_store", op.name),
            Step::Materialize {
                store: result_store,
            },
            &out,
            &out,
        );
        self.nodes[resolve].children.push(keep);
        let next = self.chain(definition, owner, rest, sink, out)?;
        self.nodes[keep].children.push(next);
        for (topic, root) in [(registrations, register), (responses, resolve)] {
            self.sources.push(Source {
                topic,
                roots: vec![root],
                key_type: DataType::Bytes,
                value_type: DataType::Bytes,
                offset_reset: OffsetReset::Earliest,
                timestamp_extractor: None,
            });
        }
        Ok(self.entered_at(first, subscribe))
    }

    /// count, reduce or aggregate: the aggregation and what it passes on (a table, keyed by
    /// window when windowed).
    fn aggregation(
        &mut self,
        definition: &Definition,
        op: &Operation,
        types: &Types,
    ) -> Result<(Aggregation, Types), BuildError> {
        let f = |field: &str| op.function(field).map(|r| self.function(r));
        let grouped_table = types.stage == Stage::GroupedTable;
        let kind = match op.kind {
            OpKind::Count if grouped_table => AggregationKind::TableCount,
            OpKind::Count => AggregationKind::Count,
            OpKind::Reduce if grouped_table => AggregationKind::TableReduce {
                adder: f("adder").expect("validated"),
                subtractor: f("subtractor").expect("validated"),
            },
            OpKind::Reduce => AggregationKind::Reduce {
                reducer: f("reducer").expect("validated"),
            },
            _ if grouped_table => AggregationKind::TableAggregate {
                initializer: f("initializer").expect("validated"),
                adder: f("adder").expect("validated"),
                subtractor: f("subtractor").expect("validated"),
            },
            _ => AggregationKind::Aggregate {
                initializer: f("initializer").expect("validated"),
                aggregator: types
                    .cogroup
                    .or_else(|| f("aggregator"))
                    .expect("validated"),
                merger: f("merger"),
            },
        };
        let value_type = match &kind {
            AggregationKind::Count | AggregationKind::TableCount => DataType::Long,
            AggregationKind::Reduce { .. } | AggregationKind::TableReduce { .. } => {
                types.value.clone()
            }
            AggregationKind::Aggregate {
                initializer,
                aggregator: adder,
                ..
            }
            | AggregationKind::TableAggregate {
                initializer, adder, ..
            } => match self.result_type(*adder) {
                DataType::Any => self.result_type(*initializer),
                known => known,
            },
        };
        let store = self.operation_store(definition, op, types, &value_type)?;
        let slot = &self.stores[store];
        let mut out = types.with(slot.key_type.clone(), slot.value_type.clone());
        out.stage = Stage::Table;
        out.table_store = Some(store);
        out.cogroup = None;
        if let Some(windows) = types.windows {
            out.table_store = None;
            out.key = DataType::Windowed(Box::new(slot.key_type.clone()));
            out.stage = Stage::WindowedTable;
            out.window_grace = Some(windows.grace());
        }
        out.windows = None;
        let records = match types.windows {
            Some(Windows::Sliding(_)) => {
                let name = format!("{}-sliding-records", op.name);
                Some(self.uncached_store(&name, types, &types.value, true))
            }
            _ => None,
        };
        let aggregation = Aggregation {
            store,
            kind,
            windows: types.windows,
            records,
        };
        Ok((aggregation, out))
    }

    /// Before a join with `other_topic`: a stream whose key changed is repartitioned by it
    /// first, as Kafka Streams does (into as many partitions as the other side), and the join
    /// is built past the repartition topic: the returned node. Otherwise both sides must have
    /// as many partitions, so that each key meets its match in one task.
    #[allow(clippy::too_many_arguments)]
    fn copartition(
        &mut self,
        definition: &Definition,
        owner: &str,
        op: &Operation,
        ops: &[Operation],
        sink: &Sink,
        types: &Types,
        other_topic: &str,
    ) -> Result<Option<NodeId>, BuildError> {
        let other_partitions = self.log.ensure_topic(other_topic)?;
        if types.key_changed {
            let link = self.through_topic(&op.name, other_partitions, None, types)?;
            return self.read_back(definition, owner, link, ops, sink).map(Some);
        }
        if types.partitions != other_partitions {
            return Err(BuildError::NotCopartitioned {
                operation: op.name.clone(),
                stream_partitions: types.partitions,
                other: other_topic.to_string(),
                other_partitions,
            });
        }
        Ok(None)
    }

    /// A stream-stream join: a node for each side, both passing joined records on to the
    /// rest of the pipeline; each side keeps its records in a window store (`thisStore`,
    /// `otherStore`, or ones named after the operation) for the time difference plus grace;
    /// leftJoin and outerJoin keep records that met no match in a third store until their
    /// window closes.
    #[allow(clippy::too_many_arguments)]
    fn stream_join(
        &mut self,
        definition: &Definition,
        owner: &str,
        op: &Operation,
        ops: &[Operation],
        rest: &[Operation],
        sink: &Sink,
        types: Types,
    ) -> Result<NodeId, BuildError> {
        let other_ref = op.topic("stream").expect("checked by the caller");
        let other = &definition.topics[&other_ref.name];
        if let Some(repartitioned) =
            self.copartition(definition, owner, op, ops, sink, &types, &other.topic)?
        {
            return Ok(repartitioned);
        }
        let other_partitions = types.partitions;
        let (time_difference, grace) = (millis(op, "timeDifference"), millis(op, "grace"));
        let other_types = Types::of_topic(
            other.key_type.clone(),
            other.value_type.clone(),
            other_partitions,
        );
        let mut join_store = |field: &str, suffix: &str, side: &Types| match op.store(field) {
            Some(reference) => {
                self.named_store(definition, reference, &op.name, &side.key, &side.value)
            }
            None => {
                let mut windowed = side.clone();
                windowed.windows = Some(Windows::Time(TimeWindows {
                    size: 2 * time_difference,
                    advance: 1,
                    grace,
                }));
                let name = format!("{}-{suffix}", op.name);
                Ok(self.uncached_store(&name, &windowed, &side.value, true))
            }
        };
        let this_store = join_store("thisStore", "this-join-store", &types)?;
        let other_store = join_store("otherStore", "other-join-store", &other_types)?;
        let kind = JoinKind::of(op.kind);
        // Records waiting for their window to close, as Kafka Streams' shared outer join store.
        let unmatched = (kind != JoinKind::Inner)
            .then(|| self.internal_store(&format!("{}-outer-join-store", op.name)));
        let joiner = self.function(op.function("valueJoiner").expect("validated"));
        let mut out = types.clone();
        out.value = self.result_type(joiner);
        let side = |this_store, other_store, left| {
            Step::StreamJoin(Box::new(StreamJoinSide {
                this_store,
                other_store,
                joiner,
                time_difference,
                grace,
                left,
                kind,
                unmatched,
            }))
        };
        let this = self.add_node(
            op.name.clone(),
            side(this_store, other_store, true),
            &types,
            &out,
        );
        let that = self.add_node(
            format!("{}_other", op.name),
            side(other_store, this_store, false),
            &other_types,
            &out,
        );
        let next = self.chain(definition, owner, rest, sink, out)?;
        self.nodes[this].children.push(next);
        self.nodes[that].children.push(next);
        let source = self.source(other)?;
        self.sources[source].roots.push(that);
        Ok(this)
    }

    /// A global table, registered on first use.
    fn global(&mut self, topic: &TopicDef) -> Result<GlobalId, BuildError> {
        let key = (self.definition, topic.name.clone());
        if let Some(id) = self.global_ids.get(&key) {
            return Ok(*id);
        }
        self.log.ensure_topic(&topic.topic)?;
        self.globals.push(GlobalTable::new(
            &topic.name,
            &topic.topic,
            stored_type(&topic.key_type),
            stored_type(&topic.value_type),
        ));
        self.global_ids.insert(key, self.globals.len() - 1);
        Ok(self.globals.len() - 1)
    }

    /// The node materializing a table read from its topic, made on first use: its store is the
    /// table's `store`, or one named after the table (persistent, cached, logged).
    fn table(
        &mut self,
        definition: &Definition,
        topic: &TopicDef,
    ) -> Result<(NodeId, StoreId), BuildError> {
        let key = (self.definition, topic.name.clone());
        if let Some(found) = self.tables.get(&key) {
            return Ok(*found);
        }
        let types = Types::of_table(topic, self.log.ensure_topic(&topic.topic)?);
        let store = match &topic.store {
            Some(reference) => {
                self.named_store(definition, reference, &topic.name, &types.key, &types.value)?
            }
            None => self.default_store(&topic.name, &types, &types.value.clone()),
        };
        let node = self.add_node(
            format!("{}_table", topic.name),
            Step::Materialize { store },
            &types,
            &types,
        );
        let source = self.source(topic)?;
        self.sources[source].roots.push(node);
        self.tables.insert(key, (node, store));
        Ok((node, store))
    }

    /// Kafka Streams' default store for an operation's results: persistent, cached and
    /// logged, a window store when the records are windowed.
    fn default_store(&mut self, name: &str, types: &Types, value_type: &DataType) -> StoreId {
        let windows = types.windows;
        let spec = StoreSpec {
            kind: match windows {
                None => StoreKind::KeyValue,
                Some(Windows::Time(_) | Windows::Sliding(_)) => StoreKind::Window,
                Some(Windows::Session(_)) => StoreKind::Session,
            },
            persistent: true,
            caching: true,
            logging: true,
            window_size: Duration::from_millis(windows.and_then(|w| w.size()).unwrap_or(0) as u64),
            retention: windows.map_or(Duration::ZERO, |w| {
                Duration::from_millis(w.least_retention() as u64)
            }),
            ..StoreSpec::key_value(name)
        };
        self.push_store(spec, stored_type(&types.key), stored_type(value_type))
    }

    /// Kafka Streams' default store without caching (every update goes on at once), keeping
    /// duplicates where `retain_duplicates` (the records of a join or of sliding windows).
    fn uncached_store(
        &mut self,
        name: &str,
        types: &Types,
        value_type: &DataType,
        retain_duplicates: bool,
    ) -> StoreId {
        let id = self.default_store(name, types, value_type);
        self.stores[id].spec = Arc::new(StoreSpec {
            caching: false,
            retain_duplicates,
            ..(*self.stores[id].spec).clone()
        });
        id
    }

    /// A persistent, logged keyValue store of raw bytes that the runtime keeps for an
    /// operation (a join's waiting records, foreign-key subscriptions).
    fn internal_store(&mut self, name: &str) -> StoreId {
        let spec = StoreSpec {
            persistent: true,
            logging: true,
            ..StoreSpec::key_value(name)
        };
        self.push_store(spec, DataType::Bytes, DataType::Bytes)
    }

    /// Registers a store; a logged one gets its changelog topic.
    fn push_store(&mut self, spec: StoreSpec, key_type: DataType, value_type: DataType) -> StoreId {
        self.stores.push(StoreSlot {
            changelog: spec
                .logging
                .then(|| spec.changelog_topic(self.application_id)),
            spec: Arc::new(spec),
            key_type,
            value_type,
        });
        self.stores.len() - 1
    }

    /// suppress: its limits, and a logged in-memory buffer named after the operation.
    fn suppression(&mut self, op: &Operation, types: &Types) -> Suppression {
        let until = match op.text("until") {
            Some("timeLimit") => SuppressUntil::TimeLimit {
                limit: millis(op, "duration"),
            },
            _ => SuppressUntil::WindowCloses {
                grace: types.window_grace.unwrap_or(0),
            },
        };
        let limit = |field: &str| op.text(field).and_then(|n| n.trim().parse().ok());
        let emit_early_when_full = match op.text("bufferFullStrategy") {
            Some(strategy) => strategy == "emitEarlyWhenFull",
            None => matches!(until, SuppressUntil::TimeLimit { .. }),
        };
        let spec = StoreSpec {
            logging: true,
            ..StoreSpec::key_value(&op.name)
        };
        let store = self.push_store(spec, types.key.clone(), types.value.clone());
        Suppression {
            store,
            until,
            max_records: limit("maxRecords"),
            max_bytes: limit("maxBytes"),
            emit_early_when_full,
        }
    }

    /// The store an aggregation keeps its results in: the one its `store` names (taking the
    /// stream's types where the store declares none), or Kafka Streams' default, named after
    /// the operation: persistent, cached and logged.
    fn operation_store(
        &mut self,
        definition: &Definition,
        op: &Operation,
        types: &Types,
        value_type: &DataType,
    ) -> Result<StoreId, BuildError> {
        let Some(reference) = op.store("store") else {
            return Ok(self.default_store(&op.name, types, value_type));
        };
        self.named_store(definition, reference, &op.name, &types.key, value_type)
    }

    /// A declared store used by an operation, taking the operation's key and value types
    /// where the store declares none.
    fn named_store(
        &mut self,
        definition: &Definition,
        reference: &Ref,
        operation: &str,
        key_type: &DataType,
        value_type: &DataType,
    ) -> Result<StoreId, BuildError> {
        let id = self.store_ids[&(self.definition, reference.name.clone())];
        // Operations keep timestamps with their values, which a function's store handle would
        // not write.
        if self.functions.iter().any(|f| f.stores.contains(&id)) {
            return Err(BuildError::SharedStore {
                store: reference.name.clone(),
                operation: operation.to_string(),
            });
        }
        let declared = &definition.stores[&reference.name];
        let slot = &mut self.stores[id];
        if declared.key_type.is_none() {
            slot.key_type = stored_type(key_type);
        }
        if declared.value_type.is_none() {
            slot.value_type = stored_type(value_type);
        }
        Ok(id)
    }

    fn target(&self, definition: &Definition, to: &ToTarget, types: &Types) -> TopicTarget {
        let declared = to.stream.as_ref().and_then(|n| definition.topics.get(n));
        TopicTarget {
            topic: declared
                .map_or(to.topic.as_str(), |t| t.topic.as_str())
                .into(),
            key_type: declared
                .map(|t| t.key_type.clone())
                .or_else(|| to.key_type.clone())
                .unwrap_or_else(|| types.key.clone()),
            value_type: declared
                .map(|t| t.value_type.clone())
                .or_else(|| to.value_type.clone())
                .unwrap_or_else(|| types.value.clone()),
            carries_old_values: false,
            partitioner: to
                .partitioner
                .as_ref()
                .or(declared.and_then(|t| t.partitioner.as_ref()))
                .map(|r| self.function(r)),
        }
    }

    fn sink(
        &mut self,
        definition: &Definition,
        owner: &str,
        sink: &Sink,
        types: Types,
    ) -> Result<NodeId, BuildError> {
        let step = match sink {
            Sink::As(name) => {
                let node = self.add_node(format!("{owner}_as_{name}"), Step::Pass, &types, &types);
                self.published
                    .insert((self.definition, name.clone()), (node, types));
                return Ok(node);
            }
            Sink::To(to) => Step::To(self.target(definition, to, &types)),
            Sink::ToTopicNameExtractor {
                extractor,
                partitioner,
            } => Step::ToTopicNameExtractor {
                extractor: self.function(extractor),
                partitioner: partitioner.as_ref().map(|r| self.function(r)),
            },
            Sink::ForEach(action) => Step::ForEach {
                action: self.function(action),
            },
            Sink::Print {
                filename,
                label,
                mapper,
            } => {
                let target = match filename {
                    None => PrintTarget::Stdout,
                    Some(name) => {
                        let path = definition
                            .file
                            .parent()
                            .map_or_else(|| name.into(), |dir| dir.join(name));
                        let file = OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&path)
                            .map_err(|source| BuildError::PrintFile {
                                file: path.display().to_string(),
                                source,
                            })?;
                        PrintTarget::File(Mutex::new(BufWriter::new(file)))
                    }
                };
                Step::Print {
                    target,
                    label: label.clone(),
                    mapper: mapper.as_ref().map(|r| self.function(r)),
                }
            }
            Sink::Branch(branches) => {
                let mut arms = Vec::with_capacity(branches.len());
                for (i, branch) in branches.iter().enumerate() {
                    let name = format!("{owner}_branch{}", i + 1);
                    let first =
                        self.chain(definition, &name, &branch.via, &branch.sink, types.clone())?;
                    arms.push((branch.condition.as_ref().map(|r| self.function(r)), first));
                }
                Step::Branch { branches: arms }
            }
        };
        Ok(self.add_node(format!("{owner}_sink"), step, &types, &types))
    }

    fn producer(
        &mut self,
        definition: &Definition,
        producer: &ProducerDef,
    ) -> Result<ProducerPlan, BuildError> {
        let generator = self.function(&producer.generator);
        let (key, value) = match self.result_type(generator) {
            DataType::List(inner) => pair_types(&inner),
            other => pair_types(&other),
        };
        let target = self.target(definition, &producer.to, &Types::of_topic(key, value, 1));
        self.log.ensure_topic(&target.topic)?;
        Ok(ProducerPlan {
            name: producer.name.clone(),
            generator,
            target,
            interval: producer.interval,
            count: producer.count,
            batch_size: producer.batch_size,
            condition: producer.condition.as_ref().map(|r| self.function(r)),
            until: producer.until.as_ref().map(|r| self.function(r)),
        })
    }
}

/// How every task instantiates a declared store. Untyped keys and values are kept as JSON,
/// which keeps their kind exactly.
fn store_slot(store: &StoreDef, application_id: &str) -> StoreSlot {
    let stored = |ty: &Option<DataType>| stored_type(ty.as_ref().unwrap_or(&DataType::Any));
    let spec = StoreSpec {
        name: store.name.clone(),
        kind: match store.store_type {
            StoreType::KeyValue => StoreKind::KeyValue,
            StoreType::Window => StoreKind::Window,
            StoreType::Session => StoreKind::Session,
        },
        persistent: store.persistent,
        timestamped: store.timestamped,
        versioned: store.versioned,
        history_retention: store.history_retention,
        retention: store.retention,
        window_size: store.window_size,
        retain_duplicates: store.retain_duplicates,
        caching: store.caching,
        logging: store.logging,
    };
    StoreSlot {
        changelog: store.logging.then(|| spec.changelog_topic(application_id)),
        spec: Arc::new(spec),
        key_type: stored(&store.key_type),
        value_type: stored(&store.value_type),
    }
}

/// A duration field of an operation in milliseconds (0 when absent).
fn millis(op: &Operation, field: &str) -> i64 {
    op.duration(field).map_or(0, |d| d.as_millis() as i64)
}

/// The type a store keeps a key or value in: untyped data as JSON, which keeps its kind.
fn stored_type(ty: &DataType) -> DataType {
    if ty.is_any() {
        DataType::Json
    } else {
        ty.clone()
    }
}

/// The key and value types of a `(K, V)` tuple type; anything else is untyped.
fn pair_types(ty: &DataType) -> (DataType, DataType) {
    match ty {
        DataType::Tuple(items) if items.len() == 2 => (items[0].clone(), items[1].clone()),
        _ => (DataType::Any, DataType::Any),
    }
}

/// Sources whose operators connect, with the stores their functions use: Kafka Streams'
/// sub-topology, which runs as one task per partition number.
pub struct SourceGroup {
    /// Indexes in [`Topology::sources`], in source order.
    pub sources: Vec<usize>,
    pub stores: Vec<StoreId>,
}

impl Topology {
    /// The source groups. A merge or a pipeline reading another's `as` output joins two
    /// sources, and so do functions using one store; a repartition topic separates its writer
    /// from its reader.
    pub fn source_groups(&self) -> Vec<SourceGroup> {
        let mut sets = DisjointSets::new(self.nodes.len());
        let mut store_users: HashMap<StoreId, NodeId> = HashMap::new();
        for node_id in 0..self.nodes.len() {
            for next in self.successors(node_id) {
                sets.union(node_id, next);
            }
            for store in self.node_stores(node_id) {
                let first = *store_users.entry(store).or_insert(node_id);
                sets.union(first, node_id);
            }
        }
        for source in &self.sources {
            for pair in source.roots.windows(2) {
                sets.union(pair[0], pair[1]);
            }
        }
        let mut groups: Vec<(Option<NodeId>, SourceGroup)> = Vec::new();
        for (index, source) in self.sources.iter().enumerate() {
            let set = source.roots.first().map(|&root| sets.find(root));
            match groups.iter_mut().find(|(s, _)| set.is_some() && *s == set) {
                Some((_, group)) => group.sources.push(index),
                None => groups.push((
                    set,
                    SourceGroup {
                        sources: vec![index],
                        stores: Vec::new(),
                    },
                )),
            }
        }
        let mut stores: Vec<(StoreId, NodeId)> = store_users.into_iter().collect();
        stores.sort_unstable();
        for (store, node) in stores {
            let set = Some(sets.find(node));
            if let Some((_, group)) = groups.iter_mut().find(|(s, _)| *s == set) {
                group.stores.push(store);
            }
        }
        groups.into_iter().map(|(_, group)| group).collect()
    }

    /// The nodes a node passes records to: its children and its branches' first nodes.
    fn successors(&self, node: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        let branches = match &self.nodes[node].step {
            Step::Branch { branches } => branches.as_slice(),
            _ => &[],
        };
        let children = self.nodes[node].children.iter().copied();
        children.chain(branches.iter().map(|(_, first)| *first))
    }

    /// The stores a node uses: its aggregation's, and those its functions list.
    fn node_stores(&self, node: NodeId) -> Vec<StoreId> {
        let step = &self.nodes[node].step;
        let own: Vec<StoreId> = match step {
            Step::Aggregate(aggregation) => std::iter::once(aggregation.store)
                .chain(aggregation.records)
                .collect(),
            Step::StreamJoin(side) => std::iter::once(side.this_store)
                .chain(side.unmatched)
                .collect(),
            Step::Suppress(suppression) => vec![suppression.store],
            Step::Materialize { store } => vec![*store],
            Step::TableJoin(join) => vec![join.store],
            Step::TableTableJoin(side) => vec![side.other_store],
            Step::ForeignKeyJoin(part) => match part.as_ref() {
                ForeignKeyPart::Subscribe { this_store, .. }
                | ForeignKeyPart::Resolve { this_store, .. } => vec![*this_store],
                ForeignKeyPart::Register {
                    subscriptions,
                    other_store,
                }
                | ForeignKeyPart::OtherUpdate {
                    subscriptions,
                    other_store,
                } => vec![*subscriptions, *other_store],
            },
            _ => Vec::new(),
        };
        own.into_iter()
            .chain(
                step.functions()
                    .into_iter()
                    .flat_map(|f| self.functions[f].stores.iter().copied()),
            )
            .collect()
    }

    /// The window and session stores of windowed aggregations, with how long they keep a
    /// window (milliseconds after its start, or a session after its end): the store's
    /// `retention`, at least as long as the window can change.
    pub fn window_retentions(&self) -> Vec<(StoreId, i64)> {
        let declared = |store: StoreId| self.stores[store].spec.retention.as_millis() as i64;
        let aggregations = self.aggregations().filter_map(|(_, aggregation)| {
            let windows = aggregation.windows?;
            Some((
                aggregation.store,
                declared(aggregation.store).max(windows.least_retention()),
            ))
        });
        // A sliding window's records are read again while a new record can share a window
        // with them: up to twice the time difference (and a millisecond) later, plus grace.
        let sliding = self.aggregations().filter_map(|(_, aggregation)| {
            match (aggregation.windows?, aggregation.records?) {
                (Windows::Sliding(w), records) => {
                    Some((records, 2 * w.time_difference + 2 + w.grace))
                }
                _ => None,
            }
        });
        // A join side's records can meet records up to the time difference later, plus grace.
        let joins = self.nodes.iter().filter_map(|node| match &node.step {
            Step::StreamJoin(side) => Some((
                side.this_store,
                declared(side.this_store).max(2 * side.time_difference + side.grace),
            )),
            _ => None,
        });
        aggregations.chain(sliding).chain(joins).collect()
    }

    /// The suppress nodes, whose due updates go downstream when stream time moves.
    pub fn suppressions(&self) -> impl Iterator<Item = (NodeId, &Suppression)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(id, node)| match &node.step {
                Step::Suppress(suppression) => Some((id, suppression.as_ref())),
                _ => None,
            })
    }

    /// The aggregation nodes.
    pub fn aggregations(&self) -> impl Iterator<Item = (&OpNode, &Aggregation)> {
        self.nodes.iter().filter_map(|node| match &node.step {
            Step::Aggregate(aggregation) => Some((node, aggregation.as_ref())),
            _ => None,
        })
    }

    /// A handle Python code can read a keyValue store with, found by name; stores that
    /// operations write hold timestamped values, which the handle reads past.
    pub fn store_handle(&self, name: &str) -> Option<KeyValueStoreHandle> {
        let id = self.stores.iter().position(|s| s.spec.name == name)?;
        let slot = &self.stores[id];
        if slot.spec.kind != StoreKind::KeyValue {
            return None;
        }
        let format = match self.table_nodes().any(|(_, store, _)| store == id) {
            true => EntryFormat::TimestampHidden,
            false => EntryFormat::Plain,
        };
        Some(KeyValueStoreHandle::new(
            name,
            id,
            slot.key_type.clone(),
            slot.value_type.clone(),
            format,
        ))
    }

    /// The nodes keeping tables in stores (aggregations and materializations), with their
    /// store and windows: with caching, their updates go downstream when the task commits.
    pub fn table_nodes(&self) -> impl Iterator<Item = (&OpNode, StoreId, Option<Windows>)> {
        self.upstream_first
            .iter()
            .map(|&id| &self.nodes[id])
            .filter_map(|node| match &node.step {
                Step::Aggregate(aggregation) => {
                    Some((node, aggregation.store, aggregation.windows))
                }
                Step::Materialize { store } => Some((node, *store, None)),
                _ => None,
            })
    }
}

impl Step {
    /// The functions the step calls.
    fn functions(&self) -> Vec<FnId> {
        match self {
            Step::Filter { predicate: f, .. }
            | Step::Peek { action: f }
            | Step::MapValues { mapper: f }
            | Step::MapKey { mapper: f }
            | Step::Map { mapper: f }
            | Step::FlatMap { mapper: f }
            | Step::FlatMapValues { mapper: f }
            | Step::TransformMetadata { mapper: f }
            | Step::TableFilter { predicate: f, .. }
            | Step::TableMapValues { mapper: f }
            | Step::TableGroupBy { mapper: f }
            | Step::ForEach { action: f } => vec![*f],
            Step::ConvertKey
            | Step::ConvertValue
            | Step::ReadOldValues
            | Step::Pass
            | Step::Suppress(_)
            | Step::Materialize { .. } => Vec::new(),
            Step::TableJoin(join) => vec![join.joiner],
            Step::GlobalJoin(join) => vec![join.mapper, join.joiner],
            Step::StreamJoin(side) => vec![side.joiner],
            Step::TableTableJoin(side) => vec![side.joiner],
            Step::ForeignKeyJoin(part) => match part.as_ref() {
                ForeignKeyPart::Subscribe { extractor, .. } => vec![*extractor],
                ForeignKeyPart::Resolve { joiner, .. } => vec![*joiner],
                ForeignKeyPart::Register { .. } | ForeignKeyPart::OtherUpdate { .. } => Vec::new(),
            },
            Step::Aggregate(aggregation) => match aggregation.kind {
                AggregationKind::Count | AggregationKind::TableCount => Vec::new(),
                AggregationKind::Reduce { reducer } => vec![reducer],
                AggregationKind::TableReduce { adder, subtractor } => vec![adder, subtractor],
                AggregationKind::TableAggregate {
                    initializer,
                    adder,
                    subtractor,
                } => vec![initializer, adder, subtractor],
                AggregationKind::Aggregate {
                    initializer,
                    aggregator,
                    merger,
                } => [Some(initializer), Some(aggregator), merger]
                    .into_iter()
                    .flatten()
                    .collect(),
            },
            Step::Branch { branches } => branches.iter().filter_map(|(c, _)| *c).collect(),
            Step::To(target) => target.partitioner.into_iter().collect(),
            Step::ToTopicNameExtractor {
                extractor,
                partitioner,
            } => std::iter::once(*extractor).chain(*partitioner).collect(),
            Step::Print { mapper, .. } => mapper.iter().copied().collect(),
        }
    }
}

/// Union-find over node ids.
struct DisjointSets {
    parent: Vec<usize>,
}

impl DisjointSets {
    fn new(size: usize) -> DisjointSets {
        DisjointSets {
            parent: (0..size).collect(),
        }
    }

    fn find(&mut self, mut item: usize) -> usize {
        while self.parent[item] != item {
            self.parent[item] = self.parent[self.parent[item]];
            item = self.parent[item];
        }
        item
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        self.parent[a] = b;
    }
}

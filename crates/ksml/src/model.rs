//! The parsed KSML definition: streams, tables, stores, functions, pipelines and producers, with
//! inline functions and stores lifted to named entries so that everything refers by name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use millrace_python::Snippet;
use millrace_types::DataType;

use crate::yaml::Mark;

/// KSML function types: their fixed parameters, default expression and result rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunctionType {
    Aggregator,
    ForEach,
    ForeignKeyExtractor,
    Generator,
    Generic,
    Initializer,
    KeyTransformer,
    KeyValueMapper,
    KeyValuePrinter,
    KeyValueToKeyValueListTransformer,
    KeyValueToValueListTransformer,
    KeyValueTransformer,
    Merger,
    MetadataTransformer,
    Predicate,
    Reducer,
    StreamPartitioner,
    TimestampExtractor,
    TopicNameExtractor,
    ValueJoiner,
    ValueTransformer,
}

/// Whether a function type must, may or must not declare a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultRule {
    Required,
    Optional,
    None,
}

impl FunctionType {
    pub const ALL: [FunctionType; 21] = [
        FunctionType::Aggregator,
        FunctionType::ForEach,
        FunctionType::ForeignKeyExtractor,
        FunctionType::Generator,
        FunctionType::Generic,
        FunctionType::Initializer,
        FunctionType::KeyTransformer,
        FunctionType::KeyValueMapper,
        FunctionType::KeyValuePrinter,
        FunctionType::KeyValueToKeyValueListTransformer,
        FunctionType::KeyValueToValueListTransformer,
        FunctionType::KeyValueTransformer,
        FunctionType::Merger,
        FunctionType::MetadataTransformer,
        FunctionType::Predicate,
        FunctionType::Reducer,
        FunctionType::StreamPartitioner,
        FunctionType::TimestampExtractor,
        FunctionType::TopicNameExtractor,
        FunctionType::ValueJoiner,
        FunctionType::ValueTransformer,
    ];

    /// The name used for `type:` in definitions.
    pub fn name(self) -> &'static str {
        match self {
            FunctionType::Aggregator => "aggregator",
            FunctionType::ForEach => "forEach",
            FunctionType::ForeignKeyExtractor => "foreignKeyExtractor",
            FunctionType::Generator => "generator",
            FunctionType::Generic => "generic",
            FunctionType::Initializer => "initializer",
            FunctionType::KeyTransformer => "keyTransformer",
            FunctionType::KeyValueMapper => "keyValueMapper",
            FunctionType::KeyValuePrinter => "keyValuePrinter",
            FunctionType::KeyValueToKeyValueListTransformer => "keyValueToKeyValueListTransformer",
            FunctionType::KeyValueToValueListTransformer => "keyValueToValueListTransformer",
            FunctionType::KeyValueTransformer => "keyValueTransformer",
            FunctionType::Merger => "merger",
            FunctionType::MetadataTransformer => "metadataTransformer",
            FunctionType::Predicate => "predicate",
            FunctionType::Reducer => "reducer",
            FunctionType::StreamPartitioner => "streamPartitioner",
            FunctionType::TimestampExtractor => "timestampExtractor",
            FunctionType::TopicNameExtractor => "topicNameExtractor",
            FunctionType::ValueJoiner => "valueJoiner",
            FunctionType::ValueTransformer => "valueTransformer",
        }
    }

    pub fn from_name(name: &str) -> Option<FunctionType> {
        FunctionType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The parameters KSML passes to functions of this type.
    pub fn parameters(self) -> &'static [&'static str] {
        match self {
            FunctionType::Aggregator => &["key", "value", "aggregatedValue"],
            FunctionType::ForEach
            | FunctionType::KeyTransformer
            | FunctionType::KeyValueMapper
            | FunctionType::KeyValuePrinter
            | FunctionType::KeyValueToKeyValueListTransformer
            | FunctionType::KeyValueToValueListTransformer
            | FunctionType::KeyValueTransformer
            | FunctionType::Predicate
            | FunctionType::ValueTransformer => &["key", "value"],
            FunctionType::ForeignKeyExtractor => &["value"],
            FunctionType::Generator | FunctionType::Generic | FunctionType::Initializer => &[],
            FunctionType::Merger => &["key", "value1", "value2"],
            FunctionType::MetadataTransformer => &["key", "value", "metadata"],
            FunctionType::Reducer => &["value1", "value2"],
            FunctionType::StreamPartitioner => &["topic", "key", "value", "numPartitions"],
            FunctionType::TimestampExtractor => &["record", "previousTimestamp"],
            FunctionType::TopicNameExtractor => &["key", "value", "recordContext"],
            FunctionType::ValueJoiner => &["key", "value1", "value2"],
        }
    }

    /// What the function returns when it has no expression and its code does not return.
    pub fn default_expression(self) -> Option<&'static str> {
        match self {
            FunctionType::Aggregator => Some("aggregatedValue"),
            FunctionType::KeyTransformer => Some("key"),
            FunctionType::KeyValueToKeyValueListTransformer => Some("[(key, value)]"),
            FunctionType::KeyValueToValueListTransformer => Some("[value]"),
            FunctionType::KeyValueTransformer => Some("(key, value)"),
            FunctionType::MetadataTransformer => Some("metadata"),
            FunctionType::Predicate => Some("True"),
            FunctionType::ValueTransformer => Some("value"),
            _ => None,
        }
    }

    pub fn result_rule(self) -> ResultRule {
        match self {
            FunctionType::ForEach => ResultRule::None,
            FunctionType::Aggregator
            | FunctionType::ForeignKeyExtractor
            | FunctionType::Initializer
            | FunctionType::KeyValueMapper
            | FunctionType::Merger
            | FunctionType::Reducer
            | FunctionType::ValueJoiner => ResultRule::Required,
            _ => ResultRule::Optional,
        }
    }

    /// The middle part of the function's logger name.
    pub fn logger_kind(self) -> &'static str {
        match self {
            FunctionType::Generator => "generator",
            _ => "function",
        }
    }
}

/// A reference to a named thing, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub mark: Mark,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterDef {
    pub name: String,
    pub param_type: Option<DataType>,
    pub default: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FunctionDef {
    pub name: String,
    /// None when an inline function omits `type` (it takes the type its place expects).
    pub function_type: Option<FunctionType>,
    pub parameters: Vec<ParameterDef>,
    pub global_code: Option<Snippet>,
    pub code: Option<Snippet>,
    pub expression: Option<Snippet>,
    pub result_type: Option<DataType>,
    pub stores: Vec<Ref>,
    pub mark: Mark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    Stream,
    Table,
    GlobalTable,
}

impl TopicKind {
    pub fn name(self) -> &'static str {
        match self {
            TopicKind::Stream => "stream",
            TopicKind::Table => "table",
            TopicKind::GlobalTable => "globalTable",
        }
    }
}

/// Where a consumer starts when its group has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    None,
    /// Start at the first record no older than this.
    ByDuration(Duration),
}

/// A stream, table or global table.
#[derive(Debug, Clone)]
pub struct TopicDef {
    pub name: String,
    pub kind: TopicKind,
    pub topic: String,
    pub key_type: DataType,
    pub value_type: DataType,
    pub offset_reset: Option<OffsetReset>,
    pub timestamp_extractor: Option<Ref>,
    pub partitioner: Option<Ref>,
    pub store: Option<Ref>,
    pub mark: Mark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreType {
    KeyValue,
    Window,
    Session,
}

impl StoreType {
    pub fn name(self) -> &'static str {
        match self {
            StoreType::KeyValue => "keyValue",
            StoreType::Window => "window",
            StoreType::Session => "session",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreDef {
    pub name: String,
    pub store_type: StoreType,
    pub persistent: bool,
    pub timestamped: bool,
    pub versioned: bool,
    pub history_retention: Duration,
    pub segment_interval: Duration,
    pub retention: Duration,
    pub window_size: Duration,
    pub retain_duplicates: bool,
    pub key_type: Option<DataType>,
    pub value_type: Option<DataType>,
    pub caching: bool,
    pub logging: bool,
    pub mark: Mark,
}

/// A parameter of an operation, as its field's kind dictates.
#[derive(Debug, Clone)]
pub enum OpParam {
    Function(Ref),
    Store(Ref),
    Topic(Ref),
    Duration(Duration),
    Integer(i64),
    Text(String),
    Type(DataType),
}

/// Every operation type a pipeline's `via` may name. Aliases (`mapValue`, `mapValues`,
/// `transformValue`) are one kind, so everything after parsing matches on this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Filter,
    FilterNot,
    Peek,
    MapValues,
    MapKey,
    Map,
    FlatMap,
    FlatMapValues,
    TransformMetadata,
    ConvertKey,
    ConvertValue,
    ConvertKeyValue,
    Merge,
    Repartition,
    GroupByKey,
    GroupBy,
    Aggregate,
    Cogroup,
    Count,
    Reduce,
    WindowByTime,
    WindowBySession,
    Suppress,
    Join,
    LeftJoin,
    OuterJoin,
    ToStream,
    ToTable,
}

impl OpKind {
    pub const ALL: [OpKind; 28] = [
        OpKind::Filter,
        OpKind::FilterNot,
        OpKind::Peek,
        OpKind::MapValues,
        OpKind::MapKey,
        OpKind::Map,
        OpKind::FlatMap,
        OpKind::FlatMapValues,
        OpKind::TransformMetadata,
        OpKind::ConvertKey,
        OpKind::ConvertValue,
        OpKind::ConvertKeyValue,
        OpKind::Merge,
        OpKind::Repartition,
        OpKind::GroupByKey,
        OpKind::GroupBy,
        OpKind::Aggregate,
        OpKind::Cogroup,
        OpKind::Count,
        OpKind::Reduce,
        OpKind::WindowByTime,
        OpKind::WindowBySession,
        OpKind::Suppress,
        OpKind::Join,
        OpKind::LeftJoin,
        OpKind::OuterJoin,
        OpKind::ToStream,
        OpKind::ToTable,
    ];

    /// The `type:` names of this kind; KSML accepts each of them.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            OpKind::Filter => &["filter"],
            OpKind::FilterNot => &["filterNot"],
            OpKind::Peek => &["peek"],
            OpKind::MapValues => &["mapValue", "mapValues", "transformValue"],
            OpKind::MapKey => &["mapKey", "selectKey", "transformKey"],
            OpKind::Map => &["map", "transformKeyValue"],
            OpKind::FlatMap => &["flatMap", "transformKeyValueToKeyValueList"],
            OpKind::FlatMapValues => &["flatMapValues", "transformKeyValueToValueList"],
            OpKind::TransformMetadata => &["transformMetadata"],
            OpKind::ConvertKey => &["convertKey"],
            OpKind::ConvertValue => &["convertValue"],
            OpKind::ConvertKeyValue => &["convertKeyValue"],
            OpKind::Merge => &["merge"],
            OpKind::Repartition => &["repartition"],
            OpKind::GroupByKey => &["groupByKey"],
            OpKind::GroupBy => &["groupBy"],
            OpKind::Aggregate => &["aggregate"],
            OpKind::Cogroup => &["cogroup"],
            OpKind::Count => &["count"],
            OpKind::Reduce => &["reduce"],
            OpKind::WindowByTime => &["windowByTime"],
            OpKind::WindowBySession => &["windowBySession"],
            OpKind::Suppress => &["suppress"],
            OpKind::Join => &["join"],
            OpKind::LeftJoin => &["leftJoin"],
            OpKind::OuterJoin => &["outerJoin"],
            OpKind::ToStream => &["toStream"],
            OpKind::ToTable => &["toTable"],
        }
    }

    pub fn from_name(name: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.names().contains(&name))
    }
}

/// One step of a pipeline's `via`.
#[derive(Debug, Clone)]
pub struct Operation {
    pub name: String,
    pub kind: OpKind,
    /// The `type:` as written (one of the kind's names), for messages.
    pub type_name: String,
    pub params: BTreeMap<&'static str, OpParam>,
    pub mark: Mark,
}

impl Operation {
    pub fn function(&self, field: &str) -> Option<&Ref> {
        match self.params.get(field) {
            Some(OpParam::Function(r)) => Some(r),
            _ => None,
        }
    }
    pub fn topic(&self, field: &str) -> Option<&Ref> {
        match self.params.get(field) {
            Some(OpParam::Topic(r)) => Some(r),
            _ => None,
        }
    }
    pub fn store(&self, field: &str) -> Option<&Ref> {
        match self.params.get(field) {
            Some(OpParam::Store(r)) => Some(r),
            _ => None,
        }
    }
    pub fn duration(&self, field: &str) -> Option<Duration> {
        match self.params.get(field) {
            Some(OpParam::Duration(d)) => Some(*d),
            _ => None,
        }
    }
    pub fn text(&self, field: &str) -> Option<&str> {
        match self.params.get(field) {
            Some(OpParam::Text(t)) => Some(t),
            _ => None,
        }
    }
    pub fn integer(&self, field: &str) -> Option<i64> {
        match self.params.get(field) {
            Some(OpParam::Integer(n)) => Some(*n),
            _ => None,
        }
    }
    pub fn data_type(&self, field: &str) -> Option<&DataType> {
        match self.params.get(field) {
            Some(OpParam::Type(t)) => Some(t),
            _ => None,
        }
    }
}

/// A topic written to: a declared stream/table by name, or an inline topic.
#[derive(Debug, Clone)]
pub struct ToTarget {
    /// A declared stream or table, when `to` names one.
    pub stream: Option<String>,
    pub topic: String,
    pub key_type: Option<DataType>,
    pub value_type: Option<DataType>,
    pub partitioner: Option<Ref>,
    pub mark: Mark,
}

#[derive(Debug, Clone)]
pub struct BranchDef {
    pub condition: Option<Ref>,
    pub via: Vec<Operation>,
    pub sink: Sink,
    pub mark: Mark,
}

#[derive(Debug, Clone)]
pub enum Sink {
    As(String),
    To(ToTarget),
    ToTopicNameExtractor {
        extractor: Ref,
        partitioner: Option<Ref>,
    },
    ForEach(Ref),
    Print {
        filename: Option<String>,
        label: Option<String>,
        mapper: Option<Ref>,
    },
    Branch(Vec<BranchDef>),
}

#[derive(Debug, Clone)]
pub struct PipelineDef {
    pub name: String,
    /// A stream, table, globalTable or an earlier pipeline's `as` name.
    pub from: Ref,
    pub via: Vec<Operation>,
    pub sink: Sink,
    pub mark: Mark,
}

#[derive(Debug, Clone)]
pub struct ProducerDef {
    pub name: String,
    pub generator: Ref,
    pub to: ToTarget,
    pub interval: Option<Duration>,
    pub count: Option<u64>,
    pub batch_size: u32,
    pub condition: Option<Ref>,
    pub until: Option<Ref>,
    pub mark: Mark,
}

/// One definition file.
#[derive(Debug, Clone)]
pub struct Definition {
    pub file: PathBuf,
    /// The Python namespace (the key in the runner config, or the file's stem).
    pub namespace: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub description: Option<String>,
    /// Streams, tables and global tables by name.
    pub topics: BTreeMap<String, TopicDef>,
    pub stores: BTreeMap<String, StoreDef>,
    /// Functions in declaration order (globalCode runs in this order).
    pub functions: Vec<FunctionDef>,
    pub pipelines: Vec<PipelineDef>,
    pub producers: Vec<ProducerDef>,
    /// Every place a function is referenced, with the function type expected there.
    pub function_uses: Vec<(Ref, FunctionType)>,
    /// Every place a store is referenced.
    pub store_uses: Vec<Ref>,
}

impl Definition {
    pub fn function(&self, name: &str) -> Option<&FunctionDef> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// The file name as written in messages.
    pub fn file_name(&self) -> String {
        self.file.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_name_belongs_to_exactly_one_kind() {
        let names: Vec<&str> = OpKind::ALL
            .iter()
            .flat_map(|k| k.names().iter().copied())
            .collect();
        assert_eq!(names.len(), 35, "KSML has 35 operation type names");
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "a name is listed twice");
        for name in names {
            let kind = OpKind::from_name(name).expect("every listed name is found");
            assert!(kind.names().contains(&name));
        }
        assert_eq!(OpKind::from_name("filtr"), None);
    }
}

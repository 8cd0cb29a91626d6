//! YAML nodes to a [`Definition`], reporting every problem with its place. Unknown keys are
//! warnings (KSML's runner ignores them and published examples carry some); `--strict` makes
//! them errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use millrace_python::Snippet;
use millrace_types::DataType;
use millrace_types::duration::parse_duration;

use crate::diagnostics::Diagnostics;
use crate::model::*;
use crate::yaml::{Mark, Node, NodeKind};

/// Reads a mapping's fields, remembering which were used so the rest can be reported.
pub(crate) struct Fields<'n> {
    entries: &'n [(Node, Node)],
    used: Vec<bool>,
    what: String,
}

impl<'n> Fields<'n> {
    pub(crate) fn of(
        node: &'n Node,
        what: impl Into<String>,
        diags: &mut Diagnostics,
    ) -> Option<Fields<'n>> {
        let what = what.into();
        match node.as_map() {
            Some(entries) => Some(Fields {
                entries,
                used: vec![false; entries.len()],
                what,
            }),
            None => {
                diags.error(
                    node.mark,
                    format!("{what} must be a mapping, found {}", node.describe()),
                );
                None
            }
        }
    }

    pub(crate) fn take(&mut self, key: &str) -> Option<&'n Node> {
        let index = self
            .entries
            .iter()
            .position(|(k, _)| k.as_scalar() == Some(key))?;
        self.used[index] = true;
        let value = &self.entries[index].1;
        (!value.is_null()).then_some(value)
    }

    fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.as_scalar() == Some(key))
    }

    /// Warns about the keys nobody asked for.
    pub(crate) fn finish(self, diags: &mut Diagnostics) {
        self.report_unused(diags, false);
    }

    /// Fails on the keys nobody asked for.
    pub(crate) fn finish_strict(self, diags: &mut Diagnostics) {
        self.report_unused(diags, true);
    }

    fn report_unused(self, diags: &mut Diagnostics, as_errors: bool) {
        for ((key, _), used) in self.entries.iter().zip(self.used) {
            if !used {
                let message = format!(
                    "unknown key '{}' in {}",
                    key.as_scalar().unwrap_or("?"),
                    self.what
                );
                if as_errors {
                    diags.error(key.mark, message);
                } else {
                    diags.warn(key.mark, message);
                }
            }
        }
    }

    pub(crate) fn text(&mut self, key: &str, diags: &mut Diagnostics) -> Option<String> {
        let node = self.take(key)?;
        scalar_text(node, &format!("'{key}'"), diags)
    }

    fn required_text(&mut self, key: &str, mark: Mark, diags: &mut Diagnostics) -> Option<String> {
        let value = self.text(key, diags);
        if value.is_none() && !self.has(key) {
            diags.error(
                mark,
                format!("{} is missing required field '{key}'", self.what),
            );
        }
        value
    }

    pub(crate) fn boolean(&mut self, key: &str, diags: &mut Diagnostics) -> bool {
        let Some(node) = self.take(key) else {
            return false;
        };
        node.as_bool().unwrap_or_else(|| {
            diags.error(node.mark, format!("'{key}' must be true or false"));
            false
        })
    }

    fn duration(&mut self, key: &str, diags: &mut Diagnostics) -> Option<Duration> {
        let node = self.take(key)?;
        duration_of(node, key, diags)
    }

    pub(crate) fn integer(&mut self, key: &str, diags: &mut Diagnostics) -> Option<i64> {
        let node = self.take(key)?;
        let value = node.as_i64();
        if value.is_none() {
            diags.error(node.mark, format!("'{key}' must be a whole number"));
        }
        value
    }

    fn data_type(&mut self, key: &str, diags: &mut Diagnostics) -> Option<DataType> {
        let node = self.take(key)?;
        type_of(node, diags)
    }

    fn snippet(&mut self, key: &str, diags: &mut Diagnostics) -> Option<Snippet> {
        let node = self.take(key)?;
        let text = match (&node.kind, key) {
            // KSML reads a Python snippet written as a YAML list (brackets left unquoted) back
            // as the list's text, and one written as a mapping as no snippet at all.
            (NodeKind::Seq(items), "expression") => {
                let items: Vec<&str> = items
                    .iter()
                    .filter_map(|item| match &item.kind {
                        NodeKind::Scalar { text, .. } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect();
                format!("[{}]", items.join(","))
            }
            (NodeKind::Map(_), "expression") => {
                diags.warn(
                    node.mark,
                    "'expression' is a YAML mapping, which KSML reads as no expression (the \
                     function returns None): quote it to return this dict",
                );
                return None;
            }
            _ => scalar_text(node, &format!("'{key}'"), diags)?,
        };
        Some(Snippet {
            text,
            line: Some(node.text_line()),
        })
    }
}

fn scalar_text(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<String> {
    match &node.kind {
        NodeKind::Scalar { text, .. } => Some(text.clone()),
        _ => {
            diags.error(
                node.mark,
                format!("{what} must be a scalar, found {}", node.describe()),
            );
            None
        }
    }
}

fn duration_of(node: &Node, key: &str, diags: &mut Diagnostics) -> Option<Duration> {
    let text = scalar_text(node, &format!("'{key}'"), diags)?;
    match parse_duration(&text) {
        Ok(d) => Some(d),
        Err(e) => {
            diags.error(node.mark, e);
            None
        }
    }
}

fn type_of(node: &Node, diags: &mut Diagnostics) -> Option<DataType> {
    let text = scalar_text(node, "a type", diags)?;
    match DataType::parse(&text) {
        Ok(t) => Some(t),
        Err(e) => {
            diags.error(node.mark, e.to_string());
            None
        }
    }
}

/// What an operation field holds.
#[derive(Clone, Copy)]
enum FieldKind {
    Function(FunctionType),
    Store,
    Topic,
    Duration,
    Integer,
    Text,
    Type,
}

use FieldKind as K;
use FunctionType as F;

type FieldSpec = (&'static str, FieldKind, bool);

const JOIN_FIELDS: &[FieldSpec] = &[
    ("stream", K::Topic, false),
    ("table", K::Topic, false),
    ("globalTable", K::Topic, false),
    ("valueJoiner", K::Function(F::ValueJoiner), false),
    ("mapper", K::Function(F::KeyValueMapper), false),
    (
        "foreignKeyExtractor",
        K::Function(F::ForeignKeyExtractor),
        false,
    ),
    ("partitioner", K::Function(F::StreamPartitioner), false),
    ("otherPartitioner", K::Function(F::StreamPartitioner), false),
    ("timeDifference", K::Duration, false),
    ("grace", K::Duration, false),
    ("thisStore", K::Store, false),
    ("otherStore", K::Store, false),
    ("store", K::Store, false),
];

/// The fields an operation kind takes: (name, what it holds, required).
fn op_fields(kind: OpKind) -> &'static [FieldSpec] {
    match kind {
        OpKind::Filter | OpKind::FilterNot => &[
            ("if", K::Function(F::Predicate), true),
            ("store", K::Store, false),
        ],
        OpKind::Peek => &[("forEach", K::Function(F::ForEach), true)],
        OpKind::MapValues => &[
            ("mapper", K::Function(F::ValueTransformer), true),
            ("store", K::Store, false),
        ],
        OpKind::MapKey => &[("mapper", K::Function(F::KeyTransformer), true)],
        OpKind::Map => &[("mapper", K::Function(F::KeyValueTransformer), true)],
        OpKind::FlatMap => &[(
            "mapper",
            K::Function(F::KeyValueToKeyValueListTransformer),
            true,
        )],
        OpKind::FlatMapValues => &[(
            "mapper",
            K::Function(F::KeyValueToValueListTransformer),
            true,
        )],
        OpKind::TransformMetadata => &[("mapper", K::Function(F::MetadataTransformer), true)],
        OpKind::ConvertKey | OpKind::ConvertValue | OpKind::ConvertKeyValue => {
            &[("into", K::Type, true)]
        }
        OpKind::Merge => &[("stream", K::Topic, true)],
        OpKind::Repartition => &[
            ("numberOfPartitions", K::Integer, false),
            ("partitioner", K::Function(F::StreamPartitioner), false),
        ],
        OpKind::GroupByKey => &[("store", K::Store, false)],
        OpKind::GroupBy => &[
            ("mapper", K::Function(F::KeyValueMapper), true),
            ("store", K::Store, false),
        ],
        OpKind::Aggregate => &[
            ("initializer", K::Function(F::Initializer), true),
            ("aggregator", K::Function(F::Aggregator), false),
            ("adder", K::Function(F::Aggregator), false),
            ("subtractor", K::Function(F::Aggregator), false),
            ("merger", K::Function(F::Merger), false),
            ("store", K::Store, false),
        ],
        OpKind::Cogroup => &[
            ("aggregator", K::Function(F::Aggregator), true),
            ("store", K::Store, false),
        ],
        OpKind::Count => &[("store", K::Store, false)],
        OpKind::Reduce => &[
            ("reducer", K::Function(F::Reducer), false),
            ("adder", K::Function(F::Reducer), false),
            ("subtractor", K::Function(F::Reducer), false),
            ("store", K::Store, false),
        ],
        OpKind::WindowByTime => &[
            ("windowType", K::Text, true),
            ("duration", K::Duration, false),
            ("advanceBy", K::Duration, false),
            ("timeDifference", K::Duration, false),
            ("grace", K::Duration, false),
        ],
        OpKind::WindowBySession => &[
            ("inactivityGap", K::Duration, true),
            ("grace", K::Duration, false),
        ],
        OpKind::Suppress => &[
            ("until", K::Text, true),
            ("duration", K::Duration, false),
            ("maxBytes", K::Text, false),
            ("maxRecords", K::Text, false),
            ("bufferFullStrategy", K::Text, false),
        ],
        OpKind::ToStream => &[("mapper", K::Function(F::KeyTransformer), false)],
        OpKind::ToTable => &[("store", K::Store, false)],
        OpKind::Join | OpKind::LeftJoin | OpKind::OuterJoin => JOIN_FIELDS,
    }
}

/// Builds a [`Definition`] from a parsed YAML document.
pub struct DefinitionParser<'d> {
    diags: &'d mut Diagnostics,
    def: Definition,
}

impl<'d> DefinitionParser<'d> {
    pub fn parse(
        root: &Node,
        file: &Path,
        namespace: &str,
        diags: &'d mut Diagnostics,
    ) -> Definition {
        let mut parser = DefinitionParser {
            diags,
            def: Definition {
                file: file.to_path_buf(),
                namespace: namespace.to_string(),
                name: None,
                version: None,
                description: None,
                topics: BTreeMap::new(),
                stores: BTreeMap::new(),
                functions: Vec::new(),
                pipelines: Vec::new(),
                producers: Vec::new(),
                function_uses: Vec::new(),
                store_uses: Vec::new(),
            },
        };
        parser.root(root);
        parser.def
    }

    fn root(&mut self, root: &Node) {
        let Some(mut fields) = Fields::of(root, "the definition", self.diags) else {
            return;
        };
        self.def.name = fields.text("name", self.diags);
        self.def.version = fields.text("version", self.diags);
        self.def.description = fields.text("description", self.diags);
        // Named functions first, so their globalCode runs in declaration order before the
        // inline functions found inside pipelines and producers.
        if let Some(functions) = fields.take("functions") {
            self.each_named(functions, "functions", |p, name, node| {
                p.function(name, node, None);
            });
        }
        for (section, kind) in [
            ("streams", TopicKind::Stream),
            ("tables", TopicKind::Table),
            ("globalTables", TopicKind::GlobalTable),
        ] {
            if let Some(node) = fields.take(section) {
                self.each_named(node, section, |p, name, node| {
                    if let Some(topic) = p.topic_def(name, node, kind) {
                        p.add_topic(topic);
                    }
                });
            }
        }
        if let Some(stores) = fields.take("stores") {
            self.each_named(stores, "stores", |p, name, node| {
                p.store(name, node, true);
            });
        }
        if let Some(pipelines) = fields.take("pipelines") {
            self.each_named(pipelines, "pipelines", |p, name, node| {
                if let Some(pipeline) = p.pipeline(name, node) {
                    p.def.pipelines.push(pipeline);
                }
            });
        }
        if let Some(producers) = fields.take("producers") {
            self.each_named(producers, "producers", |p, name, node| {
                if let Some(producer) = p.producer(name, node) {
                    p.def.producers.push(producer);
                }
            });
        }
        fields.finish(self.diags);
    }

    fn each_named(
        &mut self,
        section: &Node,
        what: &str,
        mut each: impl FnMut(&mut Self, &str, &Node),
    ) {
        let Some(entries) = section.as_map() else {
            self.diags.error(
                section.mark,
                format!(
                    "'{what}' must map names to definitions, found {}",
                    section.describe()
                ),
            );
            return;
        };
        for (key, value) in entries {
            match key.as_scalar() {
                Some(name) => each(self, name, value),
                None => self.diags.error(key.mark, "names must be scalars"),
            }
        }
    }

    fn add_topic(&mut self, topic: TopicDef) {
        if let Some(existing) = self.def.topics.get(&topic.name) {
            self.diags.error(
                topic.mark,
                format!(
                    "'{}' is already defined as a {} at line {}",
                    topic.name,
                    existing.kind.name(),
                    existing.mark.line
                ),
            );
            return;
        }
        self.def.topics.insert(topic.name.clone(), topic);
    }

    fn topic_def(&mut self, name: &str, node: &Node, kind: TopicKind) -> Option<TopicDef> {
        let what = format!("{} '{name}'", kind.name());
        let mut f = Fields::of(node, &what, self.diags)?;
        let topic = f.required_text("topic", node.mark, self.diags);
        let key_type = f.data_type("keyType", self.diags);
        let value_type = f.data_type("valueType", self.diags);
        if kind == TopicKind::Stream {
            for (field, value) in [("keyType", &key_type), ("valueType", &value_type)] {
                if value.is_none() && !f.has(field) {
                    self.diags.error(
                        node.mark,
                        format!("{what} is missing required field '{field}'"),
                    );
                }
            }
        }
        let offset_reset = f
            .take("offsetResetPolicy")
            .and_then(|n| self.offset_reset(n));
        let timestamp_extractor = f.take("timestampExtractor").and_then(|n| {
            self.function_ref(
                n,
                F::TimestampExtractor,
                &format!("{name}_timestampExtractor"),
            )
        });
        let partitioner = f.take("partitioner").and_then(|n| {
            self.function_ref(n, F::StreamPartitioner, &format!("{name}_partitioner"))
        });
        let store = if kind == TopicKind::Stream {
            None
        } else {
            f.take("store").and_then(|n| self.store_ref(n, name))
        };
        f.finish(self.diags);
        Some(TopicDef {
            name: name.to_string(),
            kind,
            topic: topic?,
            key_type: key_type.unwrap_or(DataType::Any),
            value_type: value_type.unwrap_or(DataType::Any),
            offset_reset,
            timestamp_extractor,
            partitioner,
            store,
            mark: node.mark,
        })
    }

    fn offset_reset(&mut self, node: &Node) -> Option<OffsetReset> {
        let text = scalar_text(node, "'offsetResetPolicy'", self.diags)?;
        let policy = match text.to_ascii_lowercase().as_str() {
            "earliest" => OffsetReset::Earliest,
            "latest" => OffsetReset::Latest,
            "none" => OffsetReset::None,
            other => match other.strip_prefix("by_duration:") {
                Some(_) => match parse_duration(&text["by_duration:".len()..]) {
                    Ok(d) => OffsetReset::ByDuration(d),
                    Err(e) => {
                        self.diags.error(node.mark, e);
                        return None;
                    }
                },
                None => {
                    self.diags.error(
                        node.mark,
                        format!(
                            "unknown offsetResetPolicy '{text}' (use earliest, latest, none or by_duration:<duration>)"
                        ),
                    );
                    return None;
                }
            },
        };
        Some(policy)
    }

    /// A store by name, or an inline store (registered under `default_name` unless named).
    fn store_ref(&mut self, node: &Node, default_name: &str) -> Option<Ref> {
        let store = match node.as_scalar() {
            Some(name) => Ref {
                name: name.to_string(),
                mark: node.mark,
            },
            None => {
                let name = node
                    .get("name")
                    .and_then(Node::as_scalar)
                    .unwrap_or(default_name)
                    .to_string();
                self.store(&name, node, false)?;
                Ref {
                    name,
                    mark: node.mark,
                }
            }
        };
        self.def.store_uses.push(store.clone());
        Some(store)
    }

    fn store(&mut self, name: &str, node: &Node, top_level: bool) -> Option<&StoreDef> {
        let what = format!("store '{name}'");
        let mut f = Fields::of(node, &what, self.diags)?;
        let store_type = match f.text("type", self.diags).as_deref() {
            Some("keyValue") => StoreType::KeyValue,
            Some("window") => StoreType::Window,
            Some("session") => StoreType::Session,
            Some(other) => {
                self.diags.error(
                    node.get("type").map_or(node.mark, |n| n.mark),
                    format!("unknown store type '{other}' (use keyValue, window or session)"),
                );
                StoreType::KeyValue
            }
            None if top_level => {
                self.diags.error(
                    node.mark,
                    format!("{what} is missing required field 'type'"),
                );
                StoreType::KeyValue
            }
            None => StoreType::KeyValue,
        };
        let _ = f.take("name");
        // Without types (KSML makes them optional), a store takes the types of the operation
        // using it, or keeps what functions put in it as any data.
        let key_type = f.data_type("keyType", self.diags);
        let value_type = f.data_type("valueType", self.diags);
        let store = StoreDef {
            name: name.to_string(),
            store_type,
            persistent: f.boolean("persistent", self.diags),
            timestamped: f.boolean("timestamped", self.diags),
            versioned: f.boolean("versioned", self.diags),
            history_retention: f
                .duration("historyRetention", self.diags)
                .unwrap_or_default(),
            segment_interval: f
                .duration("segmentInterval", self.diags)
                .unwrap_or_default(),
            retention: f.duration("retention", self.diags).unwrap_or_default(),
            window_size: f.duration("windowSize", self.diags).unwrap_or_default(),
            retain_duplicates: f.boolean("retainDuplicates", self.diags),
            key_type,
            value_type,
            caching: f.boolean("caching", self.diags),
            logging: f.boolean("logging", self.diags),
            mark: node.mark,
        };
        f.finish(self.diags);
        if self.def.stores.contains_key(name) {
            self.diags
                .error(node.mark, format!("store '{name}' is defined twice"));
            return None;
        }
        self.def.stores.insert(name.to_string(), store);
        self.def.stores.get(name)
    }

    /// A function by name, or an inline function registered under `generated_name`.
    fn function_ref(
        &mut self,
        node: &Node,
        expected: FunctionType,
        generated_name: &str,
    ) -> Option<Ref> {
        let function = match &node.kind {
            NodeKind::Scalar { text, .. } => Ref {
                name: text.clone(),
                mark: node.mark,
            },
            _ => {
                let name = node
                    .get("name")
                    .and_then(Node::as_scalar)
                    .unwrap_or(generated_name)
                    .to_string();
                self.function(&name, node, Some(expected))?;
                Ref {
                    name,
                    mark: node.mark,
                }
            }
        };
        self.def.function_uses.push((function.clone(), expected));
        Some(function)
    }

    /// Parses a function definition and registers it.
    fn function(
        &mut self,
        name: &str,
        node: &Node,
        inline_type: Option<FunctionType>,
    ) -> Option<()> {
        let what = format!("function '{name}'");
        let mut f = Fields::of(node, &what, self.diags)?;
        let _ = f.take("name");
        let function_type = match f.take("type") {
            Some(type_node) => {
                let text = scalar_text(type_node, "'type'", self.diags)?;
                match FunctionType::from_name(&text) {
                    Some(t) => Some(t),
                    None => {
                        self.diags
                            .error(type_node.mark, format!("unknown function type '{text}'"));
                        None
                    }
                }
            }
            None if inline_type.is_some() => inline_type,
            // KSML's default function type: its parameters are the ones it lists.
            None => Some(FunctionType::Generic),
        };
        let mut parameters = Vec::new();
        if let Some(params) = f.take("parameters") {
            match params.as_seq() {
                Some(items) => {
                    for item in items {
                        if let Some(p) = self.parameter(item) {
                            parameters.push(p);
                        }
                    }
                }
                None => self
                    .diags
                    .error(params.mark, "'parameters' must be a list of {name, type}"),
            }
        }
        let global_code = f.snippet("globalCode", self.diags);
        let code = f.snippet("code", self.diags);
        let expression = f.snippet("expression", self.diags);
        let result_type = f.data_type("resultType", self.diags);
        let mut stores = Vec::new();
        if let Some(list) = f.take("stores") {
            match list.as_seq() {
                Some(items) => {
                    for item in items {
                        if let Some(store) = self.store_ref(item, name) {
                            stores.push(store);
                        }
                    }
                }
                None => self
                    .diags
                    .error(list.mark, "'stores' must be a list of store names"),
            }
        }
        f.finish(self.diags);
        if self
            .def
            .functions
            .iter()
            .any(|existing| existing.name == name)
        {
            self.diags
                .error(node.mark, format!("function '{name}' is defined twice"));
            return None;
        }
        self.def.functions.push(FunctionDef {
            name: name.to_string(),
            function_type,
            parameters,
            global_code,
            code,
            expression,
            result_type,
            stores,
            mark: node.mark,
        });
        Some(())
    }

    fn parameter(&mut self, node: &Node) -> Option<ParameterDef> {
        let mut f = Fields::of(node, "a parameter", self.diags)?;
        let name = f.required_text("name", node.mark, self.diags);
        let param_type = f.data_type("type", self.diags);
        let default = f.text("defaultValue", self.diags);
        f.finish(self.diags);
        Some(ParameterDef {
            name: name?,
            param_type,
            default,
        })
    }

    fn pipeline(&mut self, name: &str, node: &Node) -> Option<PipelineDef> {
        let what = format!("pipeline '{name}'");
        let mut f = Fields::of(node, &what, self.diags)?;
        let _ = f.take("name");
        let from = match f.take("from") {
            Some(from) => self.source_ref(from, &format!("{name}_from")),
            None => {
                self.diags.error(
                    node.mark,
                    format!("{what} is missing required field 'from'"),
                );
                None
            }
        };
        let via = self.via(&mut f, name);
        let sink = self.sink(&mut f, name, node.mark);
        f.finish(self.diags);
        Some(PipelineDef {
            name: name.to_string(),
            from: from?,
            via,
            sink: sink.unwrap_or_else(|| Sink::As(name.to_string())),
            mark: node.mark,
        })
    }

    /// `from:` a name, or an inline topic registered as a stream.
    fn source_ref(&mut self, node: &Node, generated_name: &str) -> Option<Ref> {
        if let Some(name) = node.as_scalar() {
            return Some(Ref {
                name: name.to_string(),
                mark: node.mark,
            });
        }
        let mut topic = self.topic_def(generated_name, node, TopicKind::Stream)?;
        topic.name = generated_name.to_string();
        self.add_topic(topic);
        Some(Ref {
            name: generated_name.to_string(),
            mark: node.mark,
        })
    }

    fn via(&mut self, f: &mut Fields<'_>, owner: &str) -> Vec<Operation> {
        let Some(via) = f.take("via") else {
            return Vec::new();
        };
        let Some(items) = via.as_seq() else {
            self.diags
                .error(via.mark, "'via' must be a list of operations");
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.operation(item, owner, i + 1))
            .collect()
    }

    fn operation(&mut self, node: &Node, owner: &str, step: usize) -> Option<Operation> {
        let mut f = Fields::of(node, format!("step {step} of '{owner}'"), self.diags)?;
        let op_type = f.required_text("type", node.mark, self.diags)?;
        let name = f
            .text("name", self.diags)
            .unwrap_or_else(|| format!("{owner}_via_step{step}_{op_type}"));
        let Some(kind) = OpKind::from_name(&op_type) else {
            self.diags.error(
                node.get("type").map_or(node.mark, |n| n.mark),
                format!("unknown operation type '{op_type}'"),
            );
            return None;
        };
        let mut params = BTreeMap::new();
        for (field, field_kind, required) in op_fields(kind) {
            let Some(value) = f.take(field) else {
                if *required {
                    self.diags.error(
                        node.mark,
                        format!("operation '{op_type}' is missing required field '{field}'"),
                    );
                }
                continue;
            };
            let generated = format!("{name}_{field}");
            let param = match field_kind {
                K::Function(expected) => self
                    .function_ref(value, *expected, &generated)
                    .map(OpParam::Function),
                K::Store => self.store_ref(value, &name).map(OpParam::Store),
                K::Topic => scalar_text(value, &format!("'{field}'"), self.diags).map(|t| {
                    OpParam::Topic(Ref {
                        name: t,
                        mark: value.mark,
                    })
                }),
                K::Duration => duration_of(value, field, self.diags).map(OpParam::Duration),
                K::Integer => match value.as_i64() {
                    Some(n) => Some(OpParam::Integer(n)),
                    None => {
                        self.diags
                            .error(value.mark, format!("'{field}' must be a whole number"));
                        None
                    }
                },
                K::Text => scalar_text(value, &format!("'{field}'"), self.diags).map(OpParam::Text),
                K::Type => type_of(value, self.diags).map(OpParam::Type),
            };
            if let Some(param) = param {
                params.insert(*field, param);
            }
        }
        f.finish(self.diags);
        Some(Operation {
            name,
            kind,
            type_name: op_type,
            params,
            mark: node.mark,
        })
    }

    /// The pipeline's (or branch's) sink; None when it has none.
    fn sink(&mut self, f: &mut Fields<'_>, owner: &str, mark: Mark) -> Option<Sink> {
        let mut sinks = Vec::new();
        if let Some(node) = f.take("as")
            && let Some(name) = scalar_text(node, "'as'", self.diags)
        {
            sinks.push(Sink::As(name));
        }
        if let Some(node) = f.take("to")
            && let Some(target) = self.topic_target(node, owner)
        {
            sinks.push(Sink::To(target));
        }
        if let Some(node) = f.take("toTopicNameExtractor")
            && let Some(sink) = self.topic_name_extractor(node, owner)
        {
            sinks.push(sink);
        }
        if let Some(node) = f.take("forEach")
            && let Some(r) = self.function_ref(node, F::ForEach, &format!("{owner}_forEach"))
        {
            sinks.push(Sink::ForEach(r));
        }
        if let Some(node) = f.take("print")
            && let Some(sink) = self.print(node, owner)
        {
            sinks.push(sink);
        }
        if let Some(node) = f.take("branch")
            && let Some(sink) = self.branch(node, owner)
        {
            sinks.push(sink);
        }
        if sinks.len() > 1 {
            self.diags.error(
                mark,
                format!("'{owner}' has more than one sink: use one of as, to, toTopicNameExtractor, forEach, print, branch"),
            );
        }
        sinks.into_iter().next()
    }

    fn topic_target(&mut self, node: &Node, owner: &str) -> Option<ToTarget> {
        if let Some(name) = node.as_scalar() {
            return Some(ToTarget {
                stream: Some(name.to_string()),
                topic: name.to_string(),
                key_type: None,
                value_type: None,
                partitioner: None,
                mark: node.mark,
            });
        }
        let mut f = Fields::of(node, format!("'to' of '{owner}'"), self.diags)?;
        let topic = f.required_text("topic", node.mark, self.diags);
        let key_type = f.data_type("keyType", self.diags);
        let value_type = f.data_type("valueType", self.diags);
        let partitioner = f.take("partitioner").and_then(|n| {
            self.function_ref(n, F::StreamPartitioner, &format!("{owner}_to_partitioner"))
        });
        f.finish(self.diags);
        Some(ToTarget {
            stream: None,
            topic: topic?,
            key_type,
            value_type,
            partitioner,
            mark: node.mark,
        })
    }

    fn topic_name_extractor(&mut self, node: &Node, owner: &str) -> Option<Sink> {
        let mut f = Fields::of(
            node,
            format!("'toTopicNameExtractor' of '{owner}'"),
            self.diags,
        )?;
        let extractor = match f.take("topicNameExtractor") {
            Some(n) => self.function_ref(
                n,
                F::TopicNameExtractor,
                &format!("{owner}_topicNameExtractor"),
            ),
            None => {
                self.diags.error(
                    node.mark,
                    "'toTopicNameExtractor' is missing required field 'topicNameExtractor'",
                );
                None
            }
        };
        let partitioner = f.take("partitioner").and_then(|n| {
            self.function_ref(n, F::StreamPartitioner, &format!("{owner}_to_partitioner"))
        });
        f.finish(self.diags);
        Some(Sink::ToTopicNameExtractor {
            extractor: extractor?,
            partitioner,
        })
    }

    fn print(&mut self, node: &Node, owner: &str) -> Option<Sink> {
        let mut f = Fields::of(node, format!("'print' of '{owner}'"), self.diags)?;
        let filename = f.text("filename", self.diags);
        let label = f.text("label", self.diags);
        let mapper = f.take("mapper").and_then(|n| {
            self.function_ref(n, F::KeyValuePrinter, &format!("{owner}_print_mapper"))
        });
        f.finish(self.diags);
        Some(Sink::Print {
            filename,
            label,
            mapper,
        })
    }

    fn branch(&mut self, node: &Node, owner: &str) -> Option<Sink> {
        let Some(items) = node.as_seq() else {
            self.diags.error(
                node.mark,
                "'branch' must be a list of {if, via, <sink>} items",
            );
            return None;
        };
        let mut branches = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let branch_name = format!("{owner}_branch{}", i + 1);
            let Some(mut f) =
                Fields::of(item, format!("branch {} of '{owner}'", i + 1), self.diags)
            else {
                continue;
            };
            let condition = f
                .take("if")
                .and_then(|n| self.function_ref(n, F::Predicate, &format!("{branch_name}_if")));
            let via = self.via(&mut f, &branch_name);
            let sink = self.sink(&mut f, &branch_name, item.mark);
            f.finish(self.diags);
            match sink {
                Some(sink) => branches.push(BranchDef {
                    condition,
                    via,
                    sink,
                    mark: item.mark,
                }),
                None => self.diags.error(
                    item.mark,
                    "a branch needs a sink (as, to, toTopicNameExtractor, forEach, print or branch)",
                ),
            }
        }
        Some(Sink::Branch(branches))
    }

    fn producer(&mut self, name: &str, node: &Node) -> Option<ProducerDef> {
        let what = format!("producer '{name}'");
        let mut f = Fields::of(node, &what, self.diags)?;
        let _ = f.take("name");
        let generator = match f.take("generator") {
            Some(n) => self.function_ref(n, F::Generator, &format!("{name}_generator")),
            None => {
                self.diags.error(
                    node.mark,
                    format!("{what} is missing required field 'generator'"),
                );
                None
            }
        };
        let to = match f.take("to") {
            Some(n) => self.topic_target(n, name),
            None => {
                self.diags
                    .error(node.mark, format!("{what} is missing required field 'to'"));
                None
            }
        };
        let interval = f.duration("interval", self.diags);
        let count = f.integer("count", self.diags).and_then(|n| {
            if n < 0 {
                self.diags.error(node.mark, "'count' must not be negative");
                None
            } else {
                Some(n as u64)
            }
        });
        let batch_size = match f.integer("batchSize", self.diags) {
            None => 1,
            Some(n @ 1..=1000) => n as u32,
            Some(n) => {
                self.diags.error(
                    node.get("batchSize").map_or(node.mark, |b| b.mark),
                    format!("'batchSize' must be between 1 and 1000, found {n}"),
                );
                1
            }
        };
        let condition = f
            .take("condition")
            .and_then(|n| self.function_ref(n, F::Predicate, &format!("{name}_condition")));
        let until = f
            .take("until")
            .and_then(|n| self.function_ref(n, F::Predicate, &format!("{name}_until")));
        f.finish(self.diags);
        Some(ProducerDef {
            name: name.to_string(),
            generator: generator?,
            to: to?,
            interval,
            count,
            batch_size,
            condition,
            until,
            mark: node.mark,
        })
    }
}

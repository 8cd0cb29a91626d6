//! Checks a parsed definition: references resolve, function types fit where they are used, and
//! nothing the runtime cannot execute yet is used without saying so.

use std::collections::{BTreeMap, BTreeSet};

use millrace_types::DataType;

use crate::diagnostics::Diagnostics;
use crate::model::*;
use crate::stages::{Stage, stage_after};
use crate::yaml::Mark;

/// Names pipelines publish with `as` (including a pipeline's own name when it has no sink).
fn published_names(definition: &Definition) -> BTreeSet<String> {
    fn collect(sink: &Sink, names: &mut BTreeSet<String>) {
        match sink {
            Sink::As(name) => {
                names.insert(name.clone());
            }
            Sink::Branch(branches) => {
                for b in branches {
                    collect(&b.sink, names);
                }
            }
            _ => {}
        }
    }
    let mut names = BTreeSet::new();
    for p in &definition.pipelines {
        collect(&p.sink, &mut names);
    }
    names
}

/// Reports every problem of a parsed definition; fills in the types of inline functions.
pub fn validate(definition: &mut Definition, diags: &mut Diagnostics) {
    check_functions(definition, diags);
    let of_operations = operation_stores(definition);
    for store in definition.stores.values() {
        let of_operation = of_operations.contains(store.name.as_str());
        warn_unused_store_fields(store, of_operation, diags);
    }
    for store in &definition.store_uses {
        if !definition.stores.contains_key(&store.name) {
            diags.error(store.mark, format!("unknown store '{}'", store.name));
        }
    }
    let published = published_names(definition);
    for pipeline in &definition.pipelines {
        let start = check_source(definition, &published, &pipeline.from, diags);
        let stage = check_operations(definition, start, &pipeline.via, diags);
        check_end(stage, &pipeline.sink, pipeline.mark, diags);
        check_sink(definition, &pipeline.sink, diags);
    }
    for producer in &definition.producers {
        check_target(definition, &producer.to, diags);
    }
}

/// Every function reference resolves, and its type fits; inline functions without `type` take
/// the type their place expects.
fn check_functions(definition: &mut Definition, diags: &mut Diagnostics) {
    let uses = definition.function_uses.clone();
    let producer_functions: BTreeSet<String> = definition
        .producers
        .iter()
        .flat_map(|p| [Some(&p.generator), p.condition.as_ref(), p.until.as_ref()])
        .flatten()
        .map(|r| r.name.clone())
        .collect();
    for (reference, expected) in &uses {
        let Some(function) = definition
            .functions
            .iter_mut()
            .find(|f| f.name == reference.name)
        else {
            diags.error(
                reference.mark,
                format!("unknown function '{}'", reference.name),
            );
            continue;
        };
        match function.function_type {
            None => function.function_type = Some(*expected),
            // KSML checks a function's shape where it is used, not its declared type: one
            // taking the same parameters fits (a keyValueMapper where a keyValueTransformer
            // is expected).
            Some(actual)
                if actual == *expected
                    || actual == FunctionType::Generic
                    || actual.parameters() == expected.parameters() => {}
            Some(actual) => diags.error(
                reference.mark,
                format!(
                    "function '{}' is a {}, but a {} is expected here",
                    reference.name,
                    actual.name(),
                    expected.name()
                ),
            ),
        }
    }
    for function in &definition.functions {
        let Some(function_type) = function.function_type else {
            continue;
        };
        if function_type.result_rule() == ResultRule::None && function.result_type.is_some() {
            diags.error(
                function.mark,
                format!(
                    "function '{}' is a forEach and must not declare a resultType",
                    function.name
                ),
            );
        }
        if function_type == FunctionType::Predicate
            && function
                .result_type
                .as_ref()
                .is_some_and(|t| !matches!(t, DataType::Boolean | DataType::Any))
        {
            diags.error(
                function.mark,
                format!("predicate '{}' must have resultType boolean", function.name),
            );
        }
        for store in &function.stores {
            if !definition.stores.contains_key(&store.name) {
                diags.error(store.mark, format!("unknown store '{}'", store.name));
            }
        }
        if let Some(first) = function.stores.first()
            && producer_functions.contains(function.name.as_str())
        {
            diags.error(
                first.mark,
                format!(
                    "function '{}' of a producer uses state stores: stores belong to the \
                     tasks that run pipelines, so only pipeline functions can use them",
                    function.name
                ),
            );
        }
    }
}

/// Names the store fields that are read but not acted on yet. Timestamps and versions are
/// what Python functions see of their stores; stores of operations always keep the latest
/// value with its timestamp.
fn warn_unused_store_fields(store: &StoreDef, of_operation: bool, diags: &mut Diagnostics) {
    let versioned = store.versioned && store.store_type == StoreType::KeyValue && !of_operation;
    let set = [
        (
            "timestamped",
            store.timestamped && store.store_type == StoreType::Session,
        ),
        ("versioned", store.versioned && !versioned),
        (
            "historyRetention",
            !store.history_retention.is_zero() && !versioned,
        ),
        ("segmentInterval", !store.segment_interval.is_zero()),
        // Window stores keep windows for their retention; other stores have none.
        (
            "retention",
            store.store_type != StoreType::Window && !store.retention.is_zero(),
        ),
        ("retainDuplicates", store.retain_duplicates),
    ];
    for (field, _) in set.iter().filter(|(_, set)| *set) {
        diags.warn(
            store.mark,
            format!("store '{}': '{field}' is not acted on yet", store.name),
        );
    }
}

/// The stores that operations and tables name: every reference of a store beyond those in
/// functions' `stores` lists.
fn operation_stores(definition: &Definition) -> BTreeSet<&str> {
    let mut references: BTreeMap<&str, usize> = BTreeMap::new();
    for store in &definition.store_uses {
        *references.entry(store.name.as_str()).or_default() += 1;
    }
    for store in definition.functions.iter().flat_map(|f| &f.stores) {
        if let Some(n) = references.get_mut(store.name.as_str()) {
            *n = n.saturating_sub(1);
        }
    }
    references
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, _)| name)
        .collect()
}

fn not_supported_type(ty: &DataType, mark: Mark, diags: &mut Diagnostics) {
    if let Some(notation) = ty.unsupported_notation() {
        diags.error(
            mark,
            format!("the {} notation is not supported yet", notation.name()),
        );
    }
}

/// Checks what a pipeline reads; returns the stage its records start in.
fn check_source(
    definition: &Definition,
    published: &BTreeSet<String>,
    from: &Ref,
    diags: &mut Diagnostics,
) -> Stage {
    match definition.topics.get(&from.name) {
        Some(topic) => {
            if topic.kind == TopicKind::GlobalTable {
                diags.error(
                    from.mark,
                    format!(
                        "pipelines reading a globalTable ('{}') are not supported yet",
                        from.name
                    ),
                );
            }
            not_supported_type(&topic.key_type, topic.mark, diags);
            not_supported_type(&topic.value_type, topic.mark, diags);
            match topic.kind {
                TopicKind::Table => Stage::Table,
                _ => Stage::Stream,
            }
        }
        None if published.contains(&from.name) => Stage::Stream,
        None => {
            diags.error(
                from.mark,
                format!(
                    "'{}' is not a stream, table, globalTable or pipeline output",
                    from.name
                ),
            );
            Stage::Stream
        }
    }
}

/// join, leftJoin, outerJoin: a stream with a stream, a table or a globalTable; a table with a
/// table.
fn check_join(
    definition: &Definition,
    stage: Option<Stage>,
    op: &Operation,
    diags: &mut Diagnostics,
) {
    let other = ["stream", "table", "globalTable"]
        .into_iter()
        .find(|field| op.params.contains_key(*field));
    match (stage, other) {
        (_, None) => diags.error(
            op.mark,
            format!("operation '{}' needs one of stream, table or globalTable", op.type_name),
        ),
        (Some(Stage::Stream), Some("table")) if op.kind != OpKind::OuterJoin => {
            need_field(op, "valueJoiner", "", diags);
            check_joined_kind(definition, op, "table", TopicKind::Table, diags);
        }
        (Some(Stage::Stream), Some("stream")) => {
            for (field, why) in [
                ("valueJoiner", "to join the values"),
                ("timeDifference", "(how far apart joined records may be)"),
            ] {
                need_field(op, field, why, diags);
            }
        }
        (Some(Stage::Stream), Some("globalTable")) if op.kind != OpKind::OuterJoin => {
            for (field, why) in [
                ("mapper", "to pick the global table's key"),
                ("valueJoiner", "to join the values"),
            ] {
                need_field(op, field, why, diags);
            }
            check_joined_kind(definition, op, "globalTable", TopicKind::GlobalTable, diags);
        }
        (Some(Stage::Table), Some("table")) => {
            need_field(op, "valueJoiner", "", diags);
            if op.params.contains_key("foreignKeyExtractor") && op.kind == OpKind::OuterJoin {
                diags.error(
                    op.mark,
                    "outerJoin with a foreignKeyExtractor does not exist in Kafka Streams: use \
                     join or leftJoin",
                );
            }
            for field in ["partitioner", "otherPartitioner"] {
                if op.params.contains_key(field) {
                    diags.warn(
                        op.mark,
                        format!(
                            "'{field}' of a table join is not acted on yet: the subscription \
                             topics are partitioned by key"
                        ),
                    );
                }
            }
            check_joined_kind(definition, op, "table", TopicKind::Table, diags);
        }
        (Some(Stage::Stream), Some("table" | "globalTable")) => diags.error(
            op.mark,
            "outerJoin of a stream with a table does not exist in Kafka Streams: use join or leftJoin",
        ),
        (Some(stage), Some(other)) => diags.error(
            op.mark,
            format!(
                "operation '{}' of a {} with a {other} does not exist: a stream joins a stream, a table or a globalTable, a table joins a table",
                op.type_name,
                stage.name()
            ),
        ),
        (None, Some(_)) => {}
    }
}

/// An operation has `field`, needed `why` (words after the field's name, or none).
fn need_field(op: &Operation, field: &str, why: &str, diags: &mut Diagnostics) {
    if !op.params.contains_key(field) {
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(" {why}")
        };
        diags.error(
            op.mark,
            format!("operation '{}' needs '{field}'{why}", op.type_name),
        );
    }
}

/// The topic a join's `field` names is of the kind the join needs.
fn check_joined_kind(
    definition: &Definition,
    op: &Operation,
    field: &str,
    kind: TopicKind,
    diags: &mut Diagnostics,
) {
    if let Some(other) = op.topic(field)
        && definition
            .topics
            .get(&other.name)
            .is_some_and(|t| t.kind != kind)
    {
        diags.error(other.mark, format!("'{}' is not a {field}", other.name));
    }
}

/// suppress: `until` windowCloses or timeLimit (with `duration`), buffer limits as whole
/// numbers, and a buffer strategy that fits.
fn check_suppress(op: &Operation, diags: &mut Diagnostics) {
    let until = op.text("until");
    match until {
        Some("windowCloses") | None => {}
        Some("timeLimit") => {
            if op.duration("duration").is_none() {
                diags.error(op.mark, "suppress until timeLimit needs 'duration'");
            }
        }
        Some(other) => diags.error(
            op.mark,
            format!("unknown suppress until '{other}' (use windowCloses or timeLimit)"),
        ),
    }
    for field in ["maxRecords", "maxBytes"] {
        if let Some(text) = op.text(field)
            && !text.trim().parse::<u64>().is_ok_and(|n| n > 0)
        {
            diags.error(
                op.mark,
                format!("'{field}' must be a whole number above zero, found '{text}'"),
            );
        }
    }
    match op.text("bufferFullStrategy") {
        None | Some("shutdownWhenFull") => {}
        Some("emitEarlyWhenFull") if until == Some("windowCloses") => diags.error(
            op.mark,
            "suppress until windowCloses emits each window once, so its buffer cannot emit \
             early: use bufferFullStrategy shutdownWhenFull",
        ),
        Some("emitEarlyWhenFull") => {}
        Some(other) => diags.error(
            op.mark,
            format!(
                "unknown bufferFullStrategy '{other}' (use emitEarlyWhenFull or shutdownWhenFull)"
            ),
        ),
    }
}

/// Where a pipeline ends: a grouped or windowed stream has no records to sink yet.
fn check_end(stage: Option<Stage>, sink: &Sink, mark: Mark, diags: &mut Diagnostics) {
    let Some(stage) = stage else { return };
    if !stage.can_sink() {
        diags.error(
            mark,
            format!(
                "the pipeline ends on a {}: aggregate it (count, reduce, aggregate) first",
                stage.name()
            ),
        );
    } else if stage != Stage::Stream && matches!(sink, Sink::Branch(_)) {
        diags.error(
            mark,
            format!(
                "'branch' needs a stream, not a {}: put toStream before it",
                stage.name()
            ),
        );
    }
}

/// Checks each operation, following the stages; returns the stage at the end (None once an
/// operation could not follow).
fn check_operations(
    definition: &Definition,
    start: Stage,
    via: &[Operation],
    diags: &mut Diagnostics,
) -> Option<Stage> {
    let mut stage = Some(start);
    for op in via {
        if matches!(op.kind, OpKind::Join | OpKind::LeftJoin | OpKind::OuterJoin) {
            check_join(definition, stage, op, diags);
        }
        if let Some(current) = stage {
            check_aggregation_fields(op, current, diags);
        }
        if let Some(current) = stage {
            stage = match stage_after(current, op) {
                Ok(next) => Some(next),
                Err(message) => {
                    diags.error(op.mark, message);
                    None
                }
            };
        }
        check_operation_fields(op, diags);

        if op.kind == OpKind::Cogroup && op.params.contains_key("store") {
            diags.warn(
                op.mark,
                "'store' of cogroup is not used (KSML does not use it either): name the store \
                 in the aggregate that follows",
            );
        }
        for (field, param) in &op.params {
            if let OpParam::Topic(r) = param {
                match definition.topics.get(&r.name) {
                    None => diags.error(r.mark, format!("unknown stream or table '{}'", r.name)),
                    Some(t) if *field == "stream" && t.kind != TopicKind::Stream => diags.error(
                        r.mark,
                        format!("'{}' is a {}, not a stream", r.name, t.kind.name()),
                    ),
                    Some(t) => {
                        not_supported_type(&t.key_type, t.mark, diags);
                        not_supported_type(&t.value_type, t.mark, diags);
                    }
                }
            }
            if let OpParam::Type(t) = param {
                not_supported_type(t, op.mark, diags);
                if op.kind == OpKind::ConvertKeyValue
                    && !matches!(t, DataType::Tuple(items) if items.len() == 2)
                {
                    diags.error(
                        op.mark,
                        "convertKeyValue needs 'into' as a (keyType, valueType) tuple",
                    );
                }
            }
        }
        if op.kind == OpKind::Repartition && op.integer("numberOfPartitions").is_some_and(|n| n < 1)
        {
            diags.error(op.mark, "'numberOfPartitions' must be at least 1");
        }
    }
    stage
}

/// The functions reduce and aggregate need where they follow `stage`: a reducer or aggregator
/// on grouped streams, an adder and a subtractor on grouped tables, nothing more after cogroup
/// (which brought the aggregator), a merger on session windows.
fn check_aggregation_fields(op: &Operation, stage: Stage, diags: &mut Diagnostics) {
    let mut need = |field: &str, why: &str| need_field(op, field, why, diags);
    let cogrouped = matches!(
        stage,
        Stage::Cogrouped | Stage::CogroupedTimeWindowed | Stage::CogroupedSessionWindowed
    );
    match (op.kind, stage) {
        (OpKind::Reduce | OpKind::Aggregate, Stage::GroupedTable) => {
            need("adder", "to add a new value to a grouped table's aggregate");
            need(
                "subtractor",
                "to take an old value out of a grouped table's aggregate",
            );
        }
        (OpKind::Reduce, _) => need("reducer", "to combine two values of a grouped stream"),
        (OpKind::Aggregate, _) if !cogrouped => {
            need("aggregator", "to add a value of a grouped stream")
        }
        _ => {}
    }
    if op.kind == OpKind::Aggregate && stage.is_session_windowed() {
        need("merger", "to combine sessions");
    }
}

/// The fields an operation needs beyond what parsing checks.
fn check_operation_fields(op: &Operation, diags: &mut Diagnostics) {
    let mut need = |field: &str, why: &str| need_field(op, field, why, diags);
    match op.kind {
        OpKind::WindowByTime => match op.text("windowType") {
            Some("tumbling") => need("duration", "(the window size)"),
            Some("hopping") => {
                need("duration", "(the window size)");
                need("advanceBy", "(how far windows hop)");
            }
            Some("sliding") => need("timeDifference", "(the window size)"),
            Some(other) => diags.error(
                op.mark,
                format!("unknown windowType '{other}' (use tumbling, hopping or sliding)"),
            ),
            None => {}
        },
        OpKind::Suppress => check_suppress(op, diags),
        _ => {}
    }
    if op.kind == OpKind::WindowByTime {
        let size = op.duration("duration");
        if size.is_some_and(|d| d.is_zero()) {
            diags.error(op.mark, "a window's 'duration' must be more than zero");
        }
        if let Some(advance) = op.duration("advanceBy")
            && (advance.is_zero() || size.is_some_and(|size| advance > size))
        {
            diags.error(
                op.mark,
                "'advanceBy' must be more than zero and at most 'duration'",
            );
        }
    }
}

fn check_sink(definition: &Definition, sink: &Sink, diags: &mut Diagnostics) {
    match sink {
        Sink::To(target) => check_target(definition, target, diags),
        Sink::Branch(branches) => {
            if branches.is_empty() {
                return;
            }
            for branch in branches {
                let stage = check_operations(definition, Stage::Stream, &branch.via, diags);
                check_end(stage, &branch.sink, branch.mark, diags);
                check_sink(definition, &branch.sink, diags);
            }
        }
        Sink::As(_) | Sink::ToTopicNameExtractor { .. } | Sink::ForEach(_) | Sink::Print { .. } => {
        }
    }
}

fn check_target(definition: &Definition, target: &ToTarget, diags: &mut Diagnostics) {
    let declared = target
        .stream
        .as_ref()
        .and_then(|name| definition.topics.get(name));
    if let Some(topic) = declared {
        not_supported_type(&topic.key_type, target.mark, diags);
        not_supported_type(&topic.value_type, target.mark, diags);
    }
    for t in [&target.key_type, &target.value_type].into_iter().flatten() {
        not_supported_type(t, target.mark, diags);
    }
}

//! The [`Log`] interface on Apache Kafka (any Kafka-protocol broker), through librdkafka.
//!
//! One [`KafkaLog`] holds an admin client, an idempotent producer, a reader (a consumer that
//! is assigned each partition it is asked to read, with a queue per partition) and a
//! consumer per group for committed offsets. Properties are librdkafka's; as in Kafka
//! Streams, a `producer.`, `consumer.` or `admin.` prefix gives a property to that client
//! only.
//!
//! Appends and commits are not one atomic step here: [`Log::append_and_commit`] appends,
//! waits for the broker's acknowledgements, then commits the offsets (at least once).

mod arrivals;
mod group;
mod producer;
mod reader;
pub mod test_broker;
mod transactions;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_executor::block_on;
use millrace_log::{
    Append, CommittedOffset, Fetched, GroupMembership, Log, LogError, RebalanceListener, Record,
    TopicConfig, TopicInfo, validate_partition_count, validate_topic_name,
};
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigResource, NewTopic, ResourceSpecifier, TopicReplication,
    TopicResult,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use rdkafka::util::NaiveRuntime;
use rdkafka::{Offset, TopicPartitionList};

use crate::arrivals::Arrivals;
use crate::group::{GroupClients, GroupConsumer, KafkaMembership, group_consumer};
use crate::producer::Appender;
use crate::reader::Reader;

/// Properties as (name, value) pairs.
pub type Properties = Vec<(String, String)>;

/// What [`KafkaLog::connect`] needs: librdkafka properties (with `bootstrap.servers`), and
/// how topics it creates are laid out.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub properties: Vec<(String, String)>,
    /// Partitions of topics created because they were missing.
    pub default_partitions: u32,
    /// A topic needed but missing is created (otherwise it is an error naming it).
    pub create_missing_topics: bool,
    /// Replication factor of topics it creates (-1: the broker's default).
    pub replication_factor: i32,
    /// How long an operation waits for the cluster before it fails.
    pub timeout: Duration,
    /// With an id, appends and commits are Kafka transactions made by a producer with this
    /// `transactional.id` (exactly once); without, appends are acknowledged, then offsets
    /// committed (at least once).
    pub transactional_id: Option<String>,
}

impl KafkaSettings {
    /// Settings with these properties, one partition per created topic, and the broker's
    /// default replication.
    pub fn new(properties: Vec<(String, String)>) -> KafkaSettings {
        KafkaSettings {
            properties,
            default_partitions: 1,
            create_missing_topics: true,
            replication_factor: -1,
            timeout: Duration::from_secs(30),
            transactional_id: None,
        }
    }

    /// Splits properties into those librdkafka takes (with their client prefix, if any) and
    /// those it does not know (Java client settings such as `buffer.memory`), which the
    /// caller names in a warning. A property it knows with a value it refuses (a security
    /// protocol this build lacks, say) is an error: dropping it could weaken the connection.
    pub fn librdkafka_properties(
        properties: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Properties, Vec<String>), String> {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for (key, value) in properties {
            let name = ["producer.", "consumer.", "admin."]
                .iter()
                .find_map(|prefix| key.strip_prefix(prefix))
                .unwrap_or(&key);
            // Checked locally, without a connection.
            match ClientConfig::new().set(name, &value).create_native_config() {
                Ok(_) => known.push((key, value)),
                Err(e) if e.to_string().contains("No such configuration property") => {
                    unknown.push(key)
                }
                Err(e) => return Err(format!("property {key}: {e}")),
            }
        }
        Ok((known, unknown))
    }

    /// Settings from properties a user gave (a runner config, a spec's consumer properties):
    /// those librdkafka does not know are named in a warning and left out.
    pub fn from_given(
        properties: impl IntoIterator<Item = (String, String)>,
    ) -> Result<KafkaSettings, String> {
        let (known, unknown) = KafkaSettings::librdkafka_properties(properties)?;
        if !unknown.is_empty() {
            tracing::warn!(
                "properties that Kafka's C client (librdkafka) does not know, so not acted on: {}",
                unknown.join(", ")
            );
        }
        Ok(KafkaSettings::new(known))
    }

    /// The properties a client gets: the shared ones, then its prefixed ones (prefix off).
    /// Looking a topic up never creates it.
    fn client_config(&self, prefix: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("allow.auto.create.topics", "false");
        for (key, value) in &self.properties {
            let shared = !["producer.", "consumer.", "admin."]
                .iter()
                .any(|p| key.starts_with(p));
            if shared {
                config.set(key, value);
            }
        }
        for (key, value) in &self.properties {
            if let Some(own) = key.strip_prefix(prefix) {
                config.set(own, value);
            }
        }
        config
    }
}

/// The producer: delivery reports come back as futures, waited on where they are made (no
/// async runtime).
type FutureProducer = rdkafka::producer::FutureProducer<DefaultClientContext, NaiveRuntime>;

/// Topics on a Kafka cluster.
pub struct KafkaLog {
    settings: KafkaSettings,
    admin: AdminClient<DefaultClientContext>,
    /// Appends records (the producer, made anew after a fatal error).
    appender: Appender,
    reader: Reader,
    /// A client per group, for its committed offsets and commits (the member, while this
    /// process is one).
    groups: GroupClients,
    /// Counts appends seen (this process's, and records arriving for the reader).
    arrivals: Arc<Arrivals>,
    /// With transactions: held for each one, since a producer has one open at a time.
    transactions: Option<Mutex<()>>,
}

/// Fetch settings of the reading consumer where the properties do not set them:
/// - librdkafka's `fetch.queue.backoff.ms` (1 s) pauses fetching a partition whose queue
///   holds `queued.min.messages`; a pipeline drains 100,000 queued records in a fraction of
///   that, then sat idle until the pause ended;
/// - `fetch.wait.max.ms` (500 ms): some brokers (tansu) hold a fetch that has records for
///   up to this long, which capped reading at about 120,000 records/s; Kafka answers a fetch
///   with records at once either way, so this only shortens the wait of an idle reader.
const READER_DEFAULTS: &[(&str, &str)] = &[
    ("fetch.queue.backoff.ms", "10"),
    ("fetch.wait.max.ms", "100"),
];

/// Sets `names[0]` to `value` unless the properties set it or one of its aliases (`names`).
fn set_unless_given(config: &mut ClientConfig, names: &[&str], value: &str) {
    if names.iter().all(|name| config.get(name).is_none()) {
        config.set(names[0], value);
    }
}

/// A librdkafka error as the log reports it: errors that say the cluster did not answer
/// (yet) are [`LogError::Unavailable`], so that callers may try again.
fn broker(operation: impl Into<String>, error: KafkaError) -> LogError {
    let (operation, message) = (operation.into(), error.to_string());
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::CoordinatorLoadInProgress,
        ) => LogError::Unavailable { operation, message },
        _ => LogError::Broker { operation, message },
    }
}

impl KafkaLog {
    /// Connects to the cluster the properties name; fails when a client cannot be made (an
    /// unknown property, say) or the cluster does not answer.
    pub fn connect(settings: KafkaSettings) -> Result<KafkaLog, LogError> {
        let admin: AdminClient<DefaultClientContext> = settings
            .client_config("admin.")
            .create()
            .map_err(|e| broker("creating the admin client", e))?;
        let mut producer_config = settings.client_config("producer.");
        producer_config.set("enable.idempotence", "true");
        // A record not acknowledged in time is an error (unless the properties say how long).
        set_unless_given(
            &mut producer_config,
            &["message.timeout.ms", "delivery.timeout.ms"],
            &settings.timeout.as_millis().to_string(),
        );
        if let Some(id) = &settings.transactional_id {
            producer_config.set("transactional.id", id);
        }
        let appender = Appender::new(
            producer_config,
            settings.transactional_id.is_some(),
            settings.timeout,
        )?;
        let transactions = match settings.transactional_id {
            Some(_) => {
                transactions::init(&appender.current(), settings.timeout)?;
                Some(Mutex::new(()))
            }
            None => None,
        };
        let arrivals = Arc::new(Arrivals::default());
        let mut reader_config = settings.client_config("consumer.");
        for (name, value) in READER_DEFAULTS {
            set_unless_given(&mut reader_config, &[name], value);
        }
        let reader = Reader::new(
            reader_config
                .set("group.id", "millrace-reader")
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("isolation.level", "read_committed")
                // An offset no longer held (retention) reads on from the partition's start.
                .set("auto.offset.reset", "earliest"),
            settings.timeout,
            arrivals.clone(),
        )?;
        let log = KafkaLog {
            settings,
            admin,
            appender,
            reader,
            groups: GroupClients::default(),
            arrivals,
            transactions,
        };
        // Reaching the cluster now gives a clear error at start rather than at first use.
        log.topics()?;
        Ok(log)
    }

    /// Connects (see [`KafkaLog::connect`]), as the log its users share.
    pub fn open(settings: KafkaSettings) -> Result<Arc<dyn Log>, String> {
        KafkaLog::connect(settings)
            .map(|log| Arc::new(log) as Arc<dyn Log>)
            .map_err(|e| e.to_string())
    }

    /// Admin requests wait as long as other operations.
    fn admin_options(&self) -> AdminOptions {
        AdminOptions::new()
            .operation_timeout(Some(self.settings.timeout))
            .request_timeout(Some(self.settings.timeout))
    }

    /// Runs `f` with the client of `group`, made on first use.
    fn with_group<R>(
        &self,
        group: &str,
        f: impl FnOnce(&GroupConsumer) -> Result<R, LogError>,
    ) -> Result<R, LogError> {
        let consumer = {
            let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            match groups.get(group) {
                Some(consumer) => consumer.clone(),
                None => {
                    let config = self.settings.client_config("consumer.");
                    let consumer = Arc::new(group_consumer(config, group, None)?);
                    groups.insert(group.to_string(), consumer.clone());
                    consumer
                }
            }
        };
        f(&consumer)
    }

    /// Sends records to one partition and waits for the broker's acknowledgements; returns
    /// the offset of the first.
    fn send(&self, topic: &str, partition: u32, records: &[Record]) -> Result<u64, LogError> {
        let deliveries = self.appender.enqueue(topic, partition, records)?;
        let first = self.appender.delivered(deliveries)?;
        self.arrivals.notify();
        Ok(first)
    }

    /// Sends appends to their partitions, all before waiting for any acknowledgement; returns
    /// the offset of each one's first record.
    fn send_all(&self, appends: &[Append]) -> Result<Vec<u64>, LogError> {
        let mut pending = Vec::with_capacity(appends.len());
        for append in appends {
            let deliveries =
                self.appender
                    .enqueue(&append.topic, append.partition, &append.records)?;
            pending.push(deliveries);
        }
        let mut firsts = Vec::with_capacity(appends.len());
        for deliveries in pending {
            firsts.push(self.appender.delivered(deliveries)?);
        }
        if !appends.is_empty() {
            self.arrivals.notify();
        }
        Ok(firsts)
    }

    fn partitions_of(&self, topic: &str) -> Result<Option<u32>, LogError> {
        let metadata = self
            .appender
            .current()
            .client()
            .fetch_metadata(Some(topic), self.settings.timeout)
            .map_err(|e| broker(format!("reading metadata of topic '{topic}'"), e))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len() as u32))
    }
}

impl Log for KafkaLog {
    fn create_topic_with_config(
        &self,
        name: &str,
        partitions: u32,
        config: &TopicConfig,
    ) -> Result<bool, LogError> {
        validate_topic_name(name)?;
        validate_partition_count(partitions)?;
        let properties = config.to_properties();
        let mut topic = NewTopic::new(
            name,
            partitions as i32,
            TopicReplication::Fixed(self.settings.replication_factor),
        );
        for (key, value) in &properties {
            topic = topic.set(key, value);
        }
        let operation = format!("creating topic '{name}'");
        let results = block_on(self.admin.create_topics([&topic], &self.admin_options()))
            .map_err(|e| broker(&operation, e))?;
        one_topic(&operation, results, RDKafkaErrorCode::TopicAlreadyExists)
    }

    fn delete_topic(&self, name: &str) -> Result<bool, LogError> {
        let operation = format!("deleting topic '{name}'");
        let results = block_on(self.admin.delete_topics(&[name], &self.admin_options()))
            .map_err(|e| broker(&operation, e))?;
        one_topic(
            &operation,
            results,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        )
    }

    fn topic_config(&self, topic: &str) -> Result<Option<TopicConfig>, LogError> {
        if self.partitions_of(topic)?.is_none() {
            return Ok(None);
        }
        let options = AdminOptions::new().request_timeout(Some(self.settings.timeout));
        let resources = [ResourceSpecifier::Topic(topic)];
        let results = block_on(self.admin.describe_configs(&resources, &options))
            .map_err(|e| broker(format!("reading configs of topic '{topic}'"), e))?;
        let resource: Option<ConfigResource> = results.into_iter().next().and_then(Result::ok);
        let Some(resource) = resource.filter(|r| !r.entries.is_empty()) else {
            return Err(LogError::ConfigsNotReported(topic.to_string()));
        };
        // Every value as the broker reports it (defaults too: some brokers flag the settings
        // a topic was created with as defaults).
        let entries: Vec<(String, String)> = resource
            .entries
            .into_iter()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect();
        // Settings millrace does not act on are left out; so are values it cannot read.
        let known = entries
            .iter()
            .filter(|(name, _)| millrace_log::TOPIC_CONFIG_NAMES.contains(&name.as_str()))
            .map(|(name, value)| (name.as_str(), value.as_str()));
        Ok(Some(
            TopicConfig::from_properties(known).unwrap_or_default(),
        ))
    }

    fn ensure_topic(&self, name: &str) -> Result<u32, LogError> {
        if let Some(partitions) = self.partitions_of(name)? {
            return Ok(partitions);
        }
        if !self.settings.create_missing_topics {
            return Err(LogError::NotCreated(name.to_string()));
        }
        self.create_topic(name, self.settings.default_partitions)?;
        // Metadata may lag a new topic by a moment.
        for _ in 0..50 {
            if let Some(partitions) = self.partitions_of(name)? {
                return Ok(partitions);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(LogError::UnknownTopic(name.to_string()))
    }

    fn topics(&self) -> Result<Vec<TopicInfo>, LogError> {
        let metadata = self
            .appender
            .current()
            .client()
            .fetch_metadata(None, self.settings.timeout)
            .map_err(|e| broker("listing topics", e))?;
        let mut topics: Vec<TopicInfo> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| TopicInfo {
                name: t.name().to_string(),
                partitions: t.partitions().len() as u32,
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    fn partition_count(&self, topic: &str) -> Result<Option<u32>, LogError> {
        self.partitions_of(topic)
    }

    fn append(&self, topic: &str, partition: u32, records: Vec<Record>) -> Result<u64, LogError> {
        match &self.transactions {
            Some(one_at_a_time) => {
                let append = Append {
                    topic: topic.to_string(),
                    partition,
                    records,
                };
                let firsts = self.transact(one_at_a_time, &[append], None)?;
                Ok(firsts[0])
            }
            None => self.send(topic, partition, &records),
        }
    }

    /// In one transaction (exactly once) when the log has them. Otherwise appends (waiting
    /// for every acknowledgement), then commits: at least once, since a crash between the two
    /// repeats the appends.
    fn append_and_commit(
        &self,
        appends: Vec<Append>,
        group: &str,
        offsets: &[CommittedOffset],
    ) -> Result<Vec<u64>, LogError> {
        if let Some(one_at_a_time) = &self.transactions {
            return self.transact(one_at_a_time, &appends, Some((group, offsets)));
        }
        let firsts = self.send_all(&appends)?;
        if !offsets.is_empty() {
            self.commit(group, offsets)?;
        }
        Ok(firsts)
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_records: usize,
    ) -> Result<Fetched, LogError> {
        self.reader.read(topic, partition, offset, max_records)
    }

    fn offset_range(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError> {
        let (low, high) = self
            .appender
            .current()
            .client()
            .fetch_watermarks(topic, partition as i32, self.settings.timeout)
            .map_err(|e| broker(format!("reading the offsets of {topic}/{partition}"), e))?;
        Ok((low.max(0) as u64, high.max(0) as u64))
    }

    fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, LogError> {
        Ok(self
            .committed_entry(group, topic, partition)?
            .map(|(offset, _)| offset))
    }

    fn committed_metadata(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<String>, LogError> {
        Ok(self
            .committed_entry(group, topic, partition)?
            .map(|(_, metadata)| metadata))
    }

    fn commit(&self, group: &str, offsets: &[CommittedOffset]) -> Result<(), LogError> {
        let list = offset_list(offsets)?;
        let started = Instant::now();
        loop {
            let result = self.with_group(group, |consumer| {
                Ok(consumer.commit(&list, CommitMode::Sync))
            })?;
            let code = match result {
                Ok(()) => return Ok(()),
                Err(KafkaError::ConsumerCommit(code)) => code,
                Err(e) => return Err(broker(format!("committing offsets of group '{group}'"), e)),
            };
            match code {
                // The group is between generations: the commit is taken once it settles.
                RDKafkaErrorCode::RebalanceInProgress
                    if started.elapsed() < self.settings.timeout =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::FencedInstanceId => {
                    return Err(LogError::NotGroupMember {
                        group: group.to_string(),
                        message: code.to_string(),
                    });
                }
                code => {
                    return Err(broker(
                        format!("committing offsets of group '{group}'"),
                        KafkaError::ConsumerCommit(code),
                    ));
                }
            }
        }
    }

    fn append_generation(&self) -> u64 {
        self.arrivals.generation()
    }

    fn wait_for_append(&self, generation: u64, timeout: Duration) {
        self.arrivals.wait(generation, timeout);
    }

    fn wake_waiters(&self) {
        self.arrivals.notify();
    }

    /// Joins as a subscribed member; the group's coordinator spreads the partitions over
    /// its members (cooperative-sticky).
    fn join_group(
        &self,
        group: &str,
        topics: &[String],
        listener: Arc<dyn RebalanceListener>,
    ) -> Result<Box<dyn GroupMembership>, LogError> {
        let config = self.settings.client_config("consumer.");
        let consumer = Arc::new(group_consumer(config, group, Some((topics, listener)))?);
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group.to_string(), consumer.clone());
        Ok(Box::new(KafkaMembership {
            group: group.to_string(),
            consumer,
            clients: self.groups.clone(),
            last_warning: Mutex::new(None),
        }))
    }

    fn stop_reading(&self, topic: &str, partition: u32) {
        self.reader.stop_reading(topic, partition);
    }
}

/// The answer to an admin request about one topic: true when it was carried out, false when
/// the broker answered `unchanged` (the topic already was as asked).
fn one_topic(
    operation: &str,
    results: Vec<TopicResult>,
    unchanged: RDKafkaErrorCode,
) -> Result<bool, LogError> {
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, code))) if code == unchanged => Ok(false),
        Some(Err((_, code))) => Err(LogError::Broker {
            operation: operation.into(),
            message: code.to_string(),
        }),
        None => Err(LogError::Broker {
            operation: operation.into(),
            message: "the broker gave no answer for it".into(),
        }),
    }
}

/// Offsets as librdkafka takes them.
fn offset_list(offsets: &[CommittedOffset]) -> Result<TopicPartitionList, LogError> {
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for committed in offsets {
        let mut element = list.add_partition(&committed.topic, committed.partition as i32);
        element
            .set_offset(Offset::Offset(committed.offset as i64))
            .map_err(|e| broker("committing offsets", e))?;
        element.set_metadata(committed.metadata.clone());
    }
    Ok(list)
}

impl KafkaLog {
    /// Appends records and commits a group's offsets (if any) in one transaction; an error
    /// aborts it (nothing of it is written).
    fn transact(
        &self,
        one_at_a_time: &Mutex<()>,
        appends: &[Append],
        commit: Option<(&str, &[CommittedOffset])>,
    ) -> Result<Vec<u64>, LogError> {
        let _open = one_at_a_time.lock().unwrap_or_else(|p| p.into_inner());
        let timeout = self.settings.timeout;
        let producer = self.appender.current();
        transactions::begin(&producer)?;
        let written = (|| {
            // A record the cluster refuses (too large, say) would be refused again: its
            // error stays what it is, stopping the caller, after the abort.
            let firsts = self.send_all(appends)?;
            if let Some((group, offsets)) = commit.filter(|(_, offsets)| !offsets.is_empty()) {
                let list = offset_list(offsets)?;
                let metadata = self.with_group(group, |consumer| {
                    consumer.group_metadata().ok_or_else(|| LogError::Broker {
                        operation: format!("reading the metadata of group '{group}'"),
                        message: "the consumer has none".into(),
                    })
                })?;
                transactions::send_offsets(&producer, &list, &metadata, timeout)?;
            }
            transactions::commit(&producer, timeout)?;
            Ok(firsts)
        })();
        written.map_err(|e| transactions::abort(&producer, e, timeout))
    }

    /// A group's committed offset of a partition, with its metadata.
    fn committed_entry(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(u64, String)>, LogError> {
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition as i32);
        let committed = self.with_group(group, |consumer| {
            consumer
                .committed_offsets(list, self.settings.timeout)
                .map_err(|e| broker(format!("reading offsets of group '{group}'"), e))
        })?;
        let Some(element) = committed.find_partition(topic, partition as i32) else {
            return Ok(None);
        };
        Ok(match element.offset() {
            Offset::Offset(offset) if offset >= 0 => {
                Some((offset as u64, element.metadata().to_string()))
            }
            _ => None,
        })
    }
}

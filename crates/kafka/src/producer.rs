//! The producer that appends records: delivery reports come back as futures, waited on where
//! they are needed (no async runtime). Without transactions it is made anew after a fatal
//! error.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use futures_executor::block_on;
use millrace_log::{LogError, Record};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord, Producer};

use crate::{FutureProducer, broker};

/// How long a send waits between tries while the producer's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);

/// Acknowledgements still to come for records sent to one partition.
pub struct Deliveries {
    pub topic: String,
    pub partition: u32,
    futures: Vec<DeliveryFuture>,
    /// The producer that sent them: only its failure makes it anew.
    sent_with: FutureProducer,
}

/// The producer, with what it takes to make it anew.
pub struct Appender {
    current: RwLock<FutureProducer>,
    /// What the producer is made from.
    config: ClientConfig,
    /// A transactional producer's fatal error (fenced by a newer instance) must stop its
    /// user: it is never made anew.
    transactional: bool,
    /// How long a send may wait for room in a full queue.
    timeout: Duration,
}

impl Appender {
    pub fn new(
        config: ClientConfig,
        transactional: bool,
        timeout: Duration,
    ) -> Result<Appender, LogError> {
        let producer: FutureProducer = config
            .create()
            .map_err(|e| broker("creating the producer", e))?;
        Ok(Appender {
            current: RwLock::new(producer),
            config,
            transactional,
            timeout,
        })
    }

    /// The producer as it is now (a handle on it: cheap to take).
    pub fn current(&self) -> FutureProducer {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Hands records to the producer; their acknowledgements come later.
    pub fn enqueue(
        &self,
        topic: &str,
        partition: u32,
        records: &[Record],
    ) -> Result<Deliveries, LogError> {
        let mut futures = Vec::with_capacity(records.len());
        let producer = self.current();
        let operation = || format!("producing to {topic}/{partition}");
        for record in records {
            let mut message = FutureRecord::<[u8], [u8]>::to(topic)
                .partition(partition as i32)
                .timestamp(record.timestamp);
            // Headers are a C allocation per record: made only for records that have some.
            if !record.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
                for header in &record.headers {
                    headers = headers.insert(Header {
                        key: &header.key,
                        value: header.value.as_deref(),
                    });
                }
                message = message.headers(headers);
            }
            if let Some(key) = &record.key {
                message = message.key(key.as_ref());
            }
            if let Some(value) = &record.value {
                message = message.payload(value.as_ref());
            }
            // A full queue empties as the broker acknowledges (or the records time out).
            let mut full_since: Option<Instant> = None;
            let delivery = loop {
                match producer.send_result(message) {
                    Ok(delivery) => break delivery,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if full_since.get_or_insert_with(Instant::now).elapsed() < self.timeout =>
                    {
                        message = back;
                        std::thread::sleep(QUEUE_FULL_PAUSE);
                    }
                    Err((e, _)) => return Err(self.produce_error(&producer, operation(), e)),
                }
            };
            futures.push(delivery);
        }
        Ok(Deliveries {
            topic: topic.to_string(),
            partition,
            futures,
            sent_with: producer,
        })
    }

    /// Waits for records' acknowledgements; returns the offset of the first (0 for none).
    pub fn delivered(&self, deliveries: Deliveries) -> Result<u64, LogError> {
        let Deliveries {
            topic,
            partition,
            futures,
            sent_with,
        } = deliveries;
        let operation = || format!("producing to {topic}/{partition}");
        let mut first = None;
        for delivery in futures {
            let delivered = block_on(delivery).map_err(|_| LogError::Broker {
                operation: operation(),
                message: "the producer closed before the broker answered".into(),
            })?;
            let delivery =
                delivered.map_err(|(e, _)| self.produce_error(&sent_with, operation(), e))?;
            first.get_or_insert(delivery.offset as u64);
        }
        Ok(first.unwrap_or(0))
    }

    /// A failed send as the log reports it. An idempotent producer that hit a fatal error,
    /// or whose id or epoch the broker refuses (it lost track of its sequence numbers, say
    /// after sends timed out while it did not answer), fails every later send: it is made
    /// anew, and the error says the cluster did not answer, so that the caller sends again.
    /// A transactional producer's fatal error (fenced by a newer instance) stays what it is.
    fn produce_error(
        &self,
        sent_with: &FutureProducer,
        operation: String,
        error: KafkaError,
    ) -> LogError {
        if self.transactional {
            return broker(operation, error);
        }
        // Some brokers refuse an idempotent producer's new epoch after timeouts (tansu
        // answers ProducerFenced to every later send): that is as good as fatal.
        let stale = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
            )
        );
        let fatal = sent_with.client().fatal_error().map(|(_, reason)| reason);
        let Some(reason) = fatal.or_else(|| stale.then(|| error.to_string())) else {
            return broker(operation, error);
        };
        let mut producer = self.current.write().unwrap_or_else(|p| p.into_inner());
        // Made anew once: another thread whose sends failed with the same producer may have
        // done it meanwhile.
        if producer.client().native_ptr() == sent_with.client().native_ptr() {
            match self.config.create() {
                Ok(fresh) => {
                    tracing::warn!("Kafka producer: fatal error ({reason}); making a new one");
                    *producer = fresh;
                }
                Err(e) => return broker("creating the producer", e),
            }
        }
        LogError::Unavailable {
            operation,
            message: format!(
                "{error}; the producer had a fatal error ({reason}) and was made anew"
            ),
        }
    }
}

//! Reading partitions at given offsets: one consumer, assigned each partition on its first
//! read (no group subscription: the caller says where to read), with a queue per partition
//! so that partitions are read independently.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use millrace_log::{Fetched, Header, LogError, Record, StoredRecord};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};

use crate::arrivals::Arrivals;
use crate::broker;

type PartitionQueue =
    rdkafka::consumer::base_consumer::PartitionQueue<rdkafka::consumer::DefaultConsumerContext>;

/// Where a partition is being read.
struct PartitionRead {
    queue: PartitionQueue,
    /// Records that reached the consumer's main queue before the partition had its own
    /// (between assigning it and splitting its queue off), in order.
    early: std::collections::VecDeque<StoredRecord>,
    /// The offset after the last record handed out.
    next: u64,
    /// Some record was handed out since the partition was assigned: the consumer's position
    /// is this assignment's (right after one it may still be the previous one's).
    delivered: bool,
}

pub struct Reader {
    consumer: Arc<BaseConsumer>,
    /// How long asking the broker for a partition's end may take.
    timeout: Duration,
    partitions: Mutex<HashMap<(String, u32), PartitionRead>>,
    /// Bumped when a partition's queue receives records, for waiting readers.
    arrivals: Arc<Arrivals>,
}

impl Reader {
    pub fn new(
        config: &mut ClientConfig,
        timeout: Duration,
        arrivals: Arc<Arrivals>,
    ) -> Result<Reader, LogError> {
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| broker("creating the reading consumer", e))?;
        Ok(Reader {
            consumer: Arc::new(consumer),
            timeout,
            partitions: Mutex::new(HashMap::new()),
            arrivals,
        })
    }

    /// Starts reading a partition at `offset`.
    fn assign(&self, topic: &str, partition: u32, offset: u64) -> Result<PartitionRead, LogError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition as i32, Offset::Offset(offset as i64))
            .map_err(|e| broker(format!("reading {topic}/{partition}"), e))?;
        self.consumer
            .incremental_assign(&list)
            .map_err(|e| broker(format!("reading {topic}/{partition}"), e))?;
        let mut queue = self
            .consumer
            .split_partition_queue(topic, partition as i32)
            .ok_or_else(|| LogError::Broker {
                operation: format!("reading {topic}/{partition}"),
                message: "no queue for the partition".into(),
            })?;
        let arrivals = self.arrivals.clone();
        queue.set_nonempty_callback(move || arrivals.notify());
        Ok(PartitionRead {
            queue,
            early: Default::default(),
            next: offset,
            delivered: false,
        })
    }

    pub fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_records: usize,
    ) -> Result<Fetched, LogError> {
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        self.drain_main_queue(&mut partitions);
        let key = (topic.to_string(), partition);
        // Reading elsewhere than where the last read ended starts the partition afresh there
        // (what was fetched ahead is dropped with its queue).
        if partitions.get(&key).is_some_and(|read| read.next != offset) {
            partitions.remove(&key);
            self.unassign(topic, partition)?;
        }
        if !partitions.contains_key(&key) {
            let read = self.assign(topic, partition, offset)?;
            partitions.insert(key.clone(), read);
        }
        let read = partitions.get_mut(&key).expect("just inserted");
        let mut records = Vec::new();
        while records.len() < max_records {
            let stored = match read.early.pop_front() {
                Some(early) => early,
                None => {
                    let Some(message) = read.queue.poll(Duration::ZERO) else {
                        break;
                    };
                    let message =
                        message.map_err(|e| broker(format!("reading {topic}/{partition}"), e))?;
                    StoredRecord {
                        partition,
                        offset: message.offset().max(0) as u64,
                        record: record_of(&message),
                    }
                }
            };
            if stored.offset < read.next {
                continue;
            }
            read.next = stored.offset + 1;
            read.delivered = true;
            records.push(stored);
        }
        // Offsets holding no record (transaction markers) move the consumer's position on.
        if records.is_empty()
            && read.delivered
            && let Some(position) = self.position(topic, partition)
        {
            read.next = read.next.max(position);
        }
        // Before the first fetch answer the end is asked of the broker, so that a reader not
        // yet served does not look caught up.
        let end_offset = match self.high_watermark(topic, partition) {
            Some(end) => end,
            None => self
                .consumer
                .fetch_watermarks(topic, partition as i32, self.timeout)
                .map(|(_, high)| high.max(0) as u64)
                .map_err(|e| broker(format!("reading the end of {topic}/{partition}"), e))?,
        };
        Ok(Fetched {
            records,
            next_offset: read.next,
            end_offset: end_offset.max(read.next),
        })
    }

    /// Takes what the consumer's main queue holds: records that came before their partition's
    /// queue was split off go to that partition's early records; errors the cluster reports
    /// (a broker down, say) are logged.
    fn drain_main_queue(&self, partitions: &mut HashMap<(String, u32), PartitionRead>) {
        while let Some(polled) = self.consumer.poll(Duration::ZERO) {
            match polled {
                Ok(message) => {
                    let key = (message.topic().to_string(), message.partition() as u32);
                    if let Some(read) = partitions.get_mut(&key) {
                        read.early.push_back(StoredRecord {
                            partition: key.1,
                            offset: message.offset().max(0) as u64,
                            record: record_of(&message),
                        });
                    }
                }
                Err(e) => tracing::warn!("Kafka consumer: {e}"),
            }
        }
    }

    /// Stops reading a partition (dropping what was fetched ahead) until it is read again.
    pub fn stop_reading(&self, topic: &str, partition: u32) {
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        if partitions.remove(&(topic.to_string(), partition)).is_some()
            && let Err(e) = self.unassign(topic, partition)
        {
            tracing::warn!("{e}");
        }
    }

    /// Stops reading a partition.
    fn unassign(&self, topic: &str, partition: u32) -> Result<(), LogError> {
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition as i32);
        self.consumer
            .incremental_unassign(&list)
            .map_err(|e| broker(format!("reading {topic}/{partition} elsewhere"), e))
    }

    /// The consumer's position in a partition: after the last record or marker it passed.
    fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        let positions = self.consumer.position().ok()?;
        match positions.find_partition(topic, partition as i32)?.offset() {
            Offset::Offset(offset) if offset >= 0 => Some(offset as u64),
            _ => None,
        }
    }

    /// The partition's end as the consumer last saw it in a fetch answer (no request).
    fn high_watermark(&self, topic: &str, partition: u32) -> Option<u64> {
        let topic = CString::new(topic).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer is valid while the consumer lives, the topic is a valid
        // C string, and the out pointers point at live locals.
        let error = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                partition as i32,
                &mut low,
                &mut high,
            )
        };
        (error == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some(high as u64)
    }
}

/// A consumed message as a log record.
fn record_of(message: &impl Message) -> Record {
    let timestamp = match message.timestamp() {
        Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
        Timestamp::NotAvailable => -1,
    };
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| Header {
                    key: h.key.to_string(),
                    value: h.value.map(Bytes::copy_from_slice),
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        key: message.key().map(Bytes::copy_from_slice),
        value: message.payload().map(Bytes::copy_from_slice),
        timestamp,
        headers,
    }
}

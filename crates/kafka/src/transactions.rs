//! Kafka transactions, for `processing.guarantee: exactly_once_v2`: a task's outputs,
//! changelog records and input offsets are written in one transaction, so readers that read
//! committed records see all of it or none. The offsets carry the group's generation, so a
//! process that lost its partitions (a zombie) cannot commit over their new owner.

use std::time::Duration;

use millrace_log::LogError;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;

use crate::FutureProducer;

/// What needs transactions, named when the cluster cannot give them.
const NEEDED_BY: &str = "processing.guarantee exactly_once_v2";

/// Makes the producer transactional (fencing an earlier producer with its id).
pub fn init(producer: &FutureProducer, timeout: Duration) -> Result<(), LogError> {
    producer
        .init_transactions(timeout)
        .map_err(|e| LogError::Broker {
            operation: format!(
                "starting transactions, which {NEEDED_BY} needs (does the cluster support \
                 Kafka transactions?)"
            ),
            message: e.to_string(),
        })
}

/// Begins a transaction. A failure here leaves no transaction to abort, and says the
/// producer cannot go on (another call of it is still in progress, say).
pub fn begin(producer: &FutureProducer) -> Result<(), LogError> {
    producer.begin_transaction().map_err(|e| LogError::Broker {
        operation: "beginning a transaction".into(),
        message: e.to_string(),
    })
}

/// Adds a group's offsets to the transaction.
pub fn send_offsets(
    producer: &FutureProducer,
    offsets: &TopicPartitionList,
    group: &ConsumerGroupMetadata,
    timeout: Duration,
) -> Result<(), LogError> {
    producer
        .send_offsets_to_transaction(offsets, group, timeout)
        .map_err(|e| failed("adding offsets to the transaction", e))
}

/// How many times a commit or abort that timed out is tried: librdkafka resumes the same
/// call.
const CALL_ATTEMPTS: u32 = 3;

/// Commits the transaction, retrying while the error says a retry may succeed.
pub fn commit(producer: &FutureProducer, timeout: Duration) -> Result<(), LogError> {
    let mut attempt = 1;
    loop {
        match producer.commit_transaction(timeout) {
            Ok(()) => return Ok(()),
            Err(KafkaError::Transaction(e))
                if e.is_retriable()
                    && e.code() != RDKafkaErrorCode::UnsupportedFeature
                    && attempt < CALL_ATTEMPTS =>
            {
                tracing::warn!("retrying a transaction's commit: {e}");
                attempt += 1;
            }
            Err(e) => return Err(failed("committing a transaction", e)),
        }
    }
}

/// Aborts the transaction after `error`, which is returned: nothing of the transaction
/// stays. An abort that times out is resumed, as librdkafka asks (a producer left in the
/// middle of one cannot begin the next transaction).
pub fn abort(producer: &FutureProducer, error: LogError, timeout: Duration) -> LogError {
    let mut attempt = 1;
    loop {
        match producer.abort_transaction(timeout) {
            Ok(()) => return error,
            Err(KafkaError::Transaction(e)) if e.is_retriable() && attempt < CALL_ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => {
                // After an error that stops the producer, the abort is expected to fail too.
                match &error {
                    LogError::TransactionAborted { .. } => {
                        tracing::warn!("aborting a transaction after '{error}': {e}")
                    }
                    _ => tracing::debug!("aborting a transaction after '{error}': {e}"),
                }
                return error;
            }
        }
    }
}

/// A transaction step's error. One that requires an abort (the group refused the offsets,
/// say) leaves the producer usable: the work is redone. Others stop the producer's user: a
/// cluster without transactions, a producer fenced by a newer one with its id, a commit
/// whose outcome stays unknown.
fn failed(operation: &str, error: KafkaError) -> LogError {
    let KafkaError::Transaction(e) = &error else {
        return LogError::Broker {
            operation: operation.into(),
            message: error.to_string(),
        };
    };
    if e.code() == RDKafkaErrorCode::UnsupportedFeature {
        return LogError::Broker {
            operation: format!(
                "{operation}: the cluster does not support Kafka transactions, which \
                 {NEEDED_BY} needs"
            ),
            message: e.to_string(),
        };
    }
    if e.txn_requires_abort() && !e.is_fatal() {
        return LogError::TransactionAborted {
            reason: format!("{operation}: {e}"),
        };
    }
    LogError::Broker {
        operation: format!("{operation} (the transactional producer cannot go on)"),
        message: e.to_string(),
    }
}

//! Why the processor stops, and what one failed batch means for it: librdkafka's transactional errors
//! come in three classes, each with one cure (see `rd_kafka_error_is_retriable`,
//! `rd_kafka_error_txn_requires_abort`, `rd_kafka_error_is_fatal`):
//! - retriable: the same call again (handled where the call is made, [`super::transaction`]);
//! - abortable: abort, rewind the consumer, restore the touched partitions' state, go on ([`BatchError::Retry`]);
//! - fatal: this producer can do nothing more; the processor stops and the service exits for a restart
//!   with a new producer ([`BatchError::Stop`]). Fencing is one fatal case and is named as such; a
//!   transaction that outlived `transaction.timeout.ms` is reported as a timeout.

use std::time::Duration;

use causeway_contracts::wire::WireError;
use causeway_core::{Classify, ErrorClass};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::error::{Error, classify_kafka};

/// Why the processor stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// A Kafka client failed.
    #[error(transparent)]
    Kafka(#[from] Error),
    /// Another process took over this transactional id (or group instance id), or the broker fenced
    /// the producer. Fatal: this instance stops; its partitions belong to someone else.
    #[error("fenced by another instance with the same identity: {0}")]
    Fenced(KafkaError),
    /// The consumer hit a fatal error (librdkafka's contract: it cannot be used again), e.g. the group
    /// coordinator fenced its `group.instance.id`: another instance with the same identity joined, or
    /// (seen after a broker outage longer than `session.timeout.ms`) librdkafka's own rejoin raced a
    /// request that still carried the old member id (librdkafka issue 3437). Fatal: the process exits
    /// for a restart with a new consumer, which restores the partitions it is given; nothing
    /// uncommitted was kept.
    #[error("{}", consumer_fatal(.0))]
    ConsumerFatal(KafkaError),
    /// The transaction outlived `transaction.timeout.ms` and the broker aborted it, leaving the producer
    /// unusable. Fatal to this producer: restart (a larger timeout, or smaller batches, may be needed).
    #[error(
        "the transaction timed out (transaction.timeout.ms) and was aborted by the broker: {0}"
    )]
    TimedOut(String),
    /// `commit_transaction` kept failing with retriable errors until the transaction's time ran out (or
    /// shutdown came): whether the broker committed it is unknown, and an abort could undo a committed
    /// batch. Fatal: the process exits; the next producer's `init_transactions` completes or aborts the
    /// transaction, and the restore reads what was committed.
    #[error(
        "commit_transaction did not resolve (the outcome is unknown, so no abort); exiting for a restart: {0}"
    )]
    CommitUnresolved(String),
    /// An abort failed with an error that is neither retriable nor fatal: the producer's transaction
    /// state is unknown. Fatal to this producer: restart.
    #[error("abort_transaction failed: {0}")]
    AbortFailed(String),
    /// A transactional call did not return long after its own timeout (librdkafka issues 5456, 5511:
    /// a lost coordinator can leave it blocked for good). Fatal: restart with a new client.
    #[error(
        "{call} did not return within {after:?}: the Kafka client is stuck (a coordinator broker was lost); stopping so that a restart gets a new client"
    )]
    Hung {
        /// The call.
        call: &'static str,
        /// How long it was given.
        after: Duration,
    },
    /// librdkafka reported a fatal producer error other than fencing. Fatal: restart.
    #[error("fatal transactional producer error: {0}")]
    FatalProducer(KafkaError),
    /// A value could not be encoded with its registered schema (a contract out of step with the code).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The topics do not fit together (a missing topic, partition counts that differ). Fatal: fix the
    /// topics (`causeway topics apply`).
    #[error("topics: {0}")]
    Topics(String),
    /// A changelog record could not be read back: restoring would lose state.
    #[error("changelog {topic} partition {partition} offset {offset}: {why}")]
    Changelog {
        /// The changelog topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// What is wrong.
        why: String,
    },
    /// The on-disk state store (`state_dir`) cannot be read or written. Fatal: the process exits; a
    /// restart reads the changelog from the last durable checkpoint (or rebuilds the store).
    #[error("local state store: {0}")]
    Store(String),
}

impl Classify for ProcessorError {
    fn class(&self) -> ErrorClass {
        match self {
            ProcessorError::Kafka(e) => e.class(),
            ProcessorError::Wire(e) => e.class(),
            ProcessorError::Fenced(_)
            | ProcessorError::ConsumerFatal(_)
            | ProcessorError::CommitUnresolved(_)
            | ProcessorError::TimedOut(_)
            | ProcessorError::AbortFailed(_)
            | ProcessorError::Hung { .. }
            | ProcessorError::FatalProducer(_)
            | ProcessorError::Store(_)
            | ProcessorError::Topics(_)
            | ProcessorError::Changelog { .. } => ErrorClass::Fatal,
        }
    }
}

/// The message of [`ProcessorError::ConsumerFatal`].
fn consumer_fatal(e: &KafkaError) -> String {
    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::FencedInstanceId) {
        format!(
            "the consumer cannot go on: its group instance was fenced, by librdkafka's own rejoin after its session timed out (as after a broker outage) or by a second instance with the same identity (then stop one of them: restarted, the two fence each other); exiting for a restart: {e}"
        )
    } else {
        format!("the consumer cannot go on (a fatal consumer error); exiting for a restart: {e}")
    }
}

/// Why one batch failed; decides whether the processor retries or stops.
#[derive(Debug)]
pub(super) enum BatchError {
    /// Abort, rewind, restore, go on.
    Retry(String),
    /// Stop.
    Stop(ProcessorError),
}

/// librdkafka's class of a transactional error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxnClass {
    /// Call the same API again.
    Retriable,
    /// Abort the transaction, rewind and restore.
    Abortable,
    /// The producer is unusable.
    Fatal,
}

/// The class of `e`, from a transactional call.
pub(super) fn txn_class(e: &KafkaError) -> TxnClass {
    match e {
        KafkaError::Transaction(t) if t.is_fatal() => TxnClass::Fatal,
        KafkaError::Transaction(t) if t.txn_requires_abort() => TxnClass::Abortable,
        KafkaError::Transaction(t) if t.is_retriable() => TxnClass::Retriable,
        // Not a transactional error object (a produce or offsets call): the fencing and
        // authorization codes cannot pass, anything else is worth an abort and another try.
        other if classify_kafka(other) == ErrorClass::Fatal => TxnClass::Fatal,
        _ => TxnClass::Abortable,
    }
}

/// Whether `e` says another producer with this transactional id took over.
pub(super) fn is_fencing(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fenced)
    )
}

/// The processor's error for a fatal transactional error `e`, in a transaction open for `age` of a
/// `timeout` (`transaction.timeout.ms`). librdkafka reports both a takeover by another producer and the
/// broker's abort of a transaction that outlived its timeout as `__FENCED` (it normalises
/// INVALID_PRODUCER_EPOCH and PRODUCER_FENCED into it), so the transaction's age tells them apart.
pub(super) fn fatal(e: KafkaError, age: Duration, timeout: Duration) -> ProcessorError {
    if age >= timeout
        && (is_fencing(&e)
            || matches!(
                e.rdkafka_error_code(),
                Some(RDKafkaErrorCode::InvalidProducerEpoch)
            ))
    {
        return ProcessorError::TimedOut(e.to_string());
    }
    if is_fencing(&e) {
        return ProcessorError::Fenced(e);
    }
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::InvalidTransactionTimeout
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::RequestTimedOut,
        ) => ProcessorError::TimedOut(e.to_string()),
        _ => ProcessorError::FatalProducer(e),
    }
}

impl From<KafkaError> for BatchError {
    /// Outside a transaction's calls (a send): fatal or worth an abort and another try.
    fn from(e: KafkaError) -> Self {
        match txn_class(&e) {
            TxnClass::Fatal => BatchError::Stop(fatal(e, Duration::ZERO, Duration::MAX)),
            TxnClass::Abortable | TxnClass::Retriable => BatchError::Retry(e.to_string()),
        }
    }
}

impl From<WireError> for BatchError {
    fn from(e: WireError) -> Self {
        match e.class() {
            ErrorClass::Transient => BatchError::Retry(e.to_string()),
            _ => BatchError::Stop(ProcessorError::Wire(e)),
        }
    }
}

/// Whether a consumer error means this member was fenced (another instance with its
/// `group.instance.id`) or the consumer can no longer work.
pub(super) fn consumer_fenced(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageConsumptionFatal(_))
        || matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::FencedInstanceId | RDKafkaErrorCode::Fenced)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_errors_are_classed_by_code() {
        let second = Duration::from_secs(1);
        let limit = Duration::from_secs(10);
        // What librdkafka reports for both a takeover and a transaction the broker timed out.
        let fenced = || KafkaError::MessageProduction(RDKafkaErrorCode::Fenced);
        assert_eq!(txn_class(&fenced()), TxnClass::Fatal);
        assert!(
            matches!(fatal(fenced(), second, limit), ProcessorError::Fenced(_)),
            "fenced inside the timeout: another producer took over"
        );
        assert!(
            matches!(
                fatal(fenced(), limit * 2, limit),
                ProcessorError::TimedOut(_)
            ),
            "fenced after the timeout: the broker aborted the transaction"
        );
        let timeout = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(txn_class(&timeout), TxnClass::Abortable);
    }
}

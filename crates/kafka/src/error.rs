//! Kafka errors, classified once here (see docs/adr/0003-error-classes.md).

use causeway_core::{Classify, ErrorClass};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// A failure talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client could not be created from its properties (a typo in a librdkafka property, a missing
    /// certificate file). Fatal: fix the config.
    #[error("cannot create the Kafka {what} client: {source}")]
    Client {
        /// Which client (producer, consumer, admin).
        what: &'static str,
        /// librdkafka's reason.
        source: KafkaError,
    },
    /// No broker answered in time. Transient: retry with backoff.
    #[error("no Kafka broker at {servers} answered within {timeout_ms} ms: {source}")]
    Unreachable {
        /// The bootstrap servers tried.
        servers: String,
        /// How long we waited.
        timeout_ms: u64,
        /// librdkafka's reason.
        source: KafkaError,
    },
    /// An operation failed; its class follows librdkafka's error code.
    #[error("Kafka {operation} failed: {source}")]
    Operation {
        /// What was being done.
        operation: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// A background task running a blocking client call panicked or was cancelled. Transient.
    #[error("Kafka client task failed: {0}")]
    Task(String),
    /// A topic the operation needs is not in the cluster. Fatal: create it (`causeway topics apply`).
    #[error("topic {0} does not exist (create it: `causeway topics apply`)")]
    MissingTopic(String),
    /// A rebuild stopped: a write its store refused for good, or a switch that never fit in its pause.
    /// Fatal: the message says what to fix; run the rebuild again.
    #[error("{0}")]
    Rebuild(String),
    /// A topology file is unreadable or invalid. Fatal.
    #[error("topology {path}: {message}")]
    Topology {
        /// The file (or `<inline>`).
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Client { .. }
            | Error::Topology { .. }
            | Error::MissingTopic(_)
            | Error::Rebuild(_) => ErrorClass::Fatal,
            Error::Unreachable { .. } | Error::Task(_) => ErrorClass::Transient,
            Error::Operation { source, .. } => classify_kafka(source),
        }
    }
}

/// The class of a librdkafka error: authentication, authorization and fencing are fatal; everything the
/// client marks retriable, and everything else, is treated as transient (the broker may come back).
pub fn classify_kafka(error: &KafkaError) -> ErrorClass {
    use RDKafkaErrorCode as C;
    match error.rdkafka_error_code() {
        Some(
            C::SaslAuthenticationFailed
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::Authentication
            | C::UnknownTopicOrPartition
            | C::UnknownTopic
            | C::InvalidConfig
            | C::ProducerFenced
            | C::Fenced
            | C::InvalidProducerEpoch
            | C::MessageSizeTooLarge
            | C::InvalidTransactionalState,
        ) => ErrorClass::Fatal,
        _ => ErrorClass::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_and_auth_are_fatal_timeouts_transient() {
        let timeout = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(classify_kafka(&timeout), ErrorClass::Transient);
        let auth = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert_eq!(classify_kafka(&auth), ErrorClass::Fatal);
        let fenced = KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced);
        assert_eq!(classify_kafka(&fenced), ErrorClass::Fatal);
    }
}

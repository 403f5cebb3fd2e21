//! Errors of `dlq-reprocessor`, each with the class that decides what happens next.

use causeway_core::{Classify, ErrorClass};

/// A failure of the service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to Kafka failed; the class is Kafka's.
    #[error(transparent)]
    Kafka(#[from] causeway_kafka::Error),
    /// Talking to Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The configuration does not fit (checked at start too).
    #[error("{0}")]
    Config(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Kafka(e) => e.class(),
            Error::Redis(e) => causeway_redis::classify(e),
            Error::Config(_) => ErrorClass::Fatal,
        }
    }
}

//! Errors of `projector-redis`, each with the class that decides what happens next.

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
    /// The configuration does not fit this build (checked at start too).
    #[error("{0}")]
    Config(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Kafka(e) => e.class(),
            Error::Redis(e) => classify_redis(e),
            Error::Config(_) => ErrorClass::Fatal,
        }
    }
}

/// Redis errors, classified once: authentication and bad URLs are fatal, a refused or dropped
/// connection, a timeout or a busy server are transient; anything else is a bug in a script we sent,
/// which no retry fixes.
pub fn classify_redis(e: &redis::RedisError) -> ErrorClass {
    use redis::{ErrorKind, ServerErrorKind as S};
    if e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout() || e.is_io_error() {
        return ErrorClass::Transient;
    }
    match e.kind() {
        ErrorKind::Server(
            S::BusyLoading | S::TryAgain | S::ClusterDown | S::MasterDown | S::ReadOnly,
        ) => ErrorClass::Transient,
        _ => ErrorClass::Fatal,
    }
}

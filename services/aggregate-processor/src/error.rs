//! Errors of `aggregate-processor`, each with the class that decides what happens next.

use causeway_core::{Classify, ErrorClass};

/// A failure of the service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to Kafka failed; the class is Kafka's.
    #[error(transparent)]
    Kafka(#[from] causeway_kafka::Error),
    /// The processor stopped on an error.
    #[error(transparent)]
    Processor(#[from] causeway_kafka::processor::ProcessorError),
    /// A domain this build does not host. Fatal (config validation catches it first).
    #[error("unknown domain {0:?}")]
    UnknownDomain(String),
    /// An aggregate type this build does not host. Fatal (config validation catches it first).
    #[error("unknown aggregate type {0:?}")]
    UnknownAggregate(String),
    /// The processor thread panicked. Fatal.
    #[error("processor thread failed: {0}")]
    Task(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Kafka(e) => e.class(),
            Error::Processor(e) => e.class(),
            Error::UnknownDomain(_) | Error::UnknownAggregate(_) | Error::Task(_) => {
                ErrorClass::Fatal
            }
        }
    }
}

//! Errors of `saga-orchestrator`, each with the class that decides what happens next.

use causeway_core::{Classify, ErrorClass};

/// A failure of the service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to Kafka failed; the class is Kafka's.
    #[error(transparent)]
    Kafka(#[from] causeway_kafka::Error),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Kafka(e) => e.class(),
        }
    }
}

//! Errors of `projector-clickhouse`, each with the class that decides what happens next.

use causeway_core::{Classify, ErrorClass};

/// A failure of the service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to Kafka failed; the class is Kafka's.
    #[error(transparent)]
    Kafka(#[from] causeway_kafka::Error),
    /// Talking to ClickHouse failed.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// Something that should not happen (a domain the config check let through, an answer that does
    /// not parse). Fatal.
    #[error("{0}")]
    Unexpected(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Error::Kafka(e) => e.class(),
            Error::ClickHouse(e) => classify_clickhouse(e),
            Error::Unexpected(_) => ErrorClass::Fatal,
        }
    }
}

/// ClickHouse errors, classified once: the network and timeouts are transient; a response naming
/// authentication is fatal; anything else the server refused (a bad query, a type mismatch) cannot
/// succeed by retrying and is fatal to the batch that caused it.
pub fn classify_clickhouse(e: &clickhouse::error::Error) -> ErrorClass {
    use clickhouse::error::Error as E;
    match e {
        E::Network(_) | E::TimedOut => ErrorClass::Transient,
        // Code 516 AUTHENTICATION_FAILED; 192 UNKNOWN_USER, 193 WRONG_PASSWORD on older servers.
        E::BadResponse(text)
            if ["Code: 516", "Code: 192", "Code: 193"]
                .iter()
                .any(|c| text.contains(c)) =>
        {
            ErrorClass::Fatal
        }
        // Code 241 MEMORY_LIMIT_EXCEEDED, 202 TOO_MANY_SIMULTANEOUS_QUERIES, 252 TOO_MANY_PARTS: back off.
        E::BadResponse(text)
            if ["Code: 241", "Code: 202", "Code: 252"]
                .iter()
                .any(|c| text.contains(c)) =>
        {
            ErrorClass::Transient
        }
        _ => ErrorClass::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_codes_map_to_classes() {
        use clickhouse::error::Error as E;
        assert_eq!(classify_clickhouse(&E::TimedOut), ErrorClass::Transient);
        assert_eq!(
            classify_clickhouse(&E::BadResponse(
                "Code: 252, e.displayText() = Too many parts".into()
            )),
            ErrorClass::Transient
        );
        assert_eq!(
            classify_clickhouse(&E::BadResponse(
                "Code: 193, e.displayText() = Wrong password".into()
            )),
            ErrorClass::Fatal
        );
    }
}

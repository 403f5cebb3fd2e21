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
    /// A rebuild cannot go on (another one holds the projection, nothing hosts it here, its claim
    /// ran out). Fatal: the message says what to do.
    #[error("{0}")]
    Rebuild(String),
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
            Error::Rebuild(_) | Error::Unexpected(_) => ErrorClass::Fatal,
        }
    }
}

/// ClickHouse errors, classified once. Fatal only what no retry can fix: authentication (516, and 192
/// / 193 on older servers), access (497), a database or table that is not there (81, 60), a query the
/// server cannot parse or a column it does not know (62, 47): these need an operator or a fix.
/// Everything else (the network, timeouts, memory, too many parts or queries, a server starting or
/// stopping, a proxy's 5xx, an answer cut short) is transient: retried with backoff.
pub fn classify_clickhouse(e: &clickhouse::error::Error) -> ErrorClass {
    use clickhouse::error::Error as E;
    match e {
        E::BadResponse(text) => match server_code(text) {
            Some(516 | 192 | 193 | 497 | 81 | 60 | 62 | 47) => ErrorClass::Fatal,
            _ => ErrorClass::Transient,
        },
        E::InvalidParams(_) | E::Custom(_) => ErrorClass::Fatal,
        _ => ErrorClass::Transient,
    }
}

/// The code of a ClickHouse exception message (`Code: 241. DB::Exception: ...`).
fn server_code(text: &str) -> Option<u32> {
    let at = text.find("Code: ")?;
    let digits: String = text[at + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::error::Error as E;

    #[test]
    fn only_what_no_retry_fixes_is_fatal() {
        let bad = |t: &str| classify_clickhouse(&E::BadResponse(t.into()));
        assert_eq!(
            bad("Code: 516. DB::Exception: Authentication failed"),
            ErrorClass::Fatal
        );
        assert_eq!(
            bad("Code: 60. DB::Exception: Table x doesn't exist"),
            ErrorClass::Fatal
        );
        assert_eq!(
            bad("Code: 241. DB::Exception: Memory limit"),
            ErrorClass::Transient
        );
        assert_eq!(
            bad("Code: 159. DB::Exception: Timeout exceeded"),
            ErrorClass::Transient
        );
        assert_eq!(bad("503 Service Unavailable"), ErrorClass::Transient);
        assert_eq!(classify_clickhouse(&E::TimedOut), ErrorClass::Transient);
    }
}

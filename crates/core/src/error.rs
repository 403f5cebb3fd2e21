//! Error classes. Every failure in the suite is exactly one of these, and the class alone decides what
//! the caller does with it: see docs/adr/0003-error-classes.md.

use std::fmt;

/// What a caller must do with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// May succeed later (broker or database unreachable, timeout, throttled): retry with backoff and
    /// pause the partition meanwhile, so that per-key order holds.
    Transient,
    /// Can never succeed for this input (undecodable record, unknown type): park it in the DLQ with its
    /// reason and move on.
    Poison,
    /// A business rule said no: not an error of the system, reported as a result, never retried.
    Rejected,
    /// The process cannot work as configured (bad config, bad credentials, missing topic): refuse to
    /// start or stop, saying exactly what is wrong.
    Fatal,
}

impl ErrorClass {
    /// The lowercase name used in logs, metrics labels and DLQ headers.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Poison => "poison",
            ErrorClass::Rejected => "rejected",
            ErrorClass::Fatal => "fatal",
        }
    }

    /// Whether retrying the same operation can help.
    pub const fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Transient)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by every library error: the one place where an infrastructure error is mapped to a class.
pub trait Classify {
    /// The class of this failure.
    fn class(&self) -> ErrorClass;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_is_retryable() {
        let all = [
            ErrorClass::Transient,
            ErrorClass::Poison,
            ErrorClass::Rejected,
            ErrorClass::Fatal,
        ];
        let retryable: Vec<_> = all.into_iter().filter(|c| c.is_retryable()).collect();
        assert_eq!(retryable, vec![ErrorClass::Transient]);
    }

    #[test]
    fn names_are_stable() {
        assert_eq!(ErrorClass::Poison.to_string(), "poison");
        assert_eq!(ErrorClass::Fatal.as_str(), "fatal");
    }
}

//! The aggregate contract: pure, synchronous decisions over in-memory state.
//!
//! `handle(&state, &command)` decides: the events to record, or a [`Rejection`]. `apply(state, &event)`
//! folds one event into the state. Neither does I/O, reads a clock or draws random numbers, so replaying
//! the events rebuilds the state exactly, and the processor can run them inside a Kafka transaction.

use std::fmt;

/// A business rule said no. Not an error of the system: it becomes a REJECTED command result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Machine-readable reason, stable across versions (e.g. `insufficient_stock`).
    pub code: &'static str,
    /// The reason for a person.
    pub reason: String,
}

impl Rejection {
    /// A rejection with `code` and `reason`.
    pub fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

/// The rejection code of a command whose expected version differs from the aggregate's.
pub const CONFLICT: &str = "conflict";

/// An aggregate type: its state, commands and events.
pub trait Aggregate: Default + Clone + fmt::Debug + PartialEq {
    /// Its commands.
    type Command: fmt::Debug;
    /// Its events.
    type Event: fmt::Debug + Clone + PartialEq;

    /// The aggregate type as it appears in topic names (`<context>.<type>.commands`).
    const TYPE: &'static str;

    /// Decide what `command` does to this state.
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Rejection>;

    /// This state after `event`.
    fn apply(self, event: &Self::Event) -> Self;

    /// The state after `events`, from the empty state.
    fn replay<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(Self::default(), Self::apply)
    }
}

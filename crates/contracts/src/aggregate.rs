//! How an aggregate's Rust types meet their Avro contracts: the processor decodes a command record into
//! the aggregate's command, reads the envelope fields every command carries, and writes events with
//! their metadata. A domain implements [`AggregateContract`] once per aggregate (the reference domain
//! with a macro); the processor needs nothing else from it.

use apache_avro::types::Value;
use causeway_core::Aggregate;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::records::EventMetadata;

/// The envelope fields of a command (flattened into every command record, see `avro/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandMeta<'a> {
    /// The sender's id for the command.
    pub command_id: &'a str,
    /// The aggregate it addresses; must equal the record key.
    pub aggregate_id: &'a str,
    /// The version the sender saw, when it asks for a check.
    pub expected_version: Option<i64>,
    /// The business flow it belongs to; `None`: its own command id.
    pub correlation_id: Option<&'a str>,
}

/// Why a record cannot be read as one of an aggregate's commands or events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The record type is not one of this aggregate's.
    #[error("{full_name} is not a {kind} of this aggregate")]
    Unknown {
        /// The record's full name.
        full_name: String,
        /// `command` or `event`.
        kind: &'static str,
    },
    /// The record type is known but the value does not fit its Rust type.
    #[error("{full_name} does not fit its type: {why}")]
    Invalid {
        /// The record's full name.
        full_name: String,
        /// Why.
        why: String,
    },
}

/// An aggregate whose commands, events and state have Avro contracts. The state itself (`Self`) is
/// serialised as the `state` field of its changelog record (`StateRecord<Self>`).
pub trait AggregateContract:
    Aggregate<Command: Send, Event: Send> + Serialize + DeserializeOwned + Send + 'static
{
    /// Full name of its changelog record, e.g. `causeway.orders.order.OrderState`.
    const STATE_RECORD: &'static str;

    /// The command in record `full_name` with `value`.
    fn command(full_name: &str, value: &Value) -> Result<Self::Command, ReadError>;

    /// The envelope fields of `command`.
    fn meta(command: &Self::Command) -> CommandMeta<'_>;

    /// The event in record `full_name` with `value` (for readers of the event store).
    fn event(full_name: &str, value: &Value) -> Result<Self::Event, ReadError>;

    /// `event` with `metadata` written in, as an Avro record: its full name and value.
    fn event_record(
        event: Self::Event,
        metadata: EventMetadata,
    ) -> Result<(&'static str, Value), String>;
}

//! How an aggregate's Rust types meet their Avro contracts: the processor decodes a command record into
//! the aggregate's command, reads the envelope fields every command carries, and writes events with
//! their metadata. A domain implements [`AggregateContract`] once per aggregate, by hand or, when each
//! command and event variant wraps the contract type of the same-named record, with
//! [`crate::aggregate_contract!`]; the processor needs nothing else from it.

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

    /// Namespace of its command and event records: a command `C` is record `<NAMESPACE>.C`.
    const NAMESPACE: &'static str;

    /// The command field that holds the aggregate id (the record key), e.g. `order_id`.
    const ID_FIELD: &'static str;

    /// The command in record `full_name` with `value`.
    fn command(full_name: &str, value: &Value) -> Result<Self::Command, ReadError>;

    /// The envelope fields of `command`.
    fn meta(command: &Self::Command) -> CommandMeta<'_>;

    /// The event in record `full_name` with `value` (for readers of the event store).
    fn event(full_name: &str, value: &Value) -> Result<Self::Event, ReadError>;

    /// `event` with `metadata` written in, as a record to write.
    fn event_record(
        event: Self::Event,
        metadata: EventMetadata,
    ) -> Result<crate::hosting::OutRecord, String>;

    /// `command` with `command_id` and `correlation_id` written in, as an Avro record, for a sender (a
    /// saga): its full name, its aggregate id (the record key) and its value.
    fn command_record(
        command: Self::Command,
        command_id: String,
        correlation_id: String,
    ) -> Result<(&'static str, String, Value), String>;
}

/// The value of record `full_name` as the Rust type `T` (a contract type), for [`AggregateContract`]
/// implementations.
pub fn read_record<T: DeserializeOwned>(full_name: &str, value: &Value) -> Result<T, ReadError> {
    apache_avro::from_value(value).map_err(|e| ReadError::Invalid {
        full_name: full_name.to_string(),
        why: e.to_string(),
    })
}

/// Implements [`AggregateContract`] for an aggregate whose command and event enum variants each wrap the
/// contract type of the same-named record in namespace `$ns` (every event type has a `metadata` field).
///
/// ```text
/// causeway_contracts::aggregate_contract! {
///     Counter, namespace "causeway.counter.counter", state "CounterState", id counter_id,
///     commands CounterCommand { Add(AddToCounter), },
///     events CounterEvent { Added(CounterAdded), }
/// }
/// ```
#[macro_export]
macro_rules! aggregate_contract {
    (
        $aggregate:ty, namespace $ns:literal, state $state:literal, id $id:ident,
        commands $command:ident { $($cv:ident($ct:ident),)* },
        events $event:ident { $($ev:ident($et:ident),)* }
    ) => {
        impl $crate::aggregate::AggregateContract for $aggregate {
            const STATE_RECORD: &'static str = concat!($ns, ".", $state);
            const NAMESPACE: &'static str = $ns;
            const ID_FIELD: &'static str = stringify!($id);

            fn command(
                full_name: &str,
                value: &::apache_avro::types::Value,
            ) -> Result<$command, $crate::aggregate::ReadError> {
                match full_name {
                    $(concat!($ns, ".", stringify!($ct)) =>
                        $crate::aggregate::read_record::<$ct>(full_name, value).map($command::$cv),)*
                    _ => Err($crate::aggregate::ReadError::Unknown {
                        full_name: full_name.to_string(),
                        kind: "command",
                    }),
                }
            }

            fn meta(command: &$command) -> $crate::aggregate::CommandMeta<'_> {
                match command {
                    $($command::$cv(c) => $crate::aggregate::CommandMeta {
                        command_id: &c.command_id,
                        aggregate_id: &c.$id,
                        expected_version: c.expected_version,
                        correlation_id: c.correlation_id.as_deref(),
                    },)*
                }
            }

            fn event(
                full_name: &str,
                value: &::apache_avro::types::Value,
            ) -> Result<$event, $crate::aggregate::ReadError> {
                match full_name {
                    $(concat!($ns, ".", stringify!($et)) =>
                        $crate::aggregate::read_record::<$et>(full_name, value).map($event::$ev),)*
                    _ => Err($crate::aggregate::ReadError::Unknown {
                        full_name: full_name.to_string(),
                        kind: "event",
                    }),
                }
            }

            fn command_record(
                command: $command,
                command_id: String,
                correlation_id: String,
            ) -> Result<(&'static str, String, ::apache_avro::types::Value), String> {
                match command {
                    $($command::$cv(c) => {
                        let mut c: $ct = c;
                        c.command_id = command_id;
                        c.correlation_id = Some(correlation_id);
                        let id = c.$id.clone();
                        ::apache_avro::to_value(&c)
                            .map(|v| (concat!($ns, ".", stringify!($ct)), id, v))
                            .map_err(|e| e.to_string())
                    })*
                }
            }

            fn event_record(
                event: $event,
                metadata: $crate::records::EventMetadata,
            ) -> Result<$crate::hosting::OutRecord, String> {
                match event {
                    $($event::$ev(e) => {
                        let mut e: $et = e;
                        e.metadata = metadata;
                        Ok($crate::hosting::OutRecord::new(concat!($ns, ".", stringify!($et)), e))
                    })*
                }
            }
        }
    };
}

//! The suite's own records (not a domain's): the metadata every event carries and the result of every
//! command. Their `.avsc` files are under `avro/causeway/`; `tests` below check the types against them.

use serde::{Deserialize, Serialize};

/// Metadata every event carries. Written by the aggregate processor, never by hand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Unique id of this event (UUID v7: time-ordered).
    pub event_id: String,
    /// Id of the aggregate the event belongs to; also the Kafka record key.
    pub aggregate_id: String,
    /// Version of the aggregate after this event: 1 for its first event, then 2, 3, ... with no gap.
    pub aggregate_version: i64,
    /// Id of the command that caused this event.
    pub causation_id: String,
    /// Id shared by every command and event of one business flow.
    pub correlation_id: String,
    /// When the event was recorded.
    pub occurred_at: i64,
    /// Version of the event's contract the writer used, for upcasters.
    pub schema_version: i32,
}

/// Accepted or rejected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutcome {
    /// Events were recorded.
    #[default]
    #[serde(rename = "ACCEPTED")]
    Accepted,
    /// A rule said no; nothing was recorded.
    #[serde(rename = "REJECTED")]
    Rejected,
}

/// What became of one command: accepted (with the aggregate's new version) or rejected (with the reason). Keyed by command id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The command's id.
    pub command_id: String,
    /// The command's correlation id (its command id when it had none).
    pub correlation_id: String,
    /// Aggregate type, e.g. order.
    pub aggregate_type: String,
    /// Aggregate id the command addressed.
    pub aggregate_id: String,
    /// Accepted or rejected.
    pub outcome: CommandOutcome,
    /// Aggregate version after the command's events; null when rejected.
    pub new_version: Option<i64>,
    /// Machine-readable reason (e.g. conflict, insufficient_stock); null when accepted.
    pub rejection_code: Option<String>,
    /// Reason for a person; null when accepted.
    pub reason: Option<String>,
    /// When the command was processed.
    pub processed_at: i64,
}

/// A command an aggregate processed recently, as its changelog record keeps it (`causeway.RecentCommand`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentCommand {
    /// The command's id.
    pub command_id: String,
    /// When it was processed (its command record's timestamp), ms since the epoch.
    pub processed_at: i64,
    /// Aggregate version after its events when accepted; null when rejected.
    pub new_version: Option<i64>,
    /// Machine-readable reason when rejected.
    pub rejection_code: Option<String>,
    /// Reason for a person when rejected.
    pub reason: Option<String>,
}

/// The changelog record of one aggregate (`<Aggregate>State` on `<ctx>.<aggregate>.changelog`): its
/// domain state `S` with its version and recent commands. The latest one per key is what the processor
/// restores from (docs/adr/0009-aggregate-state.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateRecord<S> {
    /// The aggregate's id; also the record key.
    pub aggregate_id: String,
    /// Number of events recorded: the version of the last one.
    pub version: i64,
    /// The domain state after them.
    pub state: S,
    /// Commands processed recently, oldest first.
    pub recent_commands: Vec<RecentCommand>,
    /// When this record was written, ms since the epoch.
    pub updated_at: i64,
}

/// A command a saga instance awaits the reply to (`causeway.SagaRequest`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SagaRequest {
    /// The request key.
    pub key: String,
    /// The command id.
    pub command_id: String,
    /// Sends so far.
    pub attempts: i32,
    /// When it was first sent, ms.
    pub first_sent_at: i64,
    /// When it is sent again or given up, ms.
    pub retry_at: i64,
    /// Its topic.
    pub topic: String,
    /// Its record key.
    pub record_key: String,
    /// Its record value as sent.
    #[serde(with = "apache_avro::serde::bytes")]
    pub payload: Vec<u8>,
}

/// A running deadline of a saga instance (`causeway.SagaTimer`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SagaTimer {
    /// Its name.
    pub name: String,
    /// When it fires, ms.
    pub at: i64,
}

/// One step of a saga instance's history (`causeway.SagaHistoryEntry`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SagaHistoryEntry {
    /// When, ms.
    pub at: i64,
    /// The step it led to.
    pub step: String,
    /// What happened.
    pub what: String,
}

/// The changelog record of one saga instance (`<Saga>State` on `<ctx>.<saga>.changelog`): its domain
/// state `S` with what the framework keeps around it. The envelope fields are the same for every saga,
/// so operators' tools read them without knowing the domain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SagaRecord<S> {
    /// The instance's id; also the record key.
    pub saga_id: String,
    /// Its status (`running`, `compensating`, `completed`, `compensated`, `failed`).
    pub status: String,
    /// Its current step.
    pub step: String,
    /// The domain state.
    pub state: S,
    /// Commands awaiting their reply.
    pub pending: Vec<SagaRequest>,
    /// Running deadlines.
    pub timers: Vec<SagaTimer>,
    /// The first and the latest steps.
    pub history: Vec<SagaHistoryEntry>,
    /// When it started, ms.
    pub started_at: i64,
    /// When its current step began, ms.
    pub step_since: i64,
    /// When this record was written, ms.
    pub updated_at: i64,
    /// Deadlines fired so far.
    pub deadlines_fired: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{parse, round_trip};

    fn schema_of(file: &str) -> apache_avro::Schema {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../avro")
            .join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        parse(&text, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn types_match_their_schemas() {
        let meta = EventMetadata {
            event_id: "e".into(),
            aggregate_id: "a".into(),
            aggregate_version: 3,
            causation_id: "c".into(),
            correlation_id: "r".into(),
            occurred_at: 1_700_000_000_000,
            schema_version: 1,
        };
        assert_eq!(
            round_trip(&schema_of("causeway/types/EventMetadata.avsc"), &meta),
            Ok(meta)
        );
        let result = CommandResult {
            outcome: CommandOutcome::Rejected,
            reason: Some("no".into()),
            ..CommandResult::default()
        };
        assert_eq!(
            round_trip(
                &schema_of("causeway/command-results/CommandResult.avsc"),
                &result
            ),
            Ok(result)
        );
        let recent = RecentCommand {
            command_id: "c".into(),
            processed_at: 1,
            rejection_code: Some("conflict".into()),
            reason: Some("stale".into()),
            ..RecentCommand::default()
        };
        assert_eq!(
            round_trip(&schema_of("causeway/types/RecentCommand.avsc"), &recent),
            Ok(recent)
        );
    }

    #[test]
    fn a_drifted_type_is_caught() {
        #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
        struct Shorter {
            event_id: String,
        }
        let err = round_trip(
            &schema_of("causeway/types/EventMetadata.avsc"),
            &Shorter::default(),
        );
        assert!(
            err.as_ref()
                .err()
                .is_some_and(|e| e.contains("the type has fields")),
            "{err:?}"
        );
    }
}

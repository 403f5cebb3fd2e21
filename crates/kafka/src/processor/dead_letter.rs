//! Dead letters: a poison command record goes to `<group>.dlq` unchanged, inside the transaction, with
//! headers that say why and where it came from, so that it can be inspected and replayed.

use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;

use super::Run;
use crate::dead_letter::{Why, record};
use causeway_contracts::hosting::cut;

impl Run {
    /// Park `m` in the group's DLQ with why, inside the transaction.
    pub(super) fn dead_letter(
        &self,
        m: &BorrowedMessage<'_>,
        reason: &str,
        now: i64,
    ) -> Result<(), KafkaError> {
        let reason = cut(reason, self.limits.max_reason_bytes);
        tracing::warn!(
            topic = m.topic(),
            partition = m.partition(),
            offset = m.offset(),
            reason,
            "dead-lettering a command record"
        );
        let why = Why {
            reason,
            class: "poison",
            group: &self.config.group_id,
            at: now,
            attempts: 1,
            first_failure: now,
            behind: None,
            parks_key: false,
        };
        self.send(record(
            m,
            &self.dlq_topic,
            &why,
            self.record_limits.of(&self.dlq_topic),
            self.limits.max_id_bytes,
        ))
    }
}

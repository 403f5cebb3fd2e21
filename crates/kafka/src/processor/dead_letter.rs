//! Dead letters: a poison command record goes to `<group>.dlq` unchanged, inside the transaction, with
//! headers that say why and where it came from, so that it can be inspected and replayed.

use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::Run;
use causeway_contracts::hosting::cut;

/// Header names of a dead letter (the original headers are kept before them).
pub mod dlq_headers {
    /// Why the record could not be processed.
    pub const REASON: &str = "causeway.dlq.reason";
    /// Its error class (`poison`).
    pub const CLASS: &str = "causeway.dlq.class";
    /// The topic it was read from.
    pub const TOPIC: &str = "causeway.dlq.topic";
    /// Its partition there.
    pub const PARTITION: &str = "causeway.dlq.partition";
    /// Its offset there.
    pub const OFFSET: &str = "causeway.dlq.offset";
    /// The consumer group that gave up on it.
    pub const GROUP: &str = "causeway.dlq.group";
    /// When, in ms since the epoch.
    pub const AT: &str = "causeway.dlq.at";
    /// Set when the record's value was too large for the DLQ topic and left out (it stays at its
    /// topic, partition and offset): its size in bytes.
    pub const VALUE_OMITTED: &str = "causeway.dlq.value-omitted-bytes";
}

/// Room kept for a dead letter's own headers and the record's framing.
const DLQ_OVERHEAD: usize = 2048;

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
        let original = m.headers();
        let original_bytes: usize = original
            .map(|h| {
                h.iter()
                    .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                    .sum()
            })
            .unwrap_or(0);
        let key = m.key().map(|k| cut_bytes(k, self.limits.max_id_bytes));
        let room = self
            .record_limits
            .of(&self.dlq_topic)
            .saturating_sub(DLQ_OVERHEAD + reason.len() + key.map_or(0, <[u8]>::len));
        // The original headers and value when they fit; the record stays at its source either way.
        let keep_headers = original_bytes <= room;
        let payload = m
            .payload()
            .filter(|p| p.len() + if keep_headers { original_bytes } else { 0 } <= room);
        let mut h = OwnedHeaders::new();
        if let Some(original) = original.filter(|_| keep_headers) {
            for header in original.iter() {
                h = h.insert(header);
            }
        }
        let partition = m.partition().to_string();
        let offset = m.offset().to_string();
        let at = now.to_string();
        let omitted = match (m.payload(), payload) {
            (Some(p), None) => Some(p.len().to_string()),
            _ => None,
        };
        for (key, value) in [
            (dlq_headers::REASON, Some(reason)),
            (dlq_headers::CLASS, Some("poison")),
            (dlq_headers::TOPIC, Some(m.topic())),
            (dlq_headers::PARTITION, Some(partition.as_str())),
            (dlq_headers::OFFSET, Some(offset.as_str())),
            (dlq_headers::GROUP, Some(self.config.group_id.as_str())),
            (dlq_headers::AT, Some(at.as_str())),
            (dlq_headers::VALUE_OMITTED, omitted.as_deref()),
        ] {
            if let Some(value) = value {
                h = h.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
        }
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.dlq_topic).headers(h);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        self.send(record)
    }
}

/// At most `max` bytes of `bytes`.
fn cut_bytes(bytes: &[u8], max: usize) -> &[u8] {
    &bytes[..bytes.len().min(max)]
}

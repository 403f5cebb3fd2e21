//! The audit trail: every operator action (and every automatic redrive) is a `causeway.DeadLetterAction`
//! record on the audit topic, Avro through the registry, keyed by its action id, written before the
//! action is answered.

use std::time::Duration;

use causeway_contracts::wire::Codec;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

/// The record's full name (avro/causeway/dlq-audit/DeadLetterAction.avsc).
pub const RECORD: &str = "causeway.DeadLetterAction";

/// Letters per audit record: an action on more is written as several records with its id (each well
/// under the topic's largest record).
pub const LETTERS_PER_RECORD: usize = 500;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// Sent back to the source by an operator.
    #[serde(rename = "REPLAY")]
    Replay,
    /// Given up on by an operator.
    #[serde(rename = "DISCARD")]
    Discard,
    /// Sent back to the source by the reprocessor itself (a transient class).
    #[serde(rename = "REDRIVE")]
    Redrive,
}

/// One action, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    /// A unique id.
    pub action_id: String,
    /// What.
    pub action: Kind,
    /// Who.
    pub operator: String,
    /// When, ms.
    pub at: i64,
    /// The filter, as JSON, when the action named one.
    pub filter: Option<String>,
    /// Each letter and what became of it.
    pub letters: Vec<Outcome>,
}

/// What became of one letter.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The dead letter's id.
    pub letter_id: String,
    /// Its group.
    pub group: String,
    /// `<topic>/<partition>@<offset>` of the record.
    pub source: Option<String>,
    /// Its key.
    pub key: Option<String>,
    /// `replayed`, `discarded`, or why not.
    pub outcome: String,
}

/// Writes actions to the audit topic.
#[derive(Clone)]
pub struct Audit {
    producer: FutureProducer,
    codec: Codec,
    topic: String,
    kafka: causeway_kafka::KafkaConfig,
    /// The topic was seen to exist.
    seen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Audit {
    /// Actions to `topic`, encoded through `codec`.
    pub fn new(
        producer: FutureProducer,
        codec: Codec,
        topic: &str,
        kafka: causeway_kafka::KafkaConfig,
    ) -> Self {
        Self {
            producer,
            codec,
            topic: topic.to_string(),
            kafka,
            seen: std::sync::Arc::default(),
        }
    }

    /// Before an action: the audit topic is there (an action that could not be recorded is not
    /// started).
    pub async fn ready(&self) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        if self.seen.load(Ordering::Relaxed) {
            return Ok(());
        }
        match causeway_kafka::client::topic_exists(
            &self.kafka,
            &self.topic,
            Duration::from_secs(10),
        )
        .await
        {
            Ok(true) => {
                self.seen.store(true, Ordering::Relaxed);
                Ok(())
            }
            Ok(false) => Err(format!(
                "the audit topic {} does not exist (dlq.audit_topic; causeway topics apply creates it): nothing was done",
                self.topic
            )),
            Err(e) => Err(format!(
                "cannot check the audit topic {}: {e}; nothing was done",
                self.topic
            )),
        }
    }

    /// Record `action`, waiting until the broker has it: one record per [`LETTERS_PER_RECORD`]
    /// letters, each with the action's id (keyed by it: one partition, in order).
    pub async fn record(&self, action: &Action) -> Result<(), String> {
        let parts: Vec<&[Outcome]> = if action.letters.is_empty() {
            vec![&[]]
        } else {
            action.letters.chunks(LETTERS_PER_RECORD).collect()
        };
        for letters in parts {
            let part = Action {
                letters: letters.to_vec(),
                ..action.clone()
            };
            let bytes = self
                .codec
                .encode(&self.topic, RECORD, &part)
                .await
                .map_err(|e| format!("cannot encode the audit record: {e}"))?;
            self.producer
                .send(
                    FutureRecord::to(&self.topic)
                        .key(action.action_id.as_str())
                        .payload(&bytes),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| format!("cannot write to {}: {e}", self.topic))?;
        }
        Ok(())
    }
}

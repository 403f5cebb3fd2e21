//! Command results, read from the results topic, for the status API: a bounded map from command id to
//! its result, and a way to wait for one to arrive.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_contracts::hosting::DEAD_LETTERED;
use causeway_contracts::records::{CommandOutcome, CommandResult};
use causeway_contracts::wire::Codec;
use causeway_kafka::client::ReadsToEnd;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The results seen, newest `capacity` of them.
#[derive(Clone)]
pub struct Results {
    inner: Arc<Mutex<Inner>>,
    arrived: Arc<Notify>,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, CommandResult>,
    order: VecDeque<String>,
}

impl std::fmt::Debug for Results {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Results")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// A result as the API shows it.
pub trait Shown {
    /// The JSON body.
    fn to_json(&self) -> Value;
}

impl Shown for CommandResult {
    fn to_json(&self) -> Value {
        match self.outcome {
            CommandOutcome::Accepted => json!({
                "command_id": self.command_id, "status": "accepted",
                "aggregate_type": self.aggregate_type, "aggregate_id": self.aggregate_id,
                "version": self.new_version,
            }),
            // A command the processor could not process: parked in its DLQ, with the reason.
            CommandOutcome::Rejected if self.rejection_code.as_deref() == Some(DEAD_LETTERED) => {
                json!({
                    "command_id": self.command_id, "status": "dead_lettered",
                    "aggregate_type": self.aggregate_type, "aggregate_id": self.aggregate_id,
                    "reason": self.reason,
                })
            }
            CommandOutcome::Rejected => json!({
                "command_id": self.command_id, "status": "rejected",
                "aggregate_type": self.aggregate_type, "aggregate_id": self.aggregate_id,
                "code": self.rejection_code, "reason": self.reason,
            }),
        }
    }
}

impl Results {
    /// An empty map keeping at most `capacity` results.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            arrived: Arc::new(Notify::new()),
            capacity: capacity.max(1),
        }
    }

    /// Remember `result` (the first one per command id wins: a processor answers a resend the same).
    pub fn insert(&self, result: CommandResult) {
        {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if inner.by_id.contains_key(&result.command_id) {
                return;
            }
            inner.order.push_back(result.command_id.clone());
            inner.by_id.insert(result.command_id.clone(), result);
            while inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.by_id.remove(&old);
                }
            }
        }
        self.arrived.notify_waiters();
    }

    /// The result of `command_id`, waiting up to `wait` for it.
    pub async fn wait(&self, command_id: &str, wait: Duration) -> Option<CommandResult> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            if let Some(r) = self
                .inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .by_id
                .get(command_id)
            {
                return Some(r.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Read results from `consumer` for good. `caught_up` is told `true` once every partition was read
    /// to the end it had at start (the status API then knows every result since the lookback), `false`
    /// while the consumer fails (it is retried with backoff; the map keeps what it has). Records that do
    /// not decode are skipped (logged).
    pub async fn follow(
        self,
        consumer: StreamConsumer<ReadsToEnd>,
        codec: Codec,
        partitions: usize,
        caught_up: impl Fn(bool),
    ) {
        let mut at_end = std::collections::HashSet::new();
        let mut ready = false;
        let mut backoff = Duration::from_millis(100);
        loop {
            match consumer.recv().await {
                Err(KafkaError::PartitionEOF(p)) => {
                    at_end.insert(p);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading command results failed; retrying");
                    if ready {
                        ready = false;
                        caught_up(false);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    // Assigned again where it stands, each partition reports its end anew (librdkafka
                    // reports an end once per offset): readiness comes back once it has caught up.
                    at_end.clear();
                    if let Err(e) = consumer.position().and_then(|p| consumer.assign(&p)) {
                        tracing::warn!(error = %e, "cannot re-assign the results topic");
                    }
                    continue;
                }
                Ok(message) => {
                    if let Some(payload) = message.payload() {
                        self.decode_into(&codec, payload, &message).await;
                    }
                }
            }
            backoff = Duration::from_millis(100);
            if !ready && at_end.len() >= partitions {
                ready = true;
                caught_up(true);
            }
        }
    }

    /// Decode a result into the map, asking again while the registry fails (a result skipped would
    /// leave its command "pending" for good); a record that can never decode is skipped, logged.
    async fn decode_into(
        &self,
        codec: &Codec,
        payload: &[u8],
        message: &rdkafka::message::BorrowedMessage<'_>,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match codec.decode::<CommandResult>(payload).await {
                Ok(decoded) => return self.insert(decoded.value),
                Err(causeway_contracts::wire::WireError::Registry(e)) => {
                    tracing::warn!(error = %e, "the registry failed while reading a command result; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::warn!(
                        topic = message.topic(), partition = message.partition(), offset = message.offset(),
                        error = %e, "skipped a command result that does not decode"
                    );
                    return;
                }
            }
        }
    }

    /// Assign `consumer` every partition of `topic` from `lookback` ago (the end where nothing is that
    /// recent), so the map holds the results since then. Returns the partition count.
    pub fn start_from(
        consumer: &StreamConsumer<ReadsToEnd>,
        topic: &str,
        lookback: Duration,
    ) -> Result<usize, KafkaError> {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let since = std::time::SystemTime::now()
            .checked_sub(lookback)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let mut wanted = rdkafka::TopicPartitionList::new();
        for t in metadata.topics() {
            for p in t.partitions() {
                wanted.add_partition_offset(topic, p.id(), rdkafka::Offset::Offset(since))?;
            }
        }
        let partitions = wanted.count();
        if partitions == 0 {
            return Err(KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::UnknownTopic,
            ));
        }
        let found = consumer.offsets_for_times(wanted, Duration::from_secs(10))?;
        let mut assignment = rdkafka::TopicPartitionList::new();
        for e in found.elements() {
            let offset = match e.offset() {
                rdkafka::Offset::Offset(o) if o >= 0 => rdkafka::Offset::Offset(o),
                _ => rdkafka::Offset::End,
            };
            assignment.add_partition_offset(topic, e.partition(), offset)?;
        }
        consumer.assign(&assignment)?;
        Ok(partitions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str) -> CommandResult {
        CommandResult {
            command_id: id.into(),
            outcome: CommandOutcome::Accepted,
            new_version: Some(1),
            ..CommandResult::default()
        }
    }

    #[tokio::test]
    async fn bounded_and_awaitable() {
        let results = Results::new(2);
        assert!(results.wait("a", Duration::from_millis(10)).await.is_none());
        let waiter = {
            let results = results.clone();
            tokio::spawn(async move { results.wait("a", Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        results.insert(result("a"));
        assert_eq!(
            waiter.await.ok().flatten().map(|r| r.command_id),
            Some("a".into())
        );
        results.insert(result("b"));
        results.insert(result("c"));
        assert!(
            results.wait("a", Duration::ZERO).await.is_none(),
            "the oldest left"
        );
        assert_eq!(
            results
                .wait("c", Duration::ZERO)
                .await
                .map(|r| r.to_json()["status"].clone()),
            Some(json!("accepted"))
        );
    }

    #[test]
    fn a_dead_lettered_command_shows_as_such_with_its_reason() {
        let r = CommandResult {
            command_id: "c".into(),
            outcome: CommandOutcome::Rejected,
            rejection_code: Some(DEAD_LETTERED.into()),
            reason: Some("the order handler panicked".into()),
            ..CommandResult::default()
        };
        let shown = r.to_json();
        assert_eq!(shown["status"], json!("dead_lettered"));
        assert_eq!(shown["reason"], json!("the order handler panicked"));
    }
}

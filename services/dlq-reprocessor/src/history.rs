//! The event history: what happened to one aggregate, or to one flow (a correlation id).
//!
//! - The processor's command results (`causeway.command-results`, which carry where their command is)
//!   are indexed as they come, for `history.ttl_hours`: per result a hash; per aggregate and per
//!   correlation id the results in time order. Dead letters are filed under their record's
//!   correlation id too (read from the record, when it decodes).
//! - An aggregate's events are read from its events topic when asked: the partition its id lives on
//!   (murmur2, as every producer of the suite places keys), from its start, each decoded through the
//!   registry with its metadata and trace id; each command is read back at its offset and decoded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use causeway_contracts::records::CommandResult;
use causeway_contracts::upcast::Upcasters;
use causeway_contracts::wire::Codec;
use causeway_kafka::KafkaConfig;
use causeway_kafka::config::OffsetMode;
use causeway_kafka::headers::command as at;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use redis::aio::ConnectionManager;
use serde_json::{Value, json};

use crate::index::{Letter, Position};
use crate::records;

/// How long reading an aggregate's events may take.
const SCAN_TIMEOUT: Duration = Duration::from_secs(60);

/// One command result as indexed.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Where the result is (its id: `<topic>:<partition>:<offset>`).
    pub id: String,
    /// The result.
    pub result: CommandResult,
    /// Where its command is.
    pub command: Option<Position>,
    /// Its trace id.
    pub trace_id: Option<String>,
}

/// The trace id of a record's `traceparent`.
pub fn trace_id_of<M: Message>(m: &M) -> Option<String> {
    let h = m.headers()?;
    let tp = causeway_kafka::headers::last_value(h, "traceparent")?;
    let tp = std::str::from_utf8(tp).ok()?;
    tp.split('-')
        .nth(1)
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
}

fn header_text<M: Message>(m: &M, name: &str) -> Option<String> {
    let h = m.headers()?;
    causeway_kafka::headers::last_value(h, name)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_string)
}

impl Entry {
    /// The entry of result record `m`, decoded as `result`.
    pub fn of<M: Message>(m: &M, result: CommandResult) -> Self {
        let command = match (
            header_text(m, at::TOPIC),
            header_text(m, at::PARTITION).and_then(|p| p.parse().ok()),
            header_text(m, at::OFFSET).and_then(|o| o.parse().ok()),
        ) {
            (Some(topic), Some(partition), Some(offset)) => Some(Position {
                topic,
                partition,
                offset,
            }),
            _ => None,
        };
        Entry {
            id: format!("{}:{}:{}", m.topic(), m.partition(), m.offset()),
            result,
            command,
            trace_id: trace_id_of(m),
        }
    }
}

/// The history index in Redis, under the index's prefix.
#[derive(Clone)]
pub struct History {
    connection: ConnectionManager,
    prefix: String,
    ttl_seconds: u64,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl History {
    /// Results kept `ttl_seconds`.
    pub fn new(connection: ConnectionManager, prefix: &str, ttl_seconds: u64) -> Self {
        Self {
            connection,
            prefix: prefix.to_string(),
            ttl_seconds,
        }
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    /// Index `entries` (again is harmless).
    pub async fn add(&self, entries: &[Entry]) -> Result<(), redis::RedisError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for e in entries {
            let r = &e.result;
            let hash = self.key(&["r", &e.id]);
            let mut fields: Vec<(&str, String)> = vec![
                ("id", e.id.clone()),
                ("command_id", r.command_id.clone()),
                ("correlation_id", r.correlation_id.clone()),
                ("aggregate_type", r.aggregate_type.clone()),
                ("aggregate_id", r.aggregate_id.clone()),
                ("outcome", format!("{:?}", r.outcome).to_ascii_lowercase()),
                ("processed_at", r.processed_at.to_string()),
            ];
            for (k, v) in [
                ("new_version", r.new_version.map(|v| v.to_string())),
                ("rejection_code", r.rejection_code.clone()),
                ("reason", r.reason.clone()),
                ("trace_id", e.trace_id.clone()),
                ("command_topic", e.command.as_ref().map(|c| c.topic.clone())),
                (
                    "command_partition",
                    e.command.as_ref().map(|c| c.partition.to_string()),
                ),
                (
                    "command_offset",
                    e.command.as_ref().map(|c| c.offset.to_string()),
                ),
            ] {
                if let Some(v) = v {
                    fields.push((k, v));
                }
            }
            pipe.cmd("HSET").arg(&hash).arg(fields).ignore();
            pipe.cmd("EXPIRE").arg(&hash).arg(self.ttl_seconds).ignore();
            for set in [
                self.key(&["agg", &r.aggregate_type, &r.aggregate_id]),
                self.key(&["corr", &r.correlation_id]),
            ] {
                pipe.cmd("ZADD")
                    .arg(&set)
                    .arg(r.processed_at)
                    .arg(format!("r/{}", e.id))
                    .ignore();
                pipe.cmd("EXPIRE").arg(&set).arg(self.ttl_seconds).ignore();
            }
        }
        let mut c = self.connection.clone();
        pipe.query_async::<()>(&mut c).await
    }

    /// File dead letter `letter` under `correlation_id`.
    pub async fn file_letter(
        &self,
        correlation_id: &str,
        letter: &Letter,
    ) -> Result<(), redis::RedisError> {
        let set = self.key(&["corr", correlation_id]);
        let mut c = self.connection.clone();
        redis::pipe()
            .cmd("ZADD")
            .arg(&set)
            .arg(letter.at)
            .arg(format!("l/{}", letter.id))
            .ignore()
            .cmd("EXPIRE")
            .arg(&set)
            .arg(self.ttl_seconds)
            .ignore()
            .query_async::<()>(&mut c)
            .await
    }

    /// The latest `limit` members of a set: results (hash fields) and dead letter ids, oldest first.
    async fn members(
        &self,
        set: &str,
        limit: usize,
    ) -> Result<(Vec<HashMap<String, String>>, Vec<String>), redis::RedisError> {
        let mut c = self.connection.clone();
        let mut members: Vec<String> = redis::cmd("ZRANGE")
            .arg(set)
            .arg(0)
            .arg(limit.saturating_sub(1))
            .arg("REV")
            .query_async(&mut c)
            .await?;
        members.reverse();
        let mut results = Vec::new();
        let mut letters = Vec::new();
        let mut pipe = redis::pipe();
        for m in &members {
            if let Some(id) = m.strip_prefix("r/") {
                pipe.cmd("HGETALL").arg(self.key(&["r", id]));
            } else if let Some(id) = m.strip_prefix("l/") {
                letters.push(id.to_string());
            }
        }
        let fetched: Vec<HashMap<String, String>> = if letters.len() == members.len() {
            Vec::new()
        } else {
            pipe.query_async(&mut c).await?
        };
        results.extend(fetched.into_iter().filter(|f| !f.is_empty()));
        Ok((results, letters))
    }

    /// The results of aggregate `aggregate`/`id`, oldest first.
    pub async fn of_aggregate(
        &self,
        aggregate: &str,
        id: &str,
        limit: usize,
    ) -> Result<Vec<HashMap<String, String>>, redis::RedisError> {
        Ok(self
            .members(&self.key(&["agg", aggregate, id]), limit)
            .await?
            .0)
    }

    /// The results and dead letter ids of correlation id `id`, oldest first.
    pub async fn of_correlation(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<(Vec<HashMap<String, String>>, Vec<String>), redis::RedisError> {
        self.members(&self.key(&["corr", id]), limit).await
    }
}

/// The correlation id of a decoded command or event: a command's `correlation_id` (its `command_id`
/// when none), an event's `metadata.correlation_id`.
pub fn correlation_of(value: &Value) -> Option<String> {
    if let Some(c) = value["metadata"]["correlation_id"].as_str() {
        return Some(c.to_string());
    }
    match (&value["correlation_id"], value["command_id"].as_str()) {
        (Value::String(c), _) => Some(c.clone()),
        (_, Some(id)) => Some(id.to_string()),
        _ => None,
    }
}

/// A record's value decoded to JSON: (record full name, value), or why not.
pub async fn decode(codec: &Codec, bytes: Option<&[u8]>) -> Result<(String, Value), String> {
    let bytes = bytes.ok_or("the record has no value")?;
    let d = codec
        .decode_value(bytes, &Upcasters::default())
        .await
        .map_err(|e| e.to_string())?;
    let v = Value::try_from(d.value).map_err(|e| e.to_string())?;
    Ok((d.full_name, v))
}

/// Every record keyed `key` on `topic`'s partition for that key, from its start to its end, at most
/// `max` (the latest kept). Blocking: call from a blocking task. `(records, truncated)`.
pub fn scan_key(
    kafka: &KafkaConfig,
    topic: &str,
    key: &[u8],
    max: usize,
) -> Result<(Vec<OwnedMessage>, bool), String> {
    let consumer: BaseConsumer = kafka
        .consumer_config(
            "history",
            "dlq-reprocessor-history",
            OffsetMode::Transactional,
        )
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), SCAN_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if partitions == 0 {
        return Err(format!("there is no topic {topic}"));
    }
    let partitions = i32::try_from(partitions).map_err(|e| e.to_string())?;
    let partition = causeway_kafka::partitioner::home_partition(key, partitions);
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, SCAN_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let mut out: std::collections::VecDeque<OwnedMessage> = std::collections::VecDeque::new();
    let mut truncated = false;
    if high <= low {
        return Ok((Vec::new(), false));
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(low))
        .map_err(|e| e.to_string())?;
    consumer.assign(&list).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + SCAN_TIMEOUT;
    loop {
        if Instant::now() > deadline {
            return Err(format!(
                "{topic}/{partition} was not read to its end within {SCAN_TIMEOUT:?}"
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let done = m.offset() + 1 >= high;
                if m.key() == Some(key) {
                    out.push_back(m.detach());
                    if out.len() > max {
                        out.pop_front();
                        truncated = true;
                    }
                }
                if done {
                    break;
                }
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => {
                // read_committed: the end may be a transaction marker, never delivered.
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|p| {
                        p.find_partition(topic, partition)
                            .and_then(|e| match e.offset() {
                                Offset::Offset(o) => Some(o),
                                _ => None,
                            })
                    })
                    .unwrap_or(0);
                if position >= high {
                    break;
                }
            }
        }
    }
    Ok((out.into_iter().collect(), truncated))
}

/// An event as the history shows it.
pub async fn event_json(codec: &Codec, m: &OwnedMessage) -> Value {
    let mut v = json!({
        "offset": m.offset(),
        "partition": m.partition(),
        "timestamp": m.timestamp().to_millis(),
        "trace_id": trace_id_of(m),
        // A record sent again by the reprocessor (the event store keeps both).
        "replay_of": header_text(m, crate::index::REPLAY_OF),
    });
    match decode(codec, m.payload()).await {
        Ok((name, data)) => {
            v["type"] = json!(name);
            v["version"] = data["metadata"]["aggregate_version"].clone();
            v["event_id"] = data["metadata"]["event_id"].clone();
            v["command_id"] = data["metadata"]["causation_id"].clone();
            v["correlation_id"] = data["metadata"]["correlation_id"].clone();
            v["occurred_at"] = data["metadata"]["occurred_at"].clone();
            v["data"] = data;
        }
        Err(e) => v["error"] = json!(e),
    }
    v
}

/// A result (as indexed) as the history shows it, with its command read back and decoded.
pub async fn command_json(
    codec: &Codec,
    result: &HashMap<String, String>,
    commands: &HashMap<(String, i32, i64), Result<OwnedMessage, records::Unreadable>>,
) -> Value {
    let text = |k: &str| result.get(k).cloned();
    let number = |k: &str| result.get(k).and_then(|v| v.parse::<i64>().ok());
    let mut v = json!({
        "command_id": text("command_id"),
        "correlation_id": text("correlation_id"),
        "aggregate_type": text("aggregate_type"),
        "aggregate_id": text("aggregate_id"),
        "outcome": text("outcome"),
        "new_version": number("new_version"),
        "rejection_code": text("rejection_code"),
        "reason": text("reason"),
        "processed_at": number("processed_at"),
        "trace_id": text("trace_id"),
    });
    if let (Some(topic), Some(partition), Some(offset)) = (
        text("command_topic"),
        number("command_partition").and_then(|p| i32::try_from(p).ok()),
        number("command_offset"),
    ) {
        v["command_at"] = json!({ "topic": topic, "partition": partition, "offset": offset });
        match commands.get(&(topic, partition, offset)) {
            Some(Ok(m)) => match decode(codec, m.payload()).await {
                Ok((name, data)) => {
                    v["type"] = json!(name);
                    v["data"] = data;
                }
                Err(e) => v["error"] = json!(e),
            },
            Some(Err(e)) => v["error"] = json!(e.to_string()),
            None => {}
        }
    }
    v
}

/// The positions of the commands of `results`.
pub fn command_positions(results: &[HashMap<String, String>]) -> Vec<Position> {
    results
        .iter()
        .filter_map(|r| {
            Some(Position {
                topic: r.get("command_topic")?.clone(),
                partition: r.get("command_partition")?.parse().ok()?,
                offset: r.get("command_offset")?.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correlation_id_is_found_in_commands_and_events() {
        assert_eq!(
            correlation_of(&json!({"command_id": "c1", "correlation_id": null})).as_deref(),
            Some("c1")
        );
        assert_eq!(
            correlation_of(&json!({"command_id": "c1", "correlation_id": "flow"})).as_deref(),
            Some("flow")
        );
        assert_eq!(
            correlation_of(&json!({"metadata": {"correlation_id": "flow"}})).as_deref(),
            Some("flow")
        );
        assert_eq!(correlation_of(&json!({"sku": "x"})), None);
    }
}

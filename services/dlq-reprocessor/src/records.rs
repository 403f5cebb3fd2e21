//! The records behind the index: read back from a topic at their offsets (a dead letter, or its
//! source when the value did not fit the DLQ), and replayed to their source partition.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use causeway_kafka::KafkaConfig;
use causeway_kafka::config::OffsetMode;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use causeway_kafka::parking::headers as parking;

use crate::index::{DLQ_PREFIX, Position, REPLAY_AT, REPLAY_COUNT, REPLAY_OF, REPLAY_PREFIX};

/// How long reading records back may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a record could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// Retention deleted it (its offset is below the partition's first).
    #[error("{0} is no longer on its topic (deleted by retention)")]
    Gone(String),
    /// Kafka did not give it in time, or failed.
    #[error("cannot read {0} from kafka: {1}")]
    Kafka(String, String),
}

fn name(p: &Position) -> String {
    format!("{}/{}@{}", p.topic, p.partition, p.offset)
}

/// Read the records at `positions` (committed ones only). Blocking: call from a blocking task.
pub fn fetch(
    kafka: &KafkaConfig,
    positions: &[Position],
) -> HashMap<(String, i32, i64), Result<OwnedMessage, Unreadable>> {
    let mut out = HashMap::new();
    let mut wanted: BTreeMap<(String, i32), Vec<i64>> = BTreeMap::new();
    for p in positions {
        wanted
            .entry((p.topic.clone(), p.partition))
            .or_default()
            .push(p.offset);
    }
    let consumer: Result<BaseConsumer, _> = kafka
        .consumer_config(
            "dlq-fetch",
            "dlq-reprocessor-fetch",
            OffsetMode::Transactional,
        )
        .set("enable.auto.commit", "false")
        .create();
    let consumer = match consumer {
        Ok(c) => c,
        Err(e) => {
            for p in positions {
                out.insert(
                    (p.topic.clone(), p.partition, p.offset),
                    Err(Unreadable::Kafka(name(p), e.to_string())),
                );
            }
            return out;
        }
    };
    for ((topic, partition), mut offsets) in wanted {
        offsets.sort_unstable();
        offsets.dedup();
        let fail = |out: &mut HashMap<_, _>, offsets: &[i64], why: &dyn Fn(i64) -> Unreadable| {
            for o in offsets {
                out.insert((topic.clone(), partition, *o), Err(why(*o)));
            }
        };
        let at = |o: i64| {
            name(&Position {
                topic: topic.clone(),
                partition,
                offset: o,
            })
        };
        let (low, high) = match consumer.fetch_watermarks(&topic, partition, FETCH_TIMEOUT) {
            Ok(w) => w,
            Err(e) => {
                fail(&mut out, &offsets, &|o| {
                    Unreadable::Kafka(at(o), e.to_string())
                });
                continue;
            }
        };
        let (gone, readable): (Vec<i64>, Vec<i64>) = offsets.iter().partition(|o| **o < low);
        fail(&mut out, &gone, &|o| Unreadable::Gone(at(o)));
        let readable: Vec<i64> = readable.into_iter().filter(|o| *o < high).collect();
        let Some(first) = readable.first().copied() else {
            continue;
        };
        let mut list = TopicPartitionList::new();
        if let Err(e) = list.add_partition_offset(&topic, partition, Offset::Offset(first)) {
            fail(&mut out, &readable, &|o| {
                Unreadable::Kafka(at(o), e.to_string())
            });
            continue;
        }
        if let Err(e) = consumer.assign(&list) {
            fail(&mut out, &readable, &|o| {
                Unreadable::Kafka(at(o), e.to_string())
            });
            continue;
        }
        let last = readable.last().copied().unwrap_or(first);
        let mut left: std::collections::BTreeSet<i64> = readable.iter().copied().collect();
        let deadline = Instant::now() + FETCH_TIMEOUT;
        while !left.is_empty() && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) if m.topic() == topic && m.partition() == partition => {
                    if left.remove(&m.offset()) {
                        out.insert((topic.clone(), partition, m.offset()), Ok(m.detach()));
                    }
                    if m.offset() >= last {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::debug!(error = %e, "reading records back"),
                None => {}
            }
        }
        let left: Vec<i64> = left.into_iter().collect();
        fail(&mut out, &left, &|o| {
            Unreadable::Kafka(at(o), "not read in time (or not a committed record)".into())
        });
    }
    out
}

/// Everything a replay sends: the record as it came, to its source topic and partition.
#[derive(Debug, Clone)]
pub struct Replay {
    /// Where to.
    pub to: Position,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Option<Vec<u8>>,
    /// Its original headers and the replay's own.
    pub headers: OwnedHeaders,
}

/// A record's part in a per-key release (crates/kafka's `parking`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The offset of the head it is released from.
    pub head: i64,
    /// On the last record of the release: the last offset ever parked behind the head.
    pub through: Option<i64>,
    /// The group it is released for.
    pub group: String,
}

/// The replay of dead letter `letter_id` (record `dead_letter`, value from `value` when the dead
/// letter left it out) to `to`, the record's `count`th replay; with `release`, part of a per-key
/// release.
pub fn replay(
    letter_id: &str,
    dead_letter: &OwnedMessage,
    value: Option<&[u8]>,
    to: &Position,
    count: u32,
    release: Option<Release>,
    now: i64,
) -> Replay {
    let mut headers = OwnedHeaders::new();
    if let Some(hs) = dead_letter
        .headers()
        .and_then(causeway_kafka::headers::readable)
    {
        for h in hs {
            if !h.key.starts_with(DLQ_PREFIX) && !h.key.starts_with(REPLAY_PREFIX) {
                headers = headers.insert(h);
            }
        }
    }
    let count = count.to_string();
    let now = now.to_string();
    let head = release.as_ref().map(|r| r.head.to_string());
    let through = release
        .as_ref()
        .and_then(|r| r.through)
        .map(|t| t.to_string());
    let mut added = vec![
        (REPLAY_COUNT, count.as_str()),
        (REPLAY_OF, letter_id),
        (REPLAY_AT, now.as_str()),
    ];
    if let (Some(r), Some(head)) = (&release, &head) {
        added.push((parking::RELEASE, head.as_str()));
        added.push((parking::GROUP, r.group.as_str()));
    }
    if let Some(through) = &through {
        added.push((parking::THROUGH, through.as_str()));
    }
    for (key, value) in added {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    Replay {
        to: to.clone(),
        key: dead_letter.key().map(<[u8]>::to_vec),
        value: value.or(dead_letter.payload()).map(<[u8]>::to_vec),
        headers,
    }
}

/// Send `value` keyed `key` to `topic` (its partition by the key), waiting until the broker has it.
pub async fn send_raw(
    producer: &FutureProducer,
    topic: &str,
    key: &[u8],
    value: &[u8],
) -> Result<(), String> {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(30),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| format!("cannot write to {topic}: {e}"))
}

/// Hand `replay` to the producer (acks=all, idempotent), waiting while its queue is full, so that
/// records handed over one after the other keep their order; its delivery to await.
pub async fn enqueue(
    producer: &FutureProducer,
    replay: Replay,
) -> Result<rdkafka::producer::DeliveryFuture, String> {
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&replay.to.topic)
        .partition(replay.to.partition)
        .headers(replay.headers);
    if let Some(k) = &replay.key {
        record = record.key(k.as_slice());
    }
    if let Some(v) = &replay.value {
        record = record.payload(v.as_slice());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                back,
            )) if Instant::now() < deadline => {
                record = back;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err((e, _)) => return Err(e.to_string()),
        }
    }
}

/// Wait until the broker has the record `delivery` is for.
pub async fn delivered(delivery: rdkafka::producer::DeliveryFuture) -> Result<(), String> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e.to_string()),
        Err(_) => Err("the producer went away before the delivery report".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;
    use rdkafka::message::Headers;

    #[test]
    fn a_replay_keeps_the_original_headers_and_replaces_the_suites() {
        let original = OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            })
            .insert(Header {
                key: REPLAY_COUNT,
                value: Some("1"),
            })
            .insert(Header {
                key: "causeway.dlq.reason",
                value: Some("bad"),
            });
        let m = OwnedMessage::new(
            Some(b"v".to_vec()),
            Some(b"k".to_vec()),
            "g.dlq".into(),
            Timestamp::CreateTime(1),
            0,
            9,
            Some(original),
        );
        let to = Position {
            topic: "t".into(),
            partition: 4,
            offset: 3,
        };
        let r = replay("g.dlq:0:9", &m, None, &to, 2, None, 77);
        let released = replay(
            "g.dlq:0:9",
            &m,
            None,
            &to,
            0,
            Some(Release {
                head: 3,
                through: Some(5),
                group: "g".into(),
            }),
            77,
        );
        let names: Vec<String> = released.headers.iter().map(|h| h.key.to_string()).collect();
        assert!(
            names.iter().any(|n| n == parking::RELEASE)
                && names.iter().any(|n| n == parking::GROUP)
                && names.iter().any(|n| n == parking::THROUGH),
            "{names:?}"
        );
        let got: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "traceparent".to_string(),
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string()
                ),
                (REPLAY_COUNT.into(), "2".into()),
                (REPLAY_OF.into(), "g.dlq:0:9".into()),
                (REPLAY_AT.into(), "77".into()),
            ]
        );
        assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.to.partition, 4);
    }
}

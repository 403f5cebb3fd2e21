//! How far a consumer group is behind on its topics, from outside the group: per partition, the end a
//! read_committed reader sees (the last stable offset), the group's committed offset, the records in
//! between and how old the oldest of them is (its timestamp). What `causeway projections status`
//! shows; the consumers themselves export the same as metrics (`causeway_consumer_lag_*`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::{KafkaConfig, OffsetMode};
use crate::error::Error;

/// The lag of one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The group's committed offset (none: nothing committed yet).
    pub committed: Option<i64>,
    /// Where a read_committed reader ends (the last stable offset).
    pub end: i64,
    /// Records from the committed offset (or the start) to the end.
    pub records: i64,
    /// How long ago the oldest record not handled was written, in seconds (none when nothing waits,
    /// or it could not be read).
    pub seconds: Option<f64>,
}

/// The lag of `group` on every partition of `topics`. A topic that does not exist is an error.
pub fn group_lag(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<PartitionLag>, Error> {
    let client = |what: &'static str| move |source| Error::Client { what, source };
    // A consumer of the group that never subscribes: it reads the group's offsets, it does not join.
    let offsets: BaseConsumer = kafka
        .consumer_config("lag", group, OffsetMode::Transactional)
        .create()
        .map_err(client("lag consumer"))?;
    let reader: BaseConsumer = kafka
        .consumer_config(
            "lag-reader",
            &format!("{group}-lag-reader"),
            OffsetMode::Transactional,
        )
        .create()
        .map_err(client("lag reader"))?;
    let mut list = TopicPartitionList::new();
    let mut ends = Vec::new();
    for topic in topics {
        let metadata = offsets
            .fetch_metadata(Some(topic), timeout)
            .map_err(|source| Error::Operation {
                operation: "fetch topic metadata",
                source,
            })?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(Error::MissingTopic(topic.clone()));
        }
        for p in partitions {
            let (low, end) = offsets
                .fetch_watermarks(topic, p, timeout)
                .map_err(|source| Error::Operation {
                    operation: "fetch watermarks",
                    source,
                })?;
            list.add_partition(topic, p);
            ends.push((topic.clone(), p, low, end));
        }
    }
    let committed =
        offsets
            .committed_offsets(list, timeout)
            .map_err(|source| Error::Operation {
                operation: "read the group's committed offsets",
                source,
            })?;
    let mut out = Vec::with_capacity(ends.len());
    for (topic, partition, low, end) in ends {
        let at = committed
            .find_partition(&topic, partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        let from = at.unwrap_or(low).max(low);
        let records = (end - from).max(0);
        let seconds = if records > 0 {
            oldest_age(&reader, &topic, partition, from, timeout)
        } else {
            None
        };
        out.push(PartitionLag {
            topic,
            partition,
            committed: at,
            end,
            records,
            seconds,
        });
    }
    Ok(out)
}

/// Seconds since the record at `offset` (or the next one a read_committed reader sees) was written.
fn oldest_age(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Option<f64> {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(offset))
        .ok()?;
    reader.assign(&list).ok()?;
    let deadline = std::time::Instant::now() + timeout.min(Duration::from_secs(5));
    while std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
            let written = m.timestamp().to_millis()?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()?
                .as_millis();
            let now = i64::try_from(now).ok()?;
            return Some(((now - written).max(0) as f64) / 1000.0);
        }
    }
    None
}

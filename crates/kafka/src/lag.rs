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
        for (p, low, end) in partition_ends(&offsets, topic, timeout)? {
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
        let mut records = (end - from).max(0);
        let mut seconds = None;
        if records > 0 {
            match oldest(&reader, &topic, partition, (from, end), timeout) {
                // Only transaction markers or aborted records are left: nothing to handle.
                Oldest::Nothing => records = 0,
                Oldest::Age(s) => seconds = Some(s),
                Oldest::Unknown => {}
            }
        }
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

/// What waits at an offset.
enum Oldest {
    /// No record a read_committed reader sees (transaction markers, aborted records).
    Nothing,
    /// A record written this many seconds ago.
    Age(f64),
    /// It could not be read in time.
    Unknown,
}

/// The oldest record a read_committed reader sees from `offset` on (before `end`), and how old it is.
fn oldest(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    (offset, end): (i64, i64),
    timeout: Duration,
) -> Oldest {
    let mut list = TopicPartitionList::new();
    if list
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .is_err()
        || reader.assign(&list).is_err()
    {
        return Oldest::Unknown;
    }
    let deadline = std::time::Instant::now() + timeout.min(Duration::from_secs(5));
    while std::time::Instant::now() < deadline {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let Some(written) = m.timestamp().to_millis() else {
                    return Oldest::Unknown;
                };
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    .unwrap_or(0);
                return Oldest::Age(((now - written).max(0) as f64) / 1000.0);
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Oldest::Nothing,
            // librdkafka moves the position past transaction markers without a record (and without
            // a partition end event when a marker is all there is): at the end, nothing waits.
            _ => {
                let at = reader.position().ok().and_then(|p| {
                    p.find_partition(topic, partition)
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        })
                });
                if at.is_some_and(|o| o >= end) {
                    return Oldest::Nothing;
                }
            }
        }
    }
    Oldest::Unknown
}

/// Each partition of `topic`: (partition, low watermark, end a read_committed reader sees, i.e. the last
/// stable offset). A topic that does not exist is [`Error::MissingTopic`].
pub fn partition_ends<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(i32, i64, i64)>, Error> {
    let metadata = consumer
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
        return Err(Error::MissingTopic(topic.to_string()));
    }
    let mut out = Vec::with_capacity(partitions.len());
    for p in partitions {
        let (low, end) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(|source| Error::Operation {
                operation: "fetch watermarks",
                source,
            })?;
        out.push((p, low, end));
    }
    Ok(out)
}

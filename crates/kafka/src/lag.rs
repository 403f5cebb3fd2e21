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

/// Where a consumer's lag is counted from: the offset it stored (a consumer that stores offsets once
/// the effect is durable) or the position the application has reached (the transactional processor:
/// its offsets are committed inside its transactions, where librdkafka's statistics do not see them,
/// and it handles every record it polls in the transaction that follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagFrom {
    /// librdkafka's `consumer_lag_stored`.
    Stored,
    /// The last stable offset minus the application's position.
    Position,
}

/// Per topic, per partition.
type ByPartition<T> = std::collections::HashMap<String, std::collections::HashMap<i32, T>>;

/// A consumer's lag per group, topic and partition (`causeway_consumer_lag_records` and
/// `causeway_consumer_lag_seconds`): records from librdkafka's statistics, time from the timestamps of
/// the records handled and from when records were first seen waiting. One per consumer, kept in its
/// context.
#[derive(Debug)]
pub struct ConsumerLag {
    group: String,
    from: LagFrom,
    records: prometheus::IntGaugeVec,
    seconds: prometheus::GaugeVec,
    /// Records waiting, as of the last statistics (partitions not fetched absent).
    waiting: std::sync::Mutex<ByPartition<i64>>,
    /// The timestamp of the last record handled.
    handled: std::sync::Mutex<ByPartition<i64>>,
    /// Since when records have been waiting (absent: none waits).
    waiting_since: std::sync::Mutex<ByPartition<i64>>,
}

impl ConsumerLag {
    /// The lag of `group`, its metrics registered in `registry`.
    pub fn new(
        registry: &prometheus::Registry,
        group: &str,
        from: LagFrom,
    ) -> Result<Self, prometheus::Error> {
        use causeway_observe::metrics::names;
        let records = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                names::CONSUMER_LAG_RECORDS,
                "Records not yet handled, per assigned partition (its end, the last stable offset, minus the offset handled).",
            ),
            &["group", "topic", "partition"],
        )?;
        let seconds = prometheus::GaugeVec::new(
            prometheus::Opts::new(
                names::CONSUMER_LAG_SECONDS,
                "How long the oldest waiting record has been waiting at least, per assigned partition: 0 when none waits, else now minus the later of the last handled record's timestamp and when records were first seen waiting.",
            ),
            &["group", "topic", "partition"],
        )?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(seconds.clone()))?;
        Ok(Self {
            group: group.to_string(),
            from,
            records,
            seconds,
            waiting: std::sync::Mutex::default(),
            handled: std::sync::Mutex::default(),
            waiting_since: std::sync::Mutex::default(),
        })
    }

    /// librdkafka's statistics (every `statistics.interval.ms`): the records waiting on each partition
    /// being fetched.
    pub fn statistics(&self, statistics: &rdkafka::Statistics) {
        let mut waiting: ByPartition<i64> = std::collections::HashMap::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.fetch_state == "none" {
                    continue;
                }
                let n = match self.from {
                    LagFrom::Stored if p.consumer_lag_stored >= 0 => p.consumer_lag_stored,
                    // Nothing stored or committed yet on a partition being fetched (a new group whose
                    // first batch is not done): it reads from the log's start (`auto.offset.reset`
                    // is earliest, and guarded), so all of it waits. Not for a partition revoked
                    // (fetch state stopped), whose stored offset librdkafka forgets.
                    LagFrom::Stored
                        if p.fetch_state == "active"
                            && p.stored_offset < 0
                            && p.committed_offset < 0
                            && p.ls_offset >= 0
                            && p.lo_offset >= 0 =>
                    {
                        (p.ls_offset - p.lo_offset).max(0)
                    }
                    LagFrom::Position if p.app_offset >= 0 && p.ls_offset >= 0 => {
                        (p.ls_offset - p.app_offset).max(0)
                    }
                    _ => continue,
                };
                waiting
                    .entry(topic.clone())
                    .or_default()
                    .insert(*partition, n);
            }
        }
        // Set the series of the partitions fetched, then remove those no longer fetched: a scrape never
        // finds a partition's series missing while it is fetched.
        let now = now_ms();
        let mut since = lock(&self.waiting_since);
        for (topic, parts) in &waiting {
            for (partition, n) in parts {
                self.records
                    .with_label_values(&[&self.group, topic, &partition.to_string()])
                    .set(*n);
                let started = since.entry(topic.clone()).or_default();
                if *n > 0 {
                    started.entry(*partition).or_insert(now);
                } else {
                    started.remove(partition);
                }
            }
        }
        let mut previous = lock(&self.waiting);
        for (topic, parts) in previous.iter() {
            for partition in parts.keys() {
                if waiting
                    .get(topic)
                    .is_none_or(|w| !w.contains_key(partition))
                {
                    let p = partition.to_string();
                    let labels = [self.group.as_str(), topic.as_str(), p.as_str()];
                    let _ = self.records.remove_label_values(&labels);
                    let _ = self.seconds.remove_label_values(&labels);
                    if let Some(started) = since.get_mut(topic) {
                        started.remove(partition);
                    }
                }
            }
        }
        *previous = waiting;
    }

    /// Record the last record of each partition in `batch` as handled (few partitions: a short list).
    pub fn handled_batch(&self, batch: &[rdkafka::message::BorrowedMessage<'_>]) {
        let mut seen: Vec<(&str, i32)> = Vec::new();
        for m in batch.iter().rev() {
            let at = (m.topic(), m.partition());
            if seen.contains(&at) {
                continue;
            }
            seen.push(at);
            if let Some(t) = m.timestamp().to_millis() {
                self.handled(at.0, at.1, t);
            }
        }
    }

    /// Record `timestamp_ms` as the last handled on `topic` `partition`.
    pub fn handled(&self, topic: &str, partition: i32, timestamp_ms: i64) {
        let mut handled = lock(&self.handled);
        match handled.get_mut(topic) {
            Some(parts) => {
                parts.insert(partition, timestamp_ms);
            }
            None => {
                handled.insert(topic.to_string(), [(partition, timestamp_ms)].into());
            }
        }
    }

    /// Set the time lag of each partition fetched now: 0 when no record waits there, else how long the
    /// oldest waiting record has been there at least: now minus the later of the timestamp of the last
    /// record handled there and the moment records were first seen waiting (after an idle spell the
    /// first new record does not count the idle time; a partition whose backlog has not moved since it
    /// was assigned counts from when it was seen).
    pub fn update_seconds(&self, now_ms: i64) {
        let waiting = lock(&self.waiting);
        let handled = lock(&self.handled);
        let since = lock(&self.waiting_since);
        for (topic, parts) in waiting.iter() {
            for (partition, n) in parts {
                let p = partition.to_string();
                let labels = [self.group.as_str(), topic.as_str(), p.as_str()];
                let behind = if *n > 0 {
                    let last = handled.get(topic).and_then(|h| h.get(partition)).copied();
                    let seen = since.get(topic).and_then(|s| s.get(partition)).copied();
                    let from = last.max(seen).unwrap_or(now_ms);
                    ((now_ms - from).max(0) as f64) / 1000.0
                } else {
                    0.0
                };
                self.seconds.with_label_values(&labels).set(behind);
            }
        }
    }

    /// Records waiting on `topic` `partition` as of the last statistics.
    pub fn waiting(&self, topic: &str, partition: i32) -> Option<i64> {
        lock(&self.waiting)
            .get(topic)
            .and_then(|w| w.get(&partition))
            .copied()
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

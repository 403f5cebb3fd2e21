//! The consumer runner: one loop for every non-transactional consumer (the projectors now, the DLQ
//! reprocessor later). At least once in delivery; what a [`Handler`] writes must be idempotent.
//!
//! - Batches by count (`max_batch_records`) and time (`max_batch_ms` after the first record).
//! - Offsets are stored only after the batch's writes (and its dead letters) are durable; librdkafka
//!   commits stored offsets periodically and on revocation.
//! - One error policy. A transient failure (a store or the registry away) is retried with exponential
//!   backoff and jitter while every assigned partition is paused: order is kept, the consumer keeps
//!   polling (its membership holds), and the instance reports not ready. A poison record (undecodable,
//!   unknown schema, a mapping that fails) goes to `<group>.dlq` with headers saying why, where from
//!   and since when, and the stream goes on. Nothing is dropped silently.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use causeway_runtime::Shutdown;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientConfig, ClientContext};
use serde::{Deserialize, Serialize};

use crate::config::{KafkaConfig, OffsetMode};
use crate::dead_letter::{self, Why};
use crate::error::Error;
use crate::group::{GroupConsumer, Member, Membership};
use crate::headers;
use crate::parking::{Decision, Headed};

/// How long a blocking Kafka call of the runner may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest dead letter the runner writes (librdkafka's default `message.max.bytes`).
const DLQ_LIMIT: usize = 1_000_000;

/// Longest key kept in a dead letter.
const MAX_KEY_BYTES: usize = 1024;

/// How often the lag metrics are computed.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// How the runner consumes: the `[consumer]` section of a service that uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunnerConfig {
    /// Records per batch, at most.
    pub max_batch_records: usize,
    /// How long a batch collects after its first record, in ms.
    pub max_batch_ms: u64,
    /// First wait before a transient failure is retried, in ms (doubled each time, with jitter).
    pub retry_initial_ms: u64,
    /// Longest wait between retries, in ms.
    pub retry_max_ms: u64,
    /// Longest reason kept in a dead letter, in bytes.
    pub max_reason_bytes: usize,
    /// A stable identity of this instance in its group (e.g. the pod name of a StatefulSet): with one,
    /// a restarted instance gets its partitions back at once instead of after its old session times
    /// out (`session.timeout.ms`). Empty: a new member each start.
    pub instance_id: String,
    /// Per-key order: once a record is dead-lettered, the later records of its key (on its partition)
    /// are dead-lettered behind it (class `parked`) until it is replayed or discarded through the
    /// dlq-reprocessor, then come back in order. Needs the compacted topic `<group>.parked`.
    pub park_keys: bool,
    /// A record whose preparation failed transiently this many times in a row is dead-lettered with
    /// class `transient` (for the reprocessor's automatic redrive) and the stream goes on. 0: never;
    /// retried in place, the partitions paused, however long it takes.
    pub dead_letter_transient_after: u32,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            max_batch_records: 2000,
            max_batch_ms: 50,
            retry_initial_ms: 100,
            retry_max_ms: 10_000,
            max_reason_bytes: 1024,
            instance_id: String::new(),
            park_keys: false,
            dead_letter_transient_after: 0,
        }
    }
}

impl RunnerConfig {
    /// Start-up checks for the section at `section`.
    pub fn check(&self, section: &str) -> Vec<causeway_runtime::Invalid> {
        let mut out = Vec::new();
        if self.max_batch_records == 0 {
            out.push(causeway_runtime::Invalid::new(
                format!("{section}.max_batch_records"),
                "must be at least 1",
            ));
        }
        if self.dead_letter_transient_after > 0 && !self.park_keys {
            out.push(causeway_runtime::Invalid::new(
                format!("{section}.dead_letter_transient_after"),
                "needs park_keys = true: a record dead-lettered for a passing failure and redriven later must not arrive after the later records of its key",
            ));
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            out.push(causeway_runtime::Invalid::new(
                format!("{section}.retry_max_ms"),
                "retry_initial_ms must be at least 1 and retry_max_ms at least retry_initial_ms",
            ));
        }
        out
    }
}

/// Why a record or a batch could not be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It may work later (a store or the registry away): retried, in order.
    Transient(String),
    /// The record can never be handled: dead-lettered.
    Poison(String),
    /// Writing the batch found item `n` poison (a store refused it): that record is dead-lettered and
    /// the rest written again.
    PoisonItem(usize, String),
    /// Nothing can go on (e.g. the store refuses the credentials): the runner stops without storing
    /// the batch's offsets, for a restart once it is fixed.
    Fatal(String),
}

/// What a consumer does with its records.
pub trait Handler {
    /// A record made ready to write.
    type Item;
    /// What `record` becomes; `Ok(None)` when there is nothing to write for it.
    fn prepare(&mut self, record: &BorrowedMessage<'_>) -> Result<Option<Self::Item>, Failure>;
    /// Write `items` durably. An `Err` means none of them is known to be written (they are written
    /// again: writes are idempotent). A record the store refuses is named by
    /// [`Failure::PoisonItem`]; a plain [`Failure::Poison`] from a write stops the runner.
    fn write(&mut self, items: &[Self::Item]) -> Result<(), Failure>;
}

/// Where the runner stands, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Assigned and writing.
    Ready,
    /// Not assigned yet, or retrying a transient failure.
    NotReady,
}

/// The consumer context: membership that always closes, and whether the group assigned partitions
/// (possibly none) at least once.
#[derive(Debug)]
struct RunnerContext {
    membership: Membership,
    assigned: std::sync::atomic::AtomicBool,
    /// Set at each assignment: the parked keys are read to their end before the next batch.
    reassigned: std::sync::atomic::AtomicBool,
    /// Rebalances so far (a batch collected across one may hold records of partitions gone).
    rebalances: std::sync::atomic::AtomicU64,
    /// Its lag, fed by librdkafka's statistics.
    lag: crate::lag::ConsumerLag,
}

impl ClientContext for RunnerContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): the lag of each partition being
    /// fetched, its end (the last stable offset, read_committed) minus the offset stored (applied).
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.lag.statistics(&statistics);
    }
}

impl Member for RunnerContext {
    fn membership(&self) -> &Membership {
        &self.membership
    }
}

impl ConsumerContext for RunnerContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        self.rebalances
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.membership.rebalance(self, consumer, err, partitions);
    }

    fn post_rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let rdkafka::consumer::Rebalance::Assign(list) = rebalance {
            // A pause the runner set (during a retry) outlives a revocation in librdkafka; a partition
            // assigned again must not stay paused. A retry in progress pauses it again.
            if let Err(e) = consumer.resume(list) {
                tracing::warn!(error = %e, "cannot resume assigned partitions");
            }
            tracing::info!(partitions = list.count(), "partitions assigned");
            self.assigned
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.reassigned
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The runner's metrics, labelled with its group.
#[derive(Debug, Clone)]
struct Meters {
    records: IntCounterVec,
    retries: IntCounterVec,
    batch_seconds: Histogram,
    parked_keys: IntGaugeVec,
}

impl Meters {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        use causeway_observe::metrics::names;
        let records = IntCounterVec::new(
            Opts::new(
                names::CONSUMER_RECORDS_TOTAL,
                "Records handled by a consumer runner, by group and outcome (written, skipped, dead_lettered).",
            ),
            &["group", "outcome"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                names::CONSUMER_RETRIES_TOTAL,
                "Transient failures retried by a consumer runner, by group.",
            ),
            &["group"],
        )?;
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                names::CONSUMER_BATCH_SECONDS,
                "Time to handle one batch (prepare, write, store offsets), in seconds.",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 14)?),
        )?;
        let parked_keys = IntGaugeVec::new(
            Opts::new(
                names::CONSUMER_PARKED_KEYS,
                "Keys whose records wait behind a dead letter (per-key order), by group.",
            ),
            &["group"],
        )?;
        registry.register(Box::new(parked_keys.clone()))?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(batch_seconds.clone()))?;
        Ok(Self {
            records,
            retries,
            batch_seconds,
            parked_keys,
        })
    }
}

/// A consumer group's loop over `topics`.
#[derive(Debug)]
pub struct Runner {
    kafka: KafkaConfig,
    config: RunnerConfig,
    group: String,
    topics: Vec<String>,
}

impl Runner {
    /// A runner for group `group` over `topics`: names, or patterns starting with `^` (a regular
    /// expression librdkafka matches against the cluster's topics, again every
    /// `topic.metadata.refresh.interval.ms`).
    pub fn new(kafka: KafkaConfig, config: RunnerConfig, group: &str, topics: Vec<String>) -> Self {
        Self {
            kafka,
            config,
            group: group.to_string(),
            topics,
        }
    }

    /// The group's dead-letter topic.
    pub fn dlq_topic(&self) -> String {
        format!("{}.dlq", self.group)
    }

    /// Run `handler` until `shutdown` fires (Ok) or a fatal error. Blocks: call from a thread of its
    /// own. `report` is told when the runner turns ready or not.
    pub fn run<H: Handler>(
        self,
        mut handler: H,
        shutdown: Shutdown,
        registry: &Registry,
        report: impl Fn(Status),
    ) -> Result<(), Error> {
        let meters = Meters::new(registry)
            .map_err(|e| Error::Task(format!("cannot register metrics: {e}")))?;
        // The group's series shown from the start, at zero.
        for outcome in ["written", "skipped", "dead_lettered"] {
            meters.records.with_label_values(&[&self.group, outcome]);
        }
        meters.retries.with_label_values(&[&self.group]);
        meters.parked_keys.with_label_values(&[&self.group]);
        let mut config: ClientConfig =
            self.kafka
                .consumer_config("consumer", &self.group, OffsetMode::StoreAfterEffect);
        if !self.config.instance_id.is_empty()
            && !self.kafka.properties.contains_key("group.instance.id")
        {
            config.set("group.instance.id", &self.config.instance_id);
        }
        // The lag metrics come from librdkafka's statistics.
        if !self.kafka.properties.contains_key("statistics.interval.ms") {
            config.set("statistics.interval.ms", "1000");
        }
        let consumer: GroupConsumer<BaseConsumer<RunnerContext>, RunnerContext> =
            GroupConsumer::new(
                config
                    .create_with_context(RunnerContext {
                        membership: Membership::new(&config),
                        assigned: std::sync::atomic::AtomicBool::new(false),
                        reassigned: std::sync::atomic::AtomicBool::new(false),
                        rebalances: std::sync::atomic::AtomicU64::new(0),
                        lag: crate::lag::ConsumerLag::new(
                            registry,
                            &self.group,
                            crate::lag::LagFrom::Stored,
                        )
                        .map_err(|e| Error::Task(format!("cannot register metrics: {e}")))?,
                    })
                    .map_err(|source| Error::Client {
                        what: "consumer",
                        source,
                    })?,
            );
        let producer: BaseProducer<Deliveries> = self
            .kafka
            .producer_config("dead-letters")
            .create_with_context(Deliveries::default())
            .map_err(|source| Error::Client {
                what: "dead-letter producer",
                source,
            })?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        // A topic that is not there would never be assigned: say so and stop, as the processor does.
        // A pattern (librdkafka's `^regex` subscription) matches the topics there are and those to come.
        for topic in topics.iter().filter(|t| !t.starts_with('^')) {
            let metadata =
                consumer
                    .fetch_metadata(Some(topic), CALL_TIMEOUT)
                    .map_err(|source| Error::Operation {
                        operation: "fetch topic metadata",
                        source,
                    })?;
            let found = metadata
                .topics()
                .iter()
                .any(|t| t.error().is_none() && !t.partitions().is_empty());
            if !found {
                return Err(Error::MissingTopic((*topic).to_string()));
            }
        }
        let parking = if self.config.park_keys {
            Some(crate::parking::Parking::open(&self.kafka, &self.group)?)
        } else {
            None
        };
        consumer
            .subscribe(&topics)
            .map_err(|source| Error::Operation {
                operation: "subscribe",
                source,
            })?;
        tracing::info!(group = %self.group, topics = ?topics, "consuming");
        let mut loop_ = Loop {
            dlq_topic: self.dlq_topic(),
            // Leaked once per run of the loop (not per record): span names are static.
            span: Box::leak(format!("{} apply", self.group).into_boxed_str()),
            runner: &self,
            consumer: &consumer,
            producer,
            meters,
            shutdown,
            report: &report,
            ready: None,
            rewind: HashMap::new(),
            fatal: None,
            lag_at: Instant::now(),
            parking,
        };
        loop_.run(&mut handler);
        let fatal = loop_.fatal.take();
        tracing::info!(group = %self.group, "consumer stopping");
        // The offsets stored so far, committed before the consumer leaves.
        if let Err(e) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
            && !matches!(e, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))
        {
            tracing::warn!(error = %e, "final offset commit failed; the next owner reads some records again");
        }
        match fatal {
            Some(why) => Err(Error::Task(why)),
            None => Ok(()),
        }
    }
}

/// One run of the loop.
struct Loop<'a, R: Fn(Status)> {
    runner: &'a Runner,
    consumer: &'a BaseConsumer<RunnerContext>,
    producer: BaseProducer<Deliveries>,
    dlq_topic: String,
    meters: Meters,
    shutdown: Shutdown,
    report: &'a R,
    ready: Option<bool>,
    /// Records received while paused and not handled: per partition, the earliest offset to read
    /// again once resumed.
    rewind: HashMap<(String, i32), i64>,
    /// Why the loop stopped, when a failure was fatal.
    fatal: Option<String>,
    /// When the lag metrics were last computed.
    lag_at: Instant,
    /// The name of a traced record's span: `<group> apply`.
    span: &'static str,
    /// Per-key order (`park_keys`).
    parking: Option<crate::parking::Parking>,
}

/// A record of the batch to dead-letter: which, why, after how many tries, since when.
#[derive(Debug)]
struct Parked {
    source: usize,
    why: String,
    attempts: u32,
    first_failure: i64,
    /// `poison`, `transient`, or `parked` (behind its key's head).
    class: &'static str,
    /// The head it waits behind (class `parked`).
    behind: Option<i64>,
    /// Its key waits behind it.
    parks_key: bool,
}

impl Parked {
    /// Record `source` (`m`) of the batch, dead-lettered behind its key's head at `head`.
    fn waiting(source: usize, m: &BorrowedMessage<'_>, head: i64) -> Self {
        Self {
            source,
            why: format!(
                "waits behind offset {head} of its key on {}/{} (per-key order)",
                m.topic(),
                m.partition()
            ),
            attempts: 0,
            first_failure: now_ms(),
            class: "parked",
            behind: Some(head),
            parks_key: false,
        }
    }
}

/// The dead-letter producer's context: whether a delivery failed since the last reset.
#[derive(Debug, Default)]
struct Deliveries {
    failure: std::sync::Mutex<Option<String>>,
}

impl Deliveries {
    fn reset(&self) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn failed(&self, why: &str) {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| why.to_string());
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed(&format!("a dead letter was not delivered: {e}"));
        }
    }
}

/// A record being retried: when it failed first and how often it was tried.
#[derive(Debug, Clone, Copy)]
struct Attempts {
    first_failure: i64,
    count: u32,
}

impl<'a, R: Fn(Status)> Loop<'a, R> {
    fn set_ready(&mut self, ready: bool) {
        if self.ready != Some(ready) {
            self.ready = Some(ready);
            (self.report)(if ready {
                Status::Ready
            } else {
                Status::NotReady
            });
        }
    }

    fn run<H: Handler>(&mut self, handler: &mut H) {
        while !self.shutdown.is_triggered() {
            if !self.rewind.is_empty() {
                self.resume();
            }
            let before = self
                .consumer
                .context()
                .rebalances
                .load(std::sync::atomic::Ordering::Relaxed);
            let mut batch = self.collect();
            if before
                != self
                    .consumer
                    .context()
                    .rebalances
                    .load(std::sync::atomic::Ordering::Relaxed)
            {
                // Records of partitions revoked while the batch was collected are their next owner's
                // (their offsets could not be stored, and what they would park is its to decide).
                let assigned = self.consumer.assignment().unwrap_or_default();
                batch.retain(|m| assigned.find_partition(m.topic(), m.partition()).is_some());
            }
            if !self.follow_parking() {
                return;
            }
            if self.ready.is_none()
                && self
                    .consumer
                    .context()
                    .assigned
                    .load(std::sync::atomic::Ordering::Relaxed)
            {
                self.set_ready(true);
            }
            if batch.is_empty() {
                // What the parked keys' topic must say (an operator's release applied) goes out even
                // when no record comes.
                if self.parking.as_ref().is_some_and(|p| p.has_pending())
                    && self.send_dead_letters(&[], &[]).is_none()
                {
                    return;
                }
                if self.lag_at.elapsed() >= LAG_EVERY {
                    self.store_positions();
                    self.update_lag();
                }
                continue;
            }
            let started = Instant::now();
            // The spans of the batch's traced records, ended once the batch is written and stored.
            let spans: Vec<_> = if causeway_observe::propagation::exporting() {
                batch
                    .iter()
                    .map(|m| headers::processing(m, self.span))
                    .filter(causeway_observe::propagation::is_traced)
                    .collect()
            } else {
                Vec::new()
            };
            let Some(()) = self.handle(handler, &batch) else {
                // Shutdown while retrying, or a fatal failure: nothing stored, the next owner reads
                // the batch again.
                return;
            };
            // Handled only now: while a batch is retried, its records still count as waiting.
            self.consumer.context().lag.handled_batch(&batch);
            let mut offsets = TopicPartitionList::new();
            let mut next: HashMap<(&str, i32), i64> = HashMap::new();
            for m in &batch {
                let o = next.entry((m.topic(), m.partition())).or_insert(0);
                *o = (*o).max(m.offset() + 1);
            }
            for ((topic, partition), offset) in next {
                let _ = offsets.add_partition_offset(topic, partition, Offset::Offset(offset));
            }
            drop(batch);
            if let Err(e) = self.consumer.store_offsets(&offsets) {
                // A partition revoked meanwhile: its next owner handles those records again.
                tracing::debug!(error = %e, "cannot store some offsets");
            }
            drop(spans);
            self.resume();
            self.meters
                .batch_seconds
                .observe(started.elapsed().as_secs_f64());
            if self.lag_at.elapsed() >= LAG_EVERY {
                self.update_lag();
            }
        }
    }

    /// While idle: store each partition's position, which librdkafka moves past transaction markers
    /// (the processor ends every transaction with one) without handing out a record. Every record
    /// handed out has been handled at this point (the last batch is done, nothing is being rewound),
    /// so nothing is skipped, and the lag no longer counts the markers.
    fn store_positions(&mut self) {
        if !self.rewind.is_empty() {
            return;
        }
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let mut list = TopicPartitionList::new();
        for e in positions.elements() {
            if let Offset::Offset(o) = e.offset() {
                let _ = list.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o));
            }
        }
        if list.count() > 0
            && let Err(e) = self.consumer.store_offsets(&list)
        {
            tracing::debug!(error = %e, "cannot store positions");
        }
    }

    /// The time lag of each partition handled since the start and fetched now: 0 when no record
    /// waits there (librdkafka's last statistics), else now minus the timestamp of the last record
    /// handled there. Partitions no longer fetched (revoked) lose their series.
    fn update_lag(&mut self) {
        self.lag_at = Instant::now();
        self.consumer.context().lag.update_seconds(now_ms());
    }

    /// A batch: what is fetched, up to the count, for at most the batch time after its first record.
    fn collect(&mut self) -> Vec<BorrowedMessage<'a>> {
        let consumer: &'a BaseConsumer<RunnerContext> = self.consumer;
        let config = &self.runner.config;
        let mut batch = Vec::new();
        let mut deadline: Option<Instant> = None;
        while batch.len() < config.max_batch_records && !self.shutdown.is_triggered() {
            let timeout = match deadline {
                None => Duration::from_millis(100),
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            match consumer.poll(timeout) {
                Some(Ok(m)) => {
                    deadline.get_or_insert_with(|| {
                        Instant::now() + Duration::from_millis(config.max_batch_ms)
                    });
                    batch.push(m);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                None if deadline.is_some() => break,
                None => return batch,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        batch
    }

    /// Prepare, dead-letter and write `batch`. `None` when shutdown interrupted a retry.
    fn handle<H: Handler>(&mut self, handler: &mut H, batch: &[BorrowedMessage<'_>]) -> Option<()> {
        let group = self.runner.group.clone();
        let mut items = Vec::with_capacity(batch.len());
        // For each item, the record it came from.
        let mut sources = Vec::with_capacity(batch.len());
        // Records to dead-letter, sent once the batch is written.
        let mut parked: Vec<Parked> = Vec::new();
        // Released records (per-key order): handled, they may free their key.
        let mut released: Vec<usize> = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            if let Some(parking) = &mut self.parking {
                match parking.decide(m) {
                    Decision::Free => {}
                    Decision::Behind(head) => {
                        parking.behind(m);
                        parked.push(Parked::waiting(i, m, head));
                        continue;
                    }
                    Decision::Released { frees } => {
                        released.push(i);
                        // Freed now, so that later records of the key in this batch are handled
                        // after it; if it fails after all, it parks the key again as its head.
                        if frees {
                            parking.free(m);
                        }
                    }
                }
            }
            let mut attempts: Option<Attempts> = None;
            loop {
                match handler.prepare(m) {
                    Ok(Some(item)) => {
                        items.push(item);
                        sources.push(i);
                        break;
                    }
                    Ok(None) => {
                        self.meters
                            .records
                            .with_label_values(&[&group, "skipped"])
                            .inc();
                        break;
                    }
                    Err(Failure::Transient(why)) => {
                        let a = attempts.get_or_insert(Attempts {
                            first_failure: now_ms(),
                            count: 0,
                        });
                        a.count += 1;
                        let count = a.count;
                        let limit = self.runner.config.dead_letter_transient_after;
                        if limit > 0 && count >= limit {
                            let first_failure = a.first_failure;
                            let was_released = released.contains(&i);
                            self.dead_letter_entry(
                                batch,
                                &mut parked,
                                Parked {
                                    source: i,
                                    why,
                                    attempts: count,
                                    first_failure,
                                    class: "transient",
                                    behind: None,
                                    parks_key: false,
                                },
                                was_released,
                            );
                            break;
                        }
                        if !self.wait_retry("prepare", &why, count) {
                            return None;
                        }
                    }
                    Err(Failure::Fatal(why)) => {
                        self.fatal = Some(why);
                        return None;
                    }
                    Err(Failure::Poison(why) | Failure::PoisonItem(_, why)) => {
                        let a = attempts.unwrap_or(Attempts {
                            first_failure: now_ms(),
                            count: 0,
                        });
                        let was_released = released.contains(&i);
                        self.dead_letter_entry(
                            batch,
                            &mut parked,
                            Parked {
                                source: i,
                                why,
                                attempts: a.count + 1,
                                first_failure: a.first_failure,
                                class: "poison",
                                behind: None,
                                parks_key: false,
                            },
                            was_released,
                        );
                        break;
                    }
                }
            }
        }
        let mut attempts = 0u32;
        let mut first_failure = 0i64;
        loop {
            if items.is_empty() {
                break;
            }
            match handler.write(&items) {
                Ok(()) => break,
                Err(Failure::Fatal(why)) => {
                    self.fatal = Some(why);
                    return None;
                }
                Err(Failure::Transient(why)) => {
                    attempts += 1;
                    if attempts == 1 {
                        first_failure = now_ms();
                    }
                    if !self.wait_retry("write", &why, attempts) {
                        return None;
                    }
                }
                Err(Failure::PoisonItem(n, why)) if n < items.len() => {
                    let source = sources.remove(n);
                    drop(items.remove(n));
                    let first = if attempts == 0 {
                        now_ms()
                    } else {
                        first_failure
                    };
                    let was_released = released.contains(&source);
                    self.dead_letter_entry(
                        batch,
                        &mut parked,
                        Parked {
                            source,
                            why,
                            attempts: attempts + 1,
                            first_failure: first,
                            class: "poison",
                            behind: None,
                            parks_key: false,
                        },
                        was_released,
                    );
                    // Its key's later records of the batch, prepared already, wait behind its head.
                    let refused = &batch[source];
                    if let Some(head) = self.parking.as_ref().and_then(|p| p.head_of(refused)) {
                        let mut j = n;
                        while j < items.len() {
                            let m = &batch[sources[j]];
                            if m.topic() == refused.topic()
                                && m.partition() == refused.partition()
                                && m.key() == refused.key()
                            {
                                if let Some(parking) = &mut self.parking {
                                    parking.behind(m);
                                }
                                parked.push(Parked::waiting(sources.remove(j), m, head));
                                drop(items.remove(j));
                            } else {
                                j += 1;
                            }
                        }
                    }
                }
                // A write must name the record it refuses (PoisonItem); one that does not gives no
                // record to park, so nothing is dropped: the runner stops for a restart.
                Err(Failure::Poison(why) | Failure::PoisonItem(_, why)) => {
                    self.fatal = Some(format!(
                        "a write refused the batch without naming the record: {why}"
                    ));
                    return None;
                }
            }
        }
        // The dead letters (and what is parked) are durable before the offsets move past their records.
        let parking_writes = self.parking.as_ref().is_some_and(|p| p.has_pending());
        if !parked.is_empty() || parking_writes {
            self.send_dead_letters(batch, &parked)?;
            let behind = parked.iter().filter(|p| p.class == "parked").count() as u64;
            self.meters
                .records
                .with_label_values(&[&group, "dead_lettered"])
                .inc_by(parked.len() as u64 - behind);
            if behind > 0 {
                self.meters
                    .records
                    .with_label_values(&[&group, "parked"])
                    .inc_by(behind);
            }
        }
        self.meters
            .records
            .with_label_values(&[&group, "written"])
            .inc_by(items.len() as u64);
        self.set_ready(true);
        Some(())
    }

    /// Send the dead letters of `parked` records of `batch` and wait until the broker has every one
    /// of them; a failed delivery (the topic missing, not authorised, a broker away) is a transient
    /// failure: all are sent again after the backoff (a dead letter may then be there twice; none is
    /// missing). `None` when shutdown fired.
    fn send_dead_letters(
        &mut self,
        batch: &[BorrowedMessage<'_>],
        parked: &[Parked],
    ) -> Option<()> {
        let runner: &'a Runner = self.runner;
        let topic = self.dlq_topic.clone();
        let (parking_topic, parking_writes) = match &mut self.parking {
            Some(p) => (p.topic().to_string(), p.take_pending()),
            None => (String::new(), Vec::new()),
        };
        let mut tries = 0u32;
        loop {
            self.producer.context().reset();
            for (key, value) in &parking_writes {
                let mut record: BaseRecord<'_, [u8], [u8]> =
                    BaseRecord::to(&parking_topic).key(key.as_slice());
                if let Some(v) = value {
                    record = record.payload(v.as_bytes());
                }
                if !self.enqueue(record) {
                    return None;
                }
            }
            for p in parked {
                let m = &batch[p.source];
                let reason =
                    causeway_contracts::hosting::cut(&p.why, runner.config.max_reason_bytes);
                tracing::warn!(
                    topic = m.topic(),
                    partition = m.partition(),
                    offset = m.offset(),
                    reason,
                    "dead-lettering a record"
                );
                let why = Why {
                    reason,
                    class: p.class,
                    group: &runner.group,
                    at: now_ms(),
                    attempts: p.attempts,
                    first_failure: p.first_failure,
                    behind: p.behind,
                    parks_key: p.parks_key,
                };
                let record = dead_letter::record(m, &topic, &why, DLQ_LIMIT, MAX_KEY_BYTES);
                if !self.enqueue(record) {
                    return None;
                }
            }
            let flushed = self.producer.flush(CALL_TIMEOUT);
            let failure = match (flushed, self.producer.context().failure()) {
                (Ok(()), None) => return Some(()),
                (Err(e), _) => e.to_string(),
                (Ok(()), Some(why)) => why,
            };
            tries += 1;
            if !self.wait_retry("dead letters", &failure, tries) {
                return None;
            }
        }
    }

    /// Hand `record` to the producer, waiting while its queue is full; a refusal is noted as the
    /// delivery's failure. `false` when shutdown fired.
    fn enqueue(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> bool {
        loop {
            match self.producer.send(record) {
                Ok(()) => return true,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    if self.shutdown.is_triggered() {
                        return false;
                    }
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    self.producer.context().failed(&e.to_string());
                    return true;
                }
            }
        }
    }

    /// `entry`'s record is being dead-lettered: with per-key order, its key is parked behind it (it is
    /// the head), or it waits behind an older head; a later record of the batch that was the head
    /// waits behind it now. `released`: it was released from its key's head and failed again.
    fn dead_letter_entry(
        &mut self,
        batch: &[BorrowedMessage<'_>],
        parked: &mut Vec<Parked>,
        mut entry: Parked,
        released: bool,
    ) {
        let m = &batch[entry.source];
        let headed = match &mut self.parking {
            Some(p) => p.head(m, released),
            None => Headed::NotParked,
        };
        match headed {
            Headed::NotParked => {}
            Headed::Head => entry.parks_key = true,
            Headed::Behind(head) => {
                entry.why = format!(
                    "waits behind offset {head} of its key (per-key order); it failed too: {}",
                    entry.why
                );
                entry.class = "parked";
                entry.behind = Some(head);
            }
            Headed::Replaced(later) => {
                entry.parks_key = true;
                for p in parked.iter_mut() {
                    let o = &batch[p.source];
                    if o.topic() == m.topic()
                        && o.partition() == m.partition()
                        && o.key() == m.key()
                        && o.offset() > m.offset()
                        && (o.offset() == later || p.behind == Some(later))
                    {
                        p.why = format!(
                            "waits behind offset {} of its key (per-key order): {}",
                            m.offset(),
                            p.why
                        );
                        p.class = "parked";
                        p.behind = Some(m.offset());
                        p.parks_key = false;
                    }
                }
            }
        }
        parked.push(entry);
    }

    /// Per-key order: after an assignment, read the parked keys to their end (the previous owners'
    /// writes); always, apply what arrived (the reprocessor's releases). `false` when shutdown fired.
    fn follow_parking(&mut self) -> bool {
        if self.parking.is_none() {
            return true;
        }
        let consumer: &'a BaseConsumer<RunnerContext> = self.consumer;
        let flag = &consumer.context().reassigned;
        let mut tries = 0u32;
        while flag.swap(false, std::sync::atomic::Ordering::Relaxed) {
            let caught_up = match &mut self.parking {
                Some(p) => p.catch_up(),
                None => Ok(()),
            };
            if let Err(e) = caught_up {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
                tries += 1;
                if !self.wait_retry("parked keys", &e.to_string(), tries) {
                    return false;
                }
            }
        }
        let assigned = consumer.assignment().unwrap_or_default();
        if let Some(parking) = &mut self.parking {
            parking.poll(Duration::ZERO, &|topic, partition| {
                assigned.find_partition(topic, partition).is_some()
            });
            self.meters
                .parked_keys
                .with_label_values(&[&self.runner.group])
                .set(parking.len() as i64);
        }
        true
    }

    /// After a transient failure: pause what is assigned, wait the backoff (polling, so that the
    /// membership holds), report not ready. `false` when shutdown fired.
    fn wait_retry(&mut self, what: &str, why: &str, attempt: u32) -> bool {
        let config = &self.runner.config;
        self.meters
            .retries
            .with_label_values(&[&self.runner.group])
            .inc();
        if attempt >= 3 {
            self.set_ready(false);
        }
        let exp = config
            .retry_initial_ms
            .saturating_mul(1u64 << attempt.min(20).saturating_sub(1))
            .min(config.retry_max_ms);
        // Full jitter between half and the whole of the backoff.
        let wait = Duration::from_millis(exp / 2 + jitter(exp / 2 + 1));
        tracing::warn!(
            call = what,
            error = why,
            attempt,
            wait_ms = wait.as_millis() as u64,
            "transient failure; retrying"
        );
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if self.shutdown.is_triggered() {
                return false;
            }
            if let Ok(assigned) = self.consumer.assignment() {
                let _ = self.consumer.pause(&assigned);
            }
            // The lag in seconds keeps growing while the batch waits (the records' lag comes from
            // the statistics the poll serves).
            if self.lag_at.elapsed() >= LAG_EVERY {
                self.update_lag();
            }
            // Serves rebalances and keeps the membership; a record that still arrives is read again
            // after the resume.
            if let Some(Ok(m)) = self.consumer.poll(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100)),
            ) {
                let at = self
                    .rewind
                    .entry((m.topic().to_string(), m.partition()))
                    .or_insert(m.offset());
                *at = (*at).min(m.offset());
            }
        }
        true
    }

    /// Resume every assigned partition, reading again what arrived while paused. A partition whose
    /// rewind fails while it is still ours stays paused, its rewind kept for the next turn: resuming it
    /// would skip the records dropped while paused.
    fn resume(&mut self) {
        let assigned = self.consumer.assignment().unwrap_or_default();
        let mut kept = HashMap::new();
        for ((topic, partition), offset) in self.rewind.drain() {
            if let Err(e) =
                self.consumer
                    .seek(&topic, partition, Offset::Offset(offset), CALL_TIMEOUT)
            {
                if assigned.find_partition(&topic, partition).is_some() {
                    tracing::warn!(error = %e, topic, partition, "cannot rewind a partition; it stays paused and is rewound next turn");
                    kept.insert((topic, partition), offset);
                } else {
                    tracing::debug!(error = %e, topic, partition, "a partition no longer ours is not rewound");
                }
            }
        }
        let mut resumed = TopicPartitionList::new();
        for e in assigned.elements() {
            if !kept.contains_key(&(e.topic().to_string(), e.partition())) {
                let _ = resumed.add_partition(e.topic(), e.partition());
            }
        }
        let _ = self.consumer.resume(&resumed);
        self.rewind = kept;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A number in `0..bound`, well spread enough for backoff jitter.
fn jitter(bound: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    let mut x = nanos ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x % bound.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_bounds() {
        for bound in [1, 2, 100, 10_000] {
            assert!(jitter(bound) < bound);
        }
        assert_eq!(jitter(0), 0);
    }

    #[test]
    fn bad_settings_are_named() {
        let c = RunnerConfig {
            max_batch_records: 0,
            retry_initial_ms: 10,
            retry_max_ms: 5,
            ..RunnerConfig::default()
        };
        let problems: Vec<String> = c.check("consumer").into_iter().map(|p| p.key).collect();
        assert_eq!(
            problems,
            ["consumer.max_batch_records", "consumer.retry_max_ms"]
        );
    }
}

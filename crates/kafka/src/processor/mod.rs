//! The transactional processor: consumes `<context>.<aggregate>.commands` read_committed and, in ONE
//! Kafka transaction per batch, produces the events, the changed aggregate states (changelog), the
//! command results and dead letters, and commits the consumed offsets with the group metadata (EOS v2,
//! one transactional producer per process). docs/adr/0009-aggregate-state.md has the why.
//!
//! The loop runs on a thread of its own (librdkafka's transactional calls block):
//! 1. poll a batch (up to `max_batch_records`, or what arrived within `commit_interval_ms`); no
//!    transaction is open while polling, so a revocation never finds one;
//! 2. begin; per record, in partition order: decode, decide with the partition's states, produce events
//!    and the result to the command's partition number; poison goes to `<group>.dlq` with its reason;
//! 3. produce each changed state once, send the offsets, commit;
//! 4. on any failure: abort, drop every state, and restore and rewind as after an assignment; a fenced
//!    producer stops the processor.
//!
//! On assignment, partitions stay paused until their committed offsets are stable (pending
//! transactional commits resolved), their changelog is read to its end, and the consumer is positioned
//! at the committed offset.

mod config;
mod host;
mod rebalance;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use causeway_contracts::upcast::Upcasters;
use causeway_contracts::wire::{Codec, WireError};
use causeway_core::{Classify, ErrorClass};
use causeway_runtime::Shutdown;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::runtime::Handle;

pub use config::ProcessorConfig;
pub use host::{Dirty, Host, Hosted, Processed, Stamp, Topics};
pub use rebalance::{Change, Rebalances};

use crate::config::{KafkaConfig, OffsetMode};
use crate::error::{Error, classify_kafka};
use crate::group::GroupConsumer;
use crate::headers;

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
}

/// Why the processor stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// A Kafka client failed.
    #[error(transparent)]
    Kafka(#[from] Error),
    /// Another process took over this transactional id (or group instance id), or the broker fenced
    /// the producer. Fatal: this instance stops; its partitions belong to someone else.
    #[error("fenced by another instance with the same identity: {0}")]
    Fenced(KafkaError),
    /// A value could not be encoded with its registered schema (a contract out of step with the code).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A changelog record could not be read back: restoring would lose state.
    #[error("changelog {topic} partition {partition} offset {offset}: {why}")]
    Changelog {
        /// The changelog topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// What is wrong.
        why: String,
    },
}

impl Classify for ProcessorError {
    fn class(&self) -> ErrorClass {
        match self {
            ProcessorError::Kafka(e) => e.class(),
            ProcessorError::Wire(e) => e.class(),
            ProcessorError::Fenced(_) | ProcessorError::Changelog { .. } => ErrorClass::Fatal,
        }
    }
}

/// Why one batch failed; decides whether the processor retries or stops.
enum BatchError {
    /// Abort, restore, rewind, go on.
    Retry(String),
    /// Stop.
    Stop(ProcessorError),
}

impl From<KafkaError> for BatchError {
    fn from(e: KafkaError) -> Self {
        let fenced = matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fenced)
        ) || matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
        if fenced {
            BatchError::Stop(ProcessorError::Fenced(e))
        } else if classify_kafka(&e) == ErrorClass::Fatal {
            BatchError::Stop(ProcessorError::Kafka(Error::Operation {
                operation: "transaction",
                source: e,
            }))
        } else {
            BatchError::Retry(e.to_string())
        }
    }
}

impl From<WireError> for BatchError {
    fn from(e: WireError) -> Self {
        match e.class() {
            ErrorClass::Transient => BatchError::Retry(e.to_string()),
            _ => BatchError::Stop(ProcessorError::Wire(e)),
        }
    }
}

struct Meters {
    commands: IntCounterVec,
    transactions: IntCounterVec,
    batch_records: Histogram,
    transaction_seconds: Histogram,
    restored: IntCounterVec,
}

impl Meters {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        use causeway_observe::metrics::names;
        let commands = IntCounterVec::new(
            Opts::new(
                names::PROCESSOR_COMMANDS_TOTAL,
                "Commands processed, by aggregate type and outcome (accepted, rejected, duplicate, dead_lettered).",
            ),
            &["aggregate", "outcome"],
        )?;
        let transactions = IntCounterVec::new(
            Opts::new(
                names::PROCESSOR_TRANSACTIONS_TOTAL,
                "Transactions, by result (committed, aborted).",
            ),
            &["result"],
        )?;
        let batch_records = Histogram::with_opts(
            HistogramOpts::new(
                names::PROCESSOR_BATCH_RECORDS,
                "Command records per transaction.",
            )
            .buckets(vec![
                1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0,
            ]),
        )?;
        let transaction_seconds = Histogram::with_opts(
            HistogramOpts::new(
                names::PROCESSOR_TRANSACTION_SECONDS,
                "Time from begin to commit of a transaction, in seconds.",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 14)?),
        )?;
        let restored = IntCounterVec::new(
            Opts::new(
                names::PROCESSOR_RESTORED_RECORDS_TOTAL,
                "Changelog records read while restoring state, by aggregate type.",
            ),
            &["aggregate"],
        )?;
        registry.register(Box::new(commands.clone()))?;
        registry.register(Box::new(transactions.clone()))?;
        registry.register(Box::new(batch_records.clone()))?;
        registry.register(Box::new(transaction_seconds.clone()))?;
        registry.register(Box::new(restored.clone()))?;
        Ok(Self {
            commands,
            transactions,
            batch_records,
            transaction_seconds,
            restored,
        })
    }
}

/// A processor hosting one or more aggregate types. Build it, then [`Processor::run`] it on a thread
/// that may block.
pub struct Processor {
    config: ProcessorConfig,
    kafka: KafkaConfig,
    hosts: Vec<Box<dyn Hosted>>,
    upcasters: Upcasters,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let types: Vec<&str> = self.hosts.iter().map(|h| h.aggregate_type()).collect();
        f.debug_struct("Processor")
            .field("config", &self.config)
            .field("hosts", &types)
            .finish_non_exhaustive()
    }
}

/// Where a command partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartitionState {
    /// Paused until restored.
    Restoring,
    /// Restored and consuming.
    Ready,
}

/// The hosted aggregate index and partition of a command record.
type Owned = (usize, i32);

/// How long a blocking Kafka call may take before the batch is retried.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the loop sleeps between serving delivery reports while it waits for the producer (a full
/// queue, or the deliveries before a commit). rdkafka's own `poll` would spin through its timeout.
const DELIVERY_WAIT: Duration = Duration::from_micros(200);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Processor {
    /// A processor with no aggregate yet.
    pub fn new(kafka: KafkaConfig, config: ProcessorConfig) -> Self {
        Self {
            config,
            kafka,
            hosts: Vec::new(),
            upcasters: Upcasters::default(),
        }
    }

    /// Host one more aggregate type.
    pub fn host(mut self, hosted: Box<dyn Hosted>) -> Self {
        self.hosts.push(hosted);
        self
    }

    /// Read commands through `upcasters` (replaced command contracts).
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// Run until `shutdown` fires (Ok) or a fatal error. Blocks: call from a thread of its own.
    /// `runtime` runs the registry calls; `ready` is told `true` once the group's first assignment is
    /// restored (the instance processes commands: a rolling update waits for it), `false` when it stops.
    pub fn run(
        self,
        runtime: Handle,
        shutdown: Shutdown,
        registry: &Registry,
        ready: impl Fn(bool),
    ) -> Result<(), ProcessorError> {
        let meters = Meters::new(registry).map_err(|e| {
            ProcessorError::Kafka(Error::Task(format!("cannot register metrics: {e}")))
        })?;
        let kafka = self.kafka.clone();
        let transactional_id = self.config.transactional_id();
        let mut producer_config =
            kafka.transactional_producer_config("aggregate-processor", &transactional_id);
        if !kafka.properties.contains_key("transaction.timeout.ms") {
            producer_config.set(
                "transaction.timeout.ms",
                self.config.transaction_timeout_ms.to_string(),
            );
        }
        let producer: BaseProducer = producer_config.create().map_err(|source| Error::Client {
            what: "transactional producer",
            source,
        })?;
        producer.init_transactions(CALL_TIMEOUT).map_err(|source| {
            match source.rdkafka_error_code() {
                Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fenced) => {
                    ProcessorError::Fenced(source)
                }
                _ => ProcessorError::Kafka(Error::Operation {
                    operation: "init_transactions",
                    source,
                }),
            }
        })?;
        let mut consumer_config = kafka.consumer_config(
            "aggregate-processor",
            &self.config.group_id,
            OffsetMode::Transactional,
        );
        // Static membership under the same stable identity: a restarted instance gets its partitions
        // back at once instead of waiting out the old member's session (and the group is spared a
        // rebalance and a restore). An instance that stops for good hands its partitions over when
        // `session.timeout.ms` passes.
        if !kafka.properties.contains_key("group.instance.id") {
            consumer_config.set("group.instance.id", &transactional_id);
        }
        // Marked closing before it is dropped: closing never waits on a late assignment.
        let consumer: GroupConsumer<BaseConsumer<Rebalances>, Rebalances> = GroupConsumer::new(
            consumer_config
                .create_with_context(Rebalances::new(&consumer_config))
                .map_err(|source| Error::Client {
                    what: "consumer",
                    source,
                })?,
        );
        let topics: Vec<&str> = self
            .hosts
            .iter()
            .map(|h| h.topics().commands.as_str())
            .collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| Error::Operation {
                operation: "subscribe",
                source,
            })?;
        let results_partitions = partition_count(&consumer, &self.config.results_topic)?;
        tracing::info!(
            transactional_id = %transactional_id,
            group = %self.config.group_id,
            topics = ?topics,
            "processor consuming"
        );
        let codec = Codec::new(&self.config.registry_url);
        let mut run = Run {
            dlq_topic: self.config.dlq_topic(),
            config: self.config,
            kafka,
            hosts: self.hosts,
            upcasters: self.upcasters,
            codec,
            runtime,
            producer,
            results_partitions,
            partitions: HashMap::new(),
            assigned: false,
            meters,
            shutdown,
        };
        let outcome = run.run(&consumer, &ready);
        ready(false);
        outcome
    }
}

/// Whether a consumer error means this member was fenced (another instance with its
/// `group.instance.id`) or the consumer can no longer work.
fn consumer_fenced(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageConsumptionFatal(_))
        || matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::FencedInstanceId | RDKafkaErrorCode::Fenced)
        )
}

fn partition_count(consumer: &BaseConsumer<Rebalances>, topic: &str) -> Result<i32, Error> {
    let metadata = consumer
        .fetch_metadata(Some(topic), CALL_TIMEOUT)
        .map_err(|source| Error::Operation {
            operation: "fetch the results topic's metadata",
            source,
        })?;
    let count = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if count == 0 {
        return Err(Error::Operation {
            operation: "find the results topic (create it with `causeway topics apply`)",
            source: KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopic),
        });
    }
    Ok(i32::try_from(count).unwrap_or(i32::MAX))
}

struct Run {
    config: ProcessorConfig,
    kafka: KafkaConfig,
    hosts: Vec<Box<dyn Hosted>>,
    upcasters: Upcasters,
    codec: Codec,
    runtime: Handle,
    producer: BaseProducer,
    results_partitions: i32,
    partitions: HashMap<Owned, PartitionState>,
    /// The group assigned this instance its partitions at least once (possibly none).
    assigned: bool,
    dlq_topic: String,
    meters: Meters,
    shutdown: Shutdown,
}

impl Run {
    fn run(
        &mut self,
        consumer: &BaseConsumer<Rebalances>,
        ready: &dyn Fn(bool),
    ) -> Result<(), ProcessorError> {
        let interval = Duration::from_millis(self.config.commit_interval_ms);
        let mut backoff = Duration::from_millis(100);
        let mut announced = false;
        while !self.shutdown.is_triggered() {
            // Collect a batch: what is already fetched, up to `max_batch_records` or the commit
            // interval, without waiting for more (light load: small batches, low latency; heavy load:
            // full ones). BorrowedMessages keep librdkafka's buffers: no copy of any payload.
            let mut batch: Vec<BorrowedMessage<'_>> = Vec::new();
            let mut deadline: Option<Instant> = None;
            while batch.len() < self.config.max_batch_records {
                let timeout = match deadline {
                    None => Duration::from_millis(100),
                    Some(_) => Duration::ZERO,
                };
                let polled = consumer.poll(timeout);
                self.apply_changes(consumer, &mut batch);
                match polled {
                    Some(Ok(m)) => {
                        let Some(owned) = self.owned(m.topic(), m.partition()) else {
                            continue;
                        };
                        if self.partitions.get(&owned) != Some(&PartitionState::Ready) {
                            // Not restored yet: dropped here, read again after the rewind.
                            continue;
                        }
                        deadline.get_or_insert_with(|| Instant::now() + interval);
                        batch.push(m);
                    }
                    Some(Err(e)) if consumer_fenced(&e) => {
                        // Another process joined under this identity: its partitions are not ours.
                        return Err(ProcessorError::Fenced(e));
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                    None if deadline.is_some() => break,
                    None => {}
                }
                if deadline.is_none_or(|d| Instant::now() >= d) {
                    break;
                }
            }
            if !batch.is_empty() {
                match self.process(consumer, &batch) {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(BatchError::Stop(e)) => return Err(e),
                    Err(BatchError::Retry(why)) => {
                        tracing::warn!(error = %why, "transaction aborted; restoring and retrying");
                        drop(batch);
                        self.recover(consumer);
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            self.restore_pending(consumer)?;
            if !announced && self.restored() {
                // Ready stays on through later rebalances: they pause only the partitions that move.
                announced = true;
                ready(true);
                tracing::info!(partitions = self.partitions.len(), "processor ready");
            }
        }
        tracing::info!("processor stopping: no transaction open");
        Ok(())
    }

    /// Every partition of the group's assignment (once there was one) is restored.
    fn restored(&self) -> bool {
        self.assigned
            && self
                .partitions
                .values()
                .all(|s| *s == PartitionState::Ready)
    }

    fn owned(&self, topic: &str, partition: i32) -> Option<Owned> {
        self.hosts
            .iter()
            .position(|h| h.topics().commands == topic)
            .map(|i| (i, partition))
    }

    /// Apply what the rebalance callbacks queued: drop revoked partitions (their states and their
    /// records in the batch being collected), note assigned ones for restoring.
    fn apply_changes(
        &mut self,
        consumer: &BaseConsumer<Rebalances>,
        batch: &mut Vec<BorrowedMessage<'_>>,
    ) {
        for change in consumer.context().take() {
            match change {
                Change::Revoked(list) => {
                    let mut gone = HashSet::new();
                    for (topic, partition) in list {
                        if let Some(owned) = self.owned(&topic, partition) {
                            self.partitions.remove(&owned);
                            self.hosts[owned.0].drop_partition(partition);
                            gone.insert(owned);
                        }
                    }
                    batch.retain(|m| {
                        self.owned(m.topic(), m.partition())
                            .is_some_and(|o| !gone.contains(&o))
                    });
                }
                Change::Assigned(list) => {
                    self.assigned = true;
                    for (topic, partition) in list {
                        if let Some(owned) = self.owned(&topic, partition) {
                            self.partitions.insert(owned, PartitionState::Restoring);
                        }
                    }
                }
            }
        }
    }

    /// After an aborted transaction: forget every state and treat every partition as newly assigned.
    fn recover(&mut self, consumer: &BaseConsumer<Rebalances>) {
        let mut paused = TopicPartitionList::new();
        for (&(host, partition), state) in self.partitions.iter_mut() {
            *state = PartitionState::Restoring;
            self.hosts[host].drop_partition(partition);
            paused.add_partition(&self.hosts[host].topics().commands, partition);
        }
        if let Err(e) = consumer.pause(&paused) {
            tracing::warn!(error = %e, "cannot pause partitions for restoring");
        }
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Restore every partition waiting for it, then position and resume it.
    fn restore_pending(
        &mut self,
        consumer: &BaseConsumer<Rebalances>,
    ) -> Result<(), ProcessorError> {
        let pending: Vec<Owned> = self
            .partitions
            .iter()
            .filter(|(_, s)| **s == PartitionState::Restoring)
            .map(|(o, _)| *o)
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        // 1. Committed offsets first: with read_committed, the broker answers only once no transactional
        //    offset commit is pending, so a previous owner's last transaction has ended (committed or
        //    aborted) before the changelog is read.
        let mut commands = TopicPartitionList::new();
        for &(host, partition) in &pending {
            commands.add_partition(&self.hosts[host].topics().commands, partition);
        }
        let committed = match consumer.committed_offsets(commands.clone(), CALL_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                // Leave them Restoring: the next turn of the loop tries again.
                tracing::warn!(error = %e, "cannot read committed offsets; will retry");
                std::thread::sleep(Duration::from_millis(200));
                return Ok(());
            }
        };
        // 2. The changelog of each, to its end.
        for host in 0..self.hosts.len() {
            let parts: Vec<i32> = pending
                .iter()
                .filter(|(h, _)| *h == host)
                .map(|(_, p)| *p)
                .collect();
            if parts.is_empty() {
                continue;
            }
            for &p in &parts {
                self.hosts[host].drop_partition(p);
            }
            if !self.restore_changelog(host, &parts)? {
                return Ok(()); // shutting down
            }
        }
        // 3. Position at the committed offsets (the earliest record when none), then resume.
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            if let Err(e) =
                consumer.seek(element.topic(), element.partition(), offset, CALL_TIMEOUT)
            {
                tracing::warn!(error = %e, topic = element.topic(), partition = element.partition(), "seek failed; will retry");
                return Ok(());
            }
        }
        consumer
            .resume(&commands)
            .map_err(|source| Error::Operation {
                operation: "resume restored partitions",
                source,
            })?;
        for owned in &pending {
            self.partitions.insert(*owned, PartitionState::Ready);
        }
        let states: usize = self.hosts.iter().map(|h| h.states()).sum();
        tracing::info!(
            partitions = pending.len(),
            states,
            ms = started.elapsed().as_millis() as u64,
            "state restored; partitions resumed"
        );
        Ok(())
    }

    /// Read `partitions` of host `host`'s changelog from the beginning to the end (read_committed).
    /// `Ok(false)` when shutdown interrupted it.
    fn restore_changelog(
        &mut self,
        host: usize,
        partitions: &[i32],
    ) -> Result<bool, ProcessorError> {
        let topic = self.hosts[host].topics().changelog.clone();
        let mut config = self.kafka.consumer_config(
            "aggregate-processor-restore",
            &format!("{}-restore", self.config.group_id),
            OffsetMode::Transactional,
        );
        config.set("enable.partition.eof", "true");
        let restorer: BaseConsumer = config.create().map_err(|source| Error::Client {
            what: "restore consumer",
            source,
        })?;
        let mut list = TopicPartitionList::new();
        for &p in partitions {
            list.add_partition_offset(&topic, p, Offset::Beginning)
                .map_err(|source| Error::Operation {
                    operation: "assign the changelog",
                    source,
                })?;
        }
        restorer.assign(&list).map_err(|source| Error::Operation {
            operation: "assign the changelog",
            source,
        })?;
        let mut remaining: HashSet<i32> = partitions.iter().copied().collect();
        let aggregate = self.hosts[host].aggregate_type();
        let restored = self.meters.restored.with_label_values(&[aggregate]);
        while !remaining.is_empty() {
            if self.shutdown.is_triggered() {
                return Ok(false);
            }
            match restorer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    remaining.remove(&p);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, topic = %topic, "restore consumer error")
                }
                Some(Ok(m)) => {
                    let fail = |why: String| ProcessorError::Changelog {
                        topic: topic.clone(),
                        partition: m.partition(),
                        offset: m.offset(),
                        why,
                    };
                    let key = m
                        .key()
                        .map(|k| std::str::from_utf8(k).map_err(|e| fail(format!("key: {e}"))))
                        .transpose()?
                        .ok_or_else(|| fail("no key".into()))?;
                    let value = match m.payload() {
                        None => None,
                        Some(bytes) => {
                            let decoded = loop {
                                match self
                                    .block_on(self.codec.decode_value(bytes, &Upcasters::default()))
                                {
                                    Ok(d) => break d,
                                    Err(WireError::Registry(e)) => {
                                        tracing::warn!(error = %e, "registry unavailable while restoring; retrying");
                                        std::thread::sleep(Duration::from_millis(500));
                                        if self.shutdown.is_triggered() {
                                            return Ok(false);
                                        }
                                    }
                                    Err(e) => return Err(fail(e.to_string())),
                                }
                            };
                            Some(decoded.value)
                        }
                    };
                    self.hosts[host]
                        .restore(m.partition(), key, value.as_ref())
                        .map_err(fail)?;
                    restored.inc();
                }
            }
        }
        Ok(true)
    }

    /// Send `record`, waiting while librdkafka's queue is full.
    fn send(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<(), KafkaError> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    self.producer.poll(Duration::ZERO);
                    std::thread::sleep(DELIVERY_WAIT);
                    record = back;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    fn process(
        &mut self,
        consumer: &BaseConsumer<Rebalances>,
        batch: &[BorrowedMessage<'_>],
    ) -> Result<(), BatchError> {
        let started = Instant::now();
        self.producer.begin_transaction()?;
        match self.fill(batch) {
            Ok(()) => {}
            Err(e) => {
                self.abort();
                return Err(e);
            }
        }
        let commit = || -> Result<(), BatchError> {
            let mut offsets = TopicPartitionList::new();
            let mut next: HashMap<(&str, i32), i64> = HashMap::new();
            for m in batch {
                let o = next.entry((m.topic(), m.partition())).or_insert(0);
                *o = (*o).max(m.offset() + 1);
            }
            for ((topic, partition), offset) in next {
                offsets.add_partition_offset(topic, partition, Offset::Offset(offset))?;
            }
            let group = consumer
                .group_metadata()
                .ok_or_else(|| BatchError::Retry("no consumer group metadata yet".into()))?;
            self.producer
                .send_offsets_to_transaction(&offsets, &group, CALL_TIMEOUT)?;
            self.await_deliveries()?;
            self.producer.commit_transaction(CALL_TIMEOUT)?;
            Ok(())
        };
        if let Err(e) = commit() {
            self.abort();
            return Err(e);
        }
        self.meters
            .transactions
            .with_label_values(&["committed"])
            .inc();
        self.meters.batch_records.observe(batch.len() as f64);
        self.meters
            .transaction_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Serve delivery reports until every record sent is acknowledged. rdkafka's `commit_transaction`
    /// flushes first, but its flush polls in 100 ms slices (its `poll` always waits out its timeout,
    /// spinning through the last millisecond), which would put a 100 ms floor under every transaction.
    /// Here: serve what has arrived, sleep [`DELIVERY_WAIT`], again.
    fn await_deliveries(&self) -> Result<(), KafkaError> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            self.producer.poll(Duration::ZERO);
            if self.producer.in_flight_count() == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(KafkaError::Flush(RDKafkaErrorCode::MessageTimedOut));
            }
            std::thread::sleep(DELIVERY_WAIT);
        }
    }

    fn abort(&self) {
        self.meters
            .transactions
            .with_label_values(&["aborted"])
            .inc();
        if let Err(e) = self.producer.abort_transaction(CALL_TIMEOUT) {
            tracing::warn!(error = %e, "abort_transaction failed");
        }
    }

    /// Produce everything the batch's commands lead to, inside the open transaction.
    fn fill(&mut self, batch: &[BorrowedMessage<'_>]) -> Result<(), BatchError> {
        let now = now_ms();
        for m in batch {
            let Some((host, partition)) = self.owned(m.topic(), m.partition()) else {
                continue;
            };
            let aggregate = self.hosts[host].aggregate_type();
            let processed = match m.payload() {
                None => Err("the record has no value".to_string()),
                Some(bytes) => {
                    match self.block_on(self.codec.decode_value(bytes, &self.upcasters)) {
                        Ok(decoded) => {
                            let stamp = Stamp {
                                command_at_ms: m.timestamp().to_millis().unwrap_or(now),
                                now_ms: now,
                            };
                            self.hosts[host].process(
                                partition,
                                m.key(),
                                &decoded.full_name,
                                &decoded.value,
                                stamp,
                            )
                        }
                        Err(e @ WireError::Registry(_)) => return Err(e.into()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            let processed = match processed {
                Ok(p) => p,
                Err(reason) => {
                    self.dead_letter(m, &reason, now)?;
                    self.meters
                        .commands
                        .with_label_values(&[aggregate, "dead_lettered"])
                        .inc();
                    continue;
                }
            };
            let outcome = if processed.duplicate {
                "duplicate"
            } else {
                match processed.result.outcome {
                    causeway_contracts::records::CommandOutcome::Accepted => "accepted",
                    causeway_contracts::records::CommandOutcome::Rejected => "rejected",
                }
            };
            self.meters
                .commands
                .with_label_values(&[aggregate, outcome])
                .inc();
            // Every record this command leads to continues its trace.
            let trace = m.headers().map(|h| {
                causeway_observe::propagation::child(
                    &headers::trace_context(h),
                    "aggregate-processor process",
                )
            });
            let out_headers = || {
                trace
                    .as_ref()
                    .map(|cx| headers::with_trace_context(OwnedHeaders::new(), cx))
            };
            let events_topic = self.hosts[host].topics().events.as_str();
            let key = processed.aggregate_id.as_bytes();
            for (full_name, value) in processed.events {
                let bytes =
                    self.block_on(self.codec.encode_value(events_topic, full_name, value))?;
                let mut record = BaseRecord::to(events_topic)
                    .partition(partition)
                    .key(key)
                    .payload(bytes.as_slice());
                if let Some(h) = out_headers() {
                    record = record.headers(h);
                }
                self.send(record)?;
            }
            let bytes = self.block_on(self.codec.encode(
                &self.config.results_topic,
                "causeway.CommandResult",
                &processed.result,
            ))?;
            let mut record = BaseRecord::to(&self.config.results_topic)
                .partition(partition % self.results_partitions)
                .key(processed.result.command_id.as_bytes())
                .payload(bytes.as_slice());
            if let Some(h) = out_headers() {
                record = record.headers(h);
            }
            self.send(record)?;
        }
        // Each changed state once, after the whole batch: the changelog keeps the latest per key.
        let mut dirty = Vec::new();
        for host in 0..self.hosts.len() {
            dirty.clear();
            self.hosts[host]
                .take_dirty(now, &mut dirty)
                .map_err(|why| {
                    BatchError::Stop(ProcessorError::Wire(WireError::Unencodable {
                        subject: self.hosts[host].state_record().to_string(),
                        why,
                    }))
                })?;
            let topic = self.hosts[host].topics().changelog.clone();
            let record_name = self.hosts[host].state_record();
            for state in dirty.drain(..) {
                let bytes =
                    self.block_on(self.codec.encode_value(&topic, record_name, state.value))?;
                self.send(
                    BaseRecord::to(&topic)
                        .partition(state.partition)
                        .key(state.aggregate_id.as_bytes())
                        .payload(bytes.as_slice()),
                )?;
            }
        }
        Ok(())
    }

    /// Park `m` in the group's DLQ with why, inside the transaction.
    fn dead_letter(
        &self,
        m: &BorrowedMessage<'_>,
        reason: &str,
        now: i64,
    ) -> Result<(), KafkaError> {
        tracing::warn!(
            topic = m.topic(),
            partition = m.partition(),
            offset = m.offset(),
            reason,
            "dead-lettering a command record"
        );
        let mut h = OwnedHeaders::new();
        if let Some(original) = m.headers() {
            for header in original.iter() {
                h = h.insert(header);
            }
        }
        let partition = m.partition().to_string();
        let offset = m.offset().to_string();
        let at = now.to_string();
        for (key, value) in [
            (dlq_headers::REASON, reason),
            (dlq_headers::CLASS, "poison"),
            (dlq_headers::TOPIC, m.topic()),
            (dlq_headers::PARTITION, partition.as_str()),
            (dlq_headers::OFFSET, offset.as_str()),
            (dlq_headers::GROUP, self.config.group_id.as_str()),
            (dlq_headers::AT, at.as_str()),
        ] {
            h = h.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.dlq_topic).headers(h);
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(p) = m.payload() {
            record = record.payload(p);
        }
        self.send(record)
    }
}

//! The transactional processor: consumes `<context>.<aggregate>.commands` read_committed and, in ONE
//! Kafka transaction per batch, produces the events, the changed aggregate states (changelog), the
//! command results and dead letters, and commits the consumed offsets with the group metadata (EOS v2,
//! one transactional producer per process). docs/adr/0009-aggregate-state.md and
//! docs/adr/0010-processor-faults.md have the why.
//!
//! The loop runs on a thread of its own (librdkafka's transactional calls block):
//! 1. poll a batch (up to `max_batch_records`, or what arrived within `commit_interval_ms`); no
//!    transaction is open while polling, so a revocation never finds one;
//! 2. begin; per record, in partition order: a record off its key's murmur2 home partition is forwarded
//!    there; otherwise decode, decide, build every record the command leads to, and only then keep the
//!    new state and send them (all or nothing); poison goes to `<group>.dlq` with its reason, and a
//!    command whose id can be read gets a `dead_lettered` result;
//! 3. produce each changed state once, send the offsets, commit;
//! 4. on a failure: librdkafka's class decides (retry the call, abort and restore the touched
//!    partitions, or stop for a restart).
//!
//! On assignment, partitions stay paused until their committed offsets are stable (pending
//! transactional commits resolved), their changelog is read to its end, and the consumer is positioned
//! at the committed offset.
//!
//! # Layout
//! - `mod.rs`: [`Processor`], its start-up (clients, topic checks) and the state of a run.
//! - `config.rs`: [`ProcessorConfig`], the `[processor]` section.
//! - `error.rs`: [`ProcessorError`] and the classes of a failed batch.
//! - `meters.rs`: its metrics.
//! - `batch.rs`: the loop: poll a batch, process it, react to rebalances and failures.
//! - `command.rs`: one command record: forward, decide, build, write.
//! - `transaction.rs`: begin, commit, abort by librdkafka's contract; sending and delivery waits.
//! - `progress.rs`: readiness and health from progress (a stall with work waiting).
//! - `restore.rs`: restoring the state of assigned partitions from the changelog.
//! - `dead_letter.rs`: dead letters and their headers.
//! - `rebalance.rs`: the consumer context that queues assignment changes.

mod batch;
mod command;
mod config;
mod dead_letter;
mod error;
mod meters;
mod progress;
mod rebalance;
mod restore;
mod store;
mod transaction;

use std::collections::HashMap;
use std::time::Duration;

use causeway_contracts::hosting::{Hosted, Limits};
use causeway_contracts::upcast::Upcasters;
use causeway_contracts::wire::Codec;
use causeway_runtime::Shutdown;
use prometheus::Registry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::BaseProducer;
use store::{Delivered, LocalState};
use tokio::runtime::Handle;

pub use crate::dead_letter::dlq_headers;
pub use config::ProcessorConfig;
pub use error::ProcessorError;
pub use progress::Probe;
pub use rebalance::{Change, Rebalances};

use crate::config::{KafkaConfig, OffsetMode};
use crate::error::Error;
use crate::group::GroupConsumer;
use meters::Meters;

/// Wait until Kafka and the schema registry at `registry_url` answer, as a service running the processor
/// does before it starts; `Ok(false)` when shutdown came first.
pub async fn wait_for_dependencies(
    ctx: &causeway_runtime::ServiceContext,
    kafka: &KafkaConfig,
    registry_url: &str,
) -> Result<bool, Error> {
    // Both at once: a start waits for the slower, not for the two in turn (and not for the other
    // when one fails for good).
    let registry = async {
        ctx.wait_for("schema registry", || {
            causeway_contracts::registry::answers(registry_url)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))
    };
    let (broker, registry) =
        tokio::try_join!(crate::client::wait_for_broker(ctx, kafka), registry)?;
    Ok(broker && registry)
}

/// A processor hosting one or more aggregate types. Build it, then [`Processor::run`] it on a thread
/// that may block.
pub struct Processor {
    /// The service it runs in: its Kafka clients' purpose and the trace spans' names.
    service: &'static str,
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

/// The outcome label under which [`Run::batch_counts`] tallies forwarded records.
const FORWARDED: &str = "forwarded";

/// How long a blocking Kafka call may take before the batch is retried.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a producer's `message.max.bytes` is when the config does not say.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;

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
            service: "aggregate-processor",
            config,
            kafka,
            hosts: Vec::new(),
            upcasters: Upcasters::default(),
        }
    }

    /// Run in service `name` (the Kafka clients' purpose, the trace spans' names).
    pub fn service(mut self, name: &'static str) -> Self {
        self.service = name;
        self
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
    /// `runtime` runs the registry calls; `report` is told (from a thread of its own) when the instance
    /// turns [`Probe::Ready`] (the group's first assignment is restored: a rolling update waits for it),
    /// [`Probe::NotReady`] (no batch committed for `stall_ready_ms` although work is waiting, or
    /// stopping) or [`Probe::Stuck`] (the same for `stall_health_ms`).
    pub fn run(
        self,
        runtime: Handle,
        shutdown: Shutdown,
        registry: &Registry,
        report: impl Fn(Probe) + Send + 'static,
    ) -> Result<(), ProcessorError> {
        let meters = Meters::new(registry).map_err(|e| {
            ProcessorError::Kafka(Error::Task(format!("cannot register metrics: {e}")))
        })?;
        // Each hosted aggregate's series shown from the start, at zero.
        for host in self.hosts.iter().filter(|h| h.answers_commands()) {
            meters.show(host.aggregate_type());
        }
        let kafka = self.kafka.clone();
        let transactional_id = self.config.transactional_id();
        let mut consumer_config = kafka.consumer_config(
            self.service,
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
        // Prefetch a few batches ahead, not librdkafka's 100,000 records per partition: with a
        // backlog it held all of them, about 280 bytes of its own per record beside the record
        // (measured: 1,000,000 commands waiting, peak RSS 290 MiB -> 166 MiB).
        if !kafka.properties.contains_key("queued.min.messages") {
            // librdkafka takes 1 to 10,000,000.
            let ahead = self
                .config
                .max_batch_records
                .saturating_mul(4)
                .clamp(1000, 10_000_000);
            consumer_config.set("queued.min.messages", ahead.to_string());
        }
        // (It also lowers the consumer's fetch.max.bytes to 4 MiB unless set: a record larger than
        // that is still fetched, alone.)
        if !kafka.properties.contains_key("queued.max.messages.kbytes") {
            consumer_config.set("queued.max.messages.kbytes", "4096");
        }
        // The lag metrics come from librdkafka's statistics.
        if !kafka.properties.contains_key("statistics.interval.ms") {
            consumer_config.set("statistics.interval.ms", "1000");
        }
        let lag = crate::lag::ConsumerLag::new(
            registry,
            &self.config.group_id,
            crate::lag::LagFrom::Position,
        )
        .map_err(|e| ProcessorError::Kafka(Error::Task(format!("cannot register metrics: {e}"))))?;
        // Marked closing before it is dropped: closing never waits on a late assignment.
        let consumer: GroupConsumer<BaseConsumer<Rebalances>, Rebalances> = GroupConsumer::new(
            consumer_config
                .create_with_context(Rebalances::new(&consumer_config, Some(lag)))
                .map_err(|source| Error::Client {
                    what: "consumer",
                    source,
                })?,
        );
        // The topics' configs are read while the layout is checked (each is a round trip or more).
        let limits = runtime.spawn(described::<usize>(
            kafka.clone(),
            self.written_topics(),
            "max.message.bytes",
        ));
        let retention = self.config.state_file().map(|_| {
            runtime.spawn(described::<i64>(
                kafka.clone(),
                self.stored_changelogs().map(str::to_string).collect(),
                "delete.retention.ms",
            ))
        });
        let layout = Layout::check(&consumer, &self.hosts, &self.config.results_topic)?;
        let record_limits = self.record_limits(&kafka, joined(runtime.block_on(limits)));
        // The changelogs whose delivered offsets the store checkpoints.
        let stored: Vec<String> = match self.config.state_file() {
            Some(_) => self.stored_changelogs().map(str::to_string).collect(),
            None => Vec::new(),
        };
        let producer = transaction::producer(
            self.service,
            &kafka,
            &self.config,
            &transactional_id,
            record_limits.smallest(),
            Delivered::new(stored),
        )?;
        let local = retention.and_then(|r| self.local_state(joined(runtime.block_on(r))));
        let topics: Vec<&str> = self
            .hosts
            .iter()
            .map(|h| h.topics().input.as_str())
            .collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| Error::Operation {
                operation: "subscribe",
                source,
            })?;
        tracing::info!(
            transactional_id = %transactional_id,
            group = %self.config.group_id,
            topics = ?topics,
            record_limits = ?record_limits.by_topic,
            "processor consuming"
        );
        let codec = Codec::new(&self.config.registry_url);
        let progress = progress::Progress::new();
        let watchdog = progress::watch(
            progress.clone(),
            Duration::from_millis(self.config.stall_ready_ms),
            Duration::from_millis(self.config.stall_health_ms),
            shutdown.clone(),
            report,
        );
        let transaction_timeout = self.config.effective_transaction_timeout(&kafka);
        // The name of the span each processed input opens, once per process.
        let span: &'static str = Box::leak(format!("{} process", self.service).into_boxed_str());
        let mut run = Run {
            service: self.service,
            span,
            dlq_topic: self.config.dlq_topic(),
            limits: self.config.limits(),
            config: self.config,
            kafka,
            hosts: self.hosts,
            upcasters: self.upcasters,
            codec,
            runtime,
            producer: std::sync::Arc::new(producer),
            layout,
            record_limits,
            partitions: HashMap::new(),
            positions: HashMap::new(),
            fired: std::collections::HashSet::new(),
            anchor: std::collections::HashSet::new(),
            assigned: false,
            batch_states: HashMap::new(),
            spans: Vec::new(),
            batch_counts: HashMap::new(),
            strict: false,
            transaction_began: std::time::Instant::now(),
            transaction_timeout,
            meters,
            shutdown,
            progress,
            restore: None,
            local,
            state_writers: HashMap::new(),
            writers: std::cell::RefCell::new(HashMap::new()),
        };
        let mut outcome = run.run(&consumer);
        if outcome.is_ok() {
            outcome = run.flush_store();
        }
        run.progress.done();
        if watchdog.join().is_err() {
            tracing::error!("the readiness watchdog panicked");
        }
        if let Err(e @ ProcessorError::Hung { .. }) = &outcome {
            // Closing a consumer whose coordinator is lost can block as the call did: the process is
            // about to exit for a restart, and the broker forgets this member when its session ends.
            tracing::error!(error = %e, "leaving the Kafka clients unclosed");
            std::mem::forget(consumer);
            std::mem::forget(run);
        }
        outcome
    }

    /// Every topic the processor writes to: results, dead letters, the hosts' own topics and the
    /// targets of their commands.
    fn written_topics(&self) -> Vec<String> {
        let mut topics = vec![self.config.results_topic.clone(), self.config.dlq_topic()];
        for h in &self.hosts {
            topics.extend(h.topics().co_partitioned().map(str::to_string));
            topics.extend(h.targets());
        }
        topics
    }

    /// The changelogs of the hosts whose states the on-disk store keeps.
    fn stored_changelogs(&self) -> impl Iterator<Item = &str> {
        self.hosts
            .iter()
            .filter(|h| h.stores_states())
            .filter_map(|h| h.topics().changelog.as_deref())
    }

    /// The on-disk store when `state_dir` is set, with the `delete.retention.ms` of each changelog it
    /// keeps states of. The file itself is opened when the first restore begins: an older process
    /// under this identity holds it until it is fenced (the consumer joining fences its consumer) and
    /// stops.
    fn local_state(&self, retention: Result<HashMap<String, i64>, Error>) -> Option<LocalState> {
        let file = self.config.state_file()?;
        let retention = match retention {
            Ok(by_topic) => by_topic,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the changelogs' delete.retention.ms; no checkpoint is trusted (each start reads the whole changelog)");
                HashMap::new()
            }
        };
        Some(LocalState::new(
            file,
            self.config.state_store_cache_bytes,
            self.config.state_cache_states,
            Duration::from_millis(self.config.state_flush_ms),
            retention,
        ))
    }

    /// The largest record the processor may write to each topic: the topic's `max.message.bytes`, and
    /// at most the producer's own `message.max.bytes`. A command whose records would be larger is
    /// dead-lettered instead of failing every transaction it is in.
    fn record_limits(
        &self,
        kafka: &KafkaConfig,
        described: Result<HashMap<String, usize>, Error>,
    ) -> RecordLimits {
        let producer_max = kafka
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(LIBRDKAFKA_MESSAGE_MAX_BYTES);
        let by_topic = match described {
            Ok(by_topic) => by_topic
                .into_iter()
                .map(|(t, v)| (t, v.min(producer_max)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, producer_max, "cannot read the topics' max.message.bytes; using the producer's");
                HashMap::new()
            }
        };
        RecordLimits {
            by_topic,
            default: producer_max,
        }
    }
}

/// Config `key` of each of `topics` that sets it to a `T`, by topic.
async fn described<T: std::str::FromStr>(
    kafka: KafkaConfig,
    topics: Vec<String>,
    key: &'static str,
) -> Result<HashMap<String, T>, Error> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let values = crate::topology::topic_config(&kafka, &names, key, CALL_TIMEOUT).await?;
    Ok(topics
        .into_iter()
        .zip(values)
        .filter_map(|(t, v)| Some((t, v?.parse::<T>().ok()?)))
        .collect())
}

/// What a task spawned on the runtime returned (a task that panicked or was cancelled: an error).
fn joined<T>(outcome: Result<Result<T, Error>, tokio::task::JoinError>) -> Result<T, Error> {
    outcome.unwrap_or_else(|e| Err(Error::Task(e.to_string())))
}

/// The largest record each topic takes.
#[derive(Debug)]
struct RecordLimits {
    by_topic: HashMap<String, usize>,
    /// For a topic not described: the producer's `message.max.bytes`.
    default: usize,
}

impl RecordLimits {
    fn of(&self, topic: &str) -> usize {
        self.by_topic.get(topic).copied().unwrap_or(self.default)
    }

    fn smallest(&self) -> usize {
        self.by_topic
            .values()
            .copied()
            .fold(self.default, usize::min)
    }
}

/// Partition counts, checked at start: each host's input, events and changelog have one count (the
/// processor writes to the input's partition number), the topics hosts send to exist, and so does the
/// results topic.
#[derive(Debug)]
struct Layout {
    /// Per host: the partition count of its topics.
    partitions: Vec<i32>,
    /// The results topic's partition count.
    results: i32,
    /// The partition count of each topic hosts send to (their records go to their key's murmur2 home).
    targets: HashMap<String, i32>,
}

impl Layout {
    fn check(
        consumer: &BaseConsumer<Rebalances>,
        hosts: &[Box<dyn Hosted>],
        results_topic: &str,
    ) -> Result<Self, ProcessorError> {
        let count = |topic: &str| -> Result<i32, ProcessorError> {
            let metadata =
                consumer
                    .fetch_metadata(Some(topic), CALL_TIMEOUT)
                    .map_err(|source| Error::Operation {
                        operation: "fetch topic metadata",
                        source,
                    })?;
            let found = metadata
                .topics()
                .first()
                .filter(|t| t.error().is_none())
                .map(|t| t.partitions().len())
                .unwrap_or(0);
            Ok(i32::try_from(found).unwrap_or(i32::MAX))
        };
        let mut missing = Vec::new();
        let mut mismatched = Vec::new();
        let mut partitions = Vec::with_capacity(hosts.len());
        let mut targets = HashMap::new();
        let mut missing_targets = Vec::new();
        for host in hosts {
            let t = host.topics();
            let mut counts = Vec::with_capacity(3);
            for topic in t.co_partitioned() {
                counts.push((topic, count(topic)?));
            }
            missing.extend(counts.iter().filter(|(_, n)| *n == 0).map(|(t, _)| *t));
            if counts.iter().all(|(_, n)| *n > 0) && counts.iter().any(|(_, n)| *n != counts[0].1) {
                let shown: Vec<String> = counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
                mismatched.push(shown.join(", "));
            }
            partitions.push(counts[0].1);
            for target in host.targets() {
                if targets.contains_key(&target) {
                    continue;
                }
                let n = count(&target)?;
                if n == 0 {
                    missing_targets.push(target.clone());
                }
                targets.insert(target, n);
            }
        }
        missing.extend(missing_targets.iter().map(String::as_str));
        let results = count(results_topic)?;
        if results == 0 {
            missing.push(results_topic);
        }
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!(
                "missing: {} (create them with `causeway topics apply`)",
                missing.join(", ")
            ));
        }
        for m in mismatched {
            problems.push(format!(
                "partition counts differ: {m}; the input, events and changelog of one aggregate \
                 or saga type must have the same count, since each event and state is written to \
                 the partition number of its input"
            ));
        }
        if !problems.is_empty() {
            return Err(ProcessorError::Topics(problems.join("; ")));
        }
        Ok(Self {
            partitions,
            results,
            targets,
        })
    }
}

/// One run of the processor: its clients, hosts and what it owns.
struct Run {
    service: &'static str,
    /// The name of the span each processed input opens (`<service> process`).
    span: &'static str,
    config: ProcessorConfig,
    kafka: KafkaConfig,
    hosts: Vec<Box<dyn Hosted>>,
    upcasters: Upcasters,
    codec: Codec,
    runtime: Handle,
    producer: std::sync::Arc<BaseProducer<Delivered>>,
    layout: Layout,
    limits: Limits,
    record_limits: RecordLimits,
    partitions: HashMap<Owned, PartitionState>,
    /// The next offset to consume of each ready partition, as last committed (sent with a transaction
    /// that fires something due there, so that the group fences a zombie's).
    positions: HashMap<Owned, i64>,
    /// The partitions where the open transaction fired something due.
    fired: std::collections::HashSet<Owned>,
    /// Partitions positioned at their end for want of a committed offset: that offset is committed
    /// with the next transaction.
    anchor: std::collections::HashSet<Owned>,
    /// The group assigned this instance its partitions at least once (possibly none).
    assigned: bool,
    /// The encoded state records of the batch being built, the latest per aggregate: each changed
    /// state is written once per transaction.
    batch_states: HashMap<(usize, i32, String), Vec<u8>>,
    /// The spans of the open transaction's traced inputs (when spans are exported), ended with it.
    spans: Vec<causeway_observe::propagation::Context>,
    /// Build each command's state record with it (after a batch whose states could not be written),
    /// instead of each changed state once per batch.
    strict: bool,
    /// Commands of the open transaction by host and outcome (and forwarded records, as [`FORWARDED`]),
    /// added to the metrics once it commits.
    batch_counts: HashMap<(usize, &'static str), u64>,
    /// When the open transaction began.
    transaction_began: std::time::Instant,
    /// The transaction timeout in force (ProcessorConfig::effective_transaction_timeout).
    transaction_timeout: Duration,
    dlq_topic: String,
    meters: Meters,
    shutdown: Shutdown,
    progress: std::sync::Arc<progress::Progress>,
    /// The restore in progress, if any.
    restore: Option<restore::Restore>,
    /// The on-disk store (`state_dir`), if any.
    local: Option<LocalState>,
    /// Per host: the prepared writer of its changelog's state record.
    state_writers: HashMap<usize, std::sync::Arc<causeway_contracts::wire::Writer>>,
    /// Prepared writers of the events and results it writes, by host (or the results' slot) and
    /// record name.
    writers: std::cell::RefCell<
        HashMap<(usize, &'static str), std::sync::Arc<causeway_contracts::wire::Writer>>,
    >,
}

impl Run {
    fn owned(&self, topic: &str, partition: i32) -> Option<Owned> {
        self.hosts
            .iter()
            .position(|h| h.topics().input == topic)
            .map(|i| (i, partition))
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

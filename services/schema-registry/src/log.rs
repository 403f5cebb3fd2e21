//! The `_schemas` topic: the registry's only storage, and the election of its one writer.
//!
//! Every instance runs a reader that folds `_schemas` into the [`Store`] and follows the leader topic
//! (`<topic>_leader`), where the current writer announces its URL. One instance at a time is the
//! writer: the member of the election group that Kafka assigns the leader topic's only partition.
//! On election it initialises the transactional producer whose `transactional.id` every instance
//! shares (fencing any earlier writer, dead or alive), appends a no-op and its announcement in one
//! transaction, and waits to read them back, so it holds everything committed before it decides an id.
//! Losing the assignment drops the writer. Other instances forward writes to the announced URL.
//! See docs/adr/0006-schema-registry.md.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use causeway_kafka::config::OffsetMode;
use causeway_kafka::group::{GroupConsumer, Member, Membership};
use causeway_kafka::topology::{self, Topology};
use causeway_kafka::{KafkaConfig, client};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Mutex, MutexGuard, mpsc, watch};

use crate::config::RegistryConfig;
use crate::error::{ApiError, Error};
use crate::model::{Key, OTHER_KEY_MAGIC};
use crate::store::Store;

/// The registry's state, its log, and its part in the election.
#[derive(Clone)]
pub struct Log {
    store: Arc<RwLock<Store>>,
    applied: watch::Receiver<i64>,
    leader_url: watch::Receiver<Option<String>>,
    writer: Arc<Mutex<Option<Writer>>>,
    leading: Arc<AtomicBool>,
    /// Mirrors `leading` on `/metrics` (`causeway_registry_leader`).
    leader_gauge: prometheus::IntGauge,
    kafka: KafkaConfig,
    config: RegistryConfig,
    own_url: String,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("applied", &*self.applied.borrow())
            .field("leading", &self.is_leader())
            .finish_non_exhaustive()
    }
}

/// The writer; hold it (through [`Log::writer`]) from reading the store to writing, so that the decision
/// (next id, next version) and the record it leads to cannot interleave with another request.
pub struct Writer {
    producer: FutureProducer,
    topic: String,
    leader_topic: String,
    applied: watch::Receiver<i64>,
    timeout: Duration,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// The reader and election tasks; either ending is the service's end.
#[derive(Debug)]
pub struct Tasks {
    /// Folds the log.
    pub reader: tokio::task::JoinHandle<Result<(), Error>>,
    /// Takes part in the election.
    pub election: tokio::task::JoinHandle<Result<(), Error>>,
}

fn op(operation: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> causeway_kafka::Error {
    move |source| causeway_kafka::Error::Operation { operation, source }
}

impl Log {
    /// Make sure both topics exist, start the reader, catch up with everything committed so far, and
    /// join the election. `own_url` is where other instances forward writes while this one leads;
    /// `leader_gauge` is set to 1 while it does.
    pub async fn open(
        kafka: &KafkaConfig,
        config: &RegistryConfig,
        own_url: String,
        leader_gauge: prometheus::IntGauge,
    ) -> Result<(Self, Tasks), Error> {
        ensure_topics(kafka, config).await?;
        let store = Arc::new(RwLock::new(Store::default()));
        let (applied_tx, applied) = watch::channel(0i64);
        let (leader_tx, leader_url) = watch::channel(None);

        let reader_group = format!("{}-reader", config.topic);
        let consumer = client::consumer(
            kafka,
            "schema-registry",
            &reader_group,
            OffsetMode::Transactional,
        )?;
        let mut assignment = TopicPartitionList::new();
        for topic in [config.topic.as_str(), config.leader_topic().as_str()] {
            assignment
                .add_partition_offset(topic, 0, Offset::Beginning)
                .map_err(op("assign"))?;
        }
        consumer.assign(&assignment).map_err(op("assign"))?;
        let reader = tokio::spawn(read(
            consumer,
            Arc::clone(&store),
            applied_tx,
            leader_tx,
            config.topic.clone(),
        ));

        let log = Self {
            store,
            applied,
            leader_url,
            writer: Arc::new(Mutex::new(None)),
            leading: Arc::new(AtomicBool::new(false)),
            leader_gauge,
            kafka: kafka.clone(),
            config: config.clone(),
            own_url,
        };
        log.catch_up().await?;

        let (events_tx, events) = mpsc::unbounded_channel();
        let mut election_config = kafka.consumer_config(
            "schema-registry-election",
            &config.election_group(),
            OffsetMode::Transactional,
        );
        election_config
            .set(
                "session.timeout.ms",
                config.election_session_timeout_ms.to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (config.election_session_timeout_ms / 6)
                    .max(100)
                    .to_string(),
            );
        let election_consumer: ElectionConsumer = GroupConsumer::new(
            election_config
                .create_with_context(Election {
                    events: events_tx,
                    membership: Membership::new(&election_config),
                })
                .map_err(|source| causeway_kafka::Error::Client {
                    what: "election consumer",
                    source,
                })?,
        );
        election_consumer
            .subscribe(&[config.leader_topic().as_str()])
            .map_err(op("subscribe"))?;
        let election = tokio::spawn(elect(election_consumer, events, log.clone()));
        Ok((log, Tasks { reader, election }))
    }

    /// Append a no-op with a plain idempotent producer and wait until the reader applies it: after
    /// that, the store holds everything committed before this instance started.
    async fn catch_up(&self) -> Result<(), Error> {
        let producer = client::producer(&self.kafka, "schema-registry")?;
        let key = serde_json::to_vec(&Key::Noop {
            magic: OTHER_KEY_MAGIC,
        })
        .unwrap_or_default();
        let timeout = Duration::from_millis(self.config.write_timeout_ms);
        let delivery = producer
            .send(
                FutureRecord::<Vec<u8>, Vec<u8>>::to(&self.config.topic)
                    .key(&key)
                    .partition(0),
                timeout,
            )
            .await
            .map_err(|(e, _)| Error::Reader {
                topic: self.config.topic.clone(),
                why: format!("append a no-op: {e}"),
            })?;
        let mut applied = self.applied.clone();
        applied
            .wait_for(|next| *next > delivery.offset)
            .await
            .map_err(|_| Error::Reader {
                topic: self.config.topic.clone(),
                why: "the reader stopped".into(),
            })?;
        Ok(())
    }

    /// Take the writer role (this instance was elected).
    async fn lead(&self) -> Result<(), ApiError> {
        let mut slot = self.writer.lock().await;
        if slot.is_some() {
            return Ok(());
        }
        let timeout = Duration::from_millis(self.config.write_timeout_ms);
        let producer = {
            let kafka = self.kafka.clone();
            let id = self.config.writer_transactional_id.clone();
            tokio::task::spawn_blocking(move || {
                client::transactional_producer(&kafka, "schema-registry", &id, timeout)
            })
            .await
            .map_err(|e| ApiError::store(&e.to_string()))?
            .map_err(|e| ApiError::store(&e.to_string()))?
        };
        let mut writer = Writer {
            producer,
            topic: self.config.topic.clone(),
            leader_topic: self.config.leader_topic(),
            applied: self.applied.clone(),
            timeout,
        };
        writer.announce(&self.own_url).await?;
        *slot = Some(writer);
        self.leading.store(true, Ordering::Release);
        self.leader_gauge.set(1);
        tracing::info!(url = %self.own_url, "elected: this instance is the schema writer");
        Ok(())
    }

    /// Give the writer role up (the assignment was revoked).
    async fn resign(&self) {
        self.leading.store(false, Ordering::Release);
        self.leader_gauge.set(0);
        if self.writer.lock().await.take().is_some() {
            tracing::info!("no longer the schema writer");
        }
    }

    /// Read access to the state.
    pub fn store(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        // A panic while holding the lock leaves the store as it was before the record: still usable.
        self.store
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The writer, exclusively; `None` inside when this instance is not the leader.
    pub async fn writer(&self) -> MutexGuard<'_, Option<Writer>> {
        self.writer.lock().await
    }

    /// Whether this instance is the writer now.
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Where writes go: the announced leader's URL, if any.
    pub fn leader_url(&self) -> Option<String> {
        self.leader_url.borrow().clone()
    }

    /// The offset of the next record the reader will apply.
    pub fn applied(&self) -> i64 {
        *self.applied.borrow()
    }
}

/// What a write needs when this instance is not (or no longer) the writer.
pub fn not_leader() -> ApiError {
    ApiError::forward(
        "this instance is not the schema writer and the writer is not known yet; retry",
    )
}

impl Writer {
    /// Append `records` to the schema topic in one transaction and wait until the reader applied them.
    pub async fn write(&mut self, records: Vec<(Key, Option<Vec<u8>>)>) -> Result<(), ApiError> {
        let mut encoded = Vec::with_capacity(records.len());
        for (key, value) in records {
            let key = serde_json::to_vec(&key)
                .map_err(|e| ApiError::store(&format!("encode key: {e}")))?;
            encoded.push((self.topic.clone(), key, value));
        }
        self.append(encoded).await
    }

    async fn announce(&mut self, url: &str) -> Result<(), ApiError> {
        let noop = serde_json::to_vec(&Key::Noop {
            magic: OTHER_KEY_MAGIC,
        })
        .unwrap_or_default();
        let announcement =
            serde_json::to_vec(&serde_json::json!({ "url": url })).unwrap_or_default();
        self.append(vec![
            (
                self.leader_topic.clone(),
                b"leader".to_vec(),
                Some(announcement),
            ),
            (self.topic.clone(), noop, None),
        ])
        .await
    }

    /// One transaction; waits for the reader to pass the last schema-topic record.
    async fn append(
        &mut self,
        records: Vec<(String, Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), ApiError> {
        let store_err =
            |what: &str, e: &dyn std::fmt::Display| ApiError::store(&format!("{what}: {e}"));
        self.producer
            .begin_transaction()
            .map_err(|e| store_err("begin transaction", &e))?;
        let mut last_offset = -1;
        for (topic, key, value) in &records {
            let mut record = FutureRecord::<Vec<u8>, Vec<u8>>::to(topic)
                .key(key)
                .partition(0);
            if let Some(v) = value {
                record = record.payload(v);
            }
            match self.producer.send(record, self.timeout).await {
                Ok(delivery) if *topic == self.topic => last_offset = delivery.offset,
                Ok(_) => {}
                Err((e, _)) => {
                    self.abort().await;
                    return Err(store_err("append", &e));
                }
            }
        }
        let producer = self.producer.clone();
        let timeout = self.timeout;
        let committed = tokio::task::spawn_blocking(move || producer.commit_transaction(timeout))
            .await
            .map_err(|e| store_err("commit task", &e))?;
        if let Err(e) = committed {
            self.abort().await;
            return Err(store_err("commit", &e));
        }
        let mut applied = self.applied.clone();
        let caught_up =
            tokio::time::timeout(self.timeout, applied.wait_for(|next| *next > last_offset)).await;
        match caught_up {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ApiError::store("the log reader stopped")),
            Err(_) => Err(ApiError::timeout(
                "the write was committed but not read back in time; it will appear shortly",
            )),
        }
    }

    async fn abort(&mut self) {
        let producer = self.producer.clone();
        let timeout = self.timeout;
        let aborted =
            tokio::task::spawn_blocking(move || producer.abort_transaction(timeout)).await;
        if let Ok(Err(e)) = aborted {
            tracing::error!(error = %e, "aborting a failed schema write failed too");
        }
    }
}

/// Election events from the group's rebalances: `true` when this member holds the leader partition.
struct Election {
    events: mpsc::UnboundedSender<bool>,
    membership: Membership,
}

/// The election's consumer; marked closing before it is dropped, so a stopping instance never waits
/// on a late assignment.
type ElectionConsumer = GroupConsumer<StreamConsumer<Election>, Election>;

impl ClientContext for Election {}

impl Member for Election {
    fn membership(&self) -> &Membership {
        &self.membership
    }
}

impl ConsumerContext for Election {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        self.membership.rebalance(self, consumer, err, partitions);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let leading = match rebalance {
            Rebalance::Assign(partitions) => partitions.count() > 0,
            Rebalance::Revoke(_) => false,
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "election rebalance failed");
                false
            }
        };
        let _ = self.events.send(leading);
    }
}

async fn elect(
    consumer: ElectionConsumer,
    mut events: mpsc::UnboundedReceiver<bool>,
    log: Log,
) -> Result<(), Error> {
    loop {
        tokio::select! {
            // Polling keeps the membership alive and delivers the rebalances; the records themselves
            // are read by the log reader.
            polled = consumer.recv() => {
                if let Err(e) = polled {
                    tracing::warn!(error = %e, "election consumer");
                }
            }
            event = events.recv() => match event {
                Some(true) => {
                    if let Err(e) = log.lead().await {
                        // Another instance may have fenced us already; the next rebalance decides.
                        tracing::error!(error = %e, "could not take the writer role");
                    }
                }
                Some(false) => log.resign().await,
                None => return Ok(()),
            },
        }
    }
}

async fn read(
    consumer: StreamConsumer,
    store: Arc<RwLock<Store>>,
    applied: watch::Sender<i64>,
    leader: watch::Sender<Option<String>>,
    topic: String,
) -> Result<(), Error> {
    loop {
        let message = consumer.recv().await.map_err(|e| Error::Reader {
            topic: topic.clone(),
            why: e.to_string(),
        })?;
        let offset = message.offset();
        if message.topic() != topic {
            let url = message
                .payload()
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                .and_then(|v| v["url"].as_str().map(str::to_string));
            tracing::info!(leader = ?url, "the schema writer announced itself");
            leader.send_replace(url);
            continue;
        }
        if let Some(key) = message.key() {
            let outcome = {
                let mut store = store
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                store.apply(key, message.payload())
            };
            if let Err(why) = outcome {
                tracing::warn!(topic = %topic, offset, %why, "skipped a record of the schema log");
            }
        } else {
            tracing::warn!(topic = %topic, offset, "skipped a record without a key");
        }
        applied.send_replace(offset + 1);
    }
}

async fn ensure_topics(kafka: &KafkaConfig, config: &RegistryConfig) -> Result<(), Error> {
    let declared = format!(
        "[defaults]\npartitions = 1\nreplication_factor = {}\n\
         [[topic]]\nname = \"{}\"\ncleanup_policy = \"compact\"\n\
         [[topic]]\nname = \"{}\"\ncleanup_policy = \"compact\"\n",
        config.replication_factor,
        config.topic,
        config.leader_topic()
    );
    let topology = Topology::parse(&declared, "registry.topic")?;
    let report = topology::apply(kafka, &topology, false, Duration::from_secs(30)).await?;
    if let Some(drift) = report
        .drift
        .iter()
        .find(|d| d.what == "partitions" || d.what == "cleanup.policy")
    {
        return Err(Error::Topic(drift.to_string()));
    }
    for drift in &report.drift {
        tracing::warn!(%drift, "a schema topic differs from what the registry would create");
    }
    for topic in &report.created {
        tracing::info!(%topic, "created a schema topic");
    }
    Ok(())
}

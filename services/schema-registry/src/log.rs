//! The `_schemas` topic: the registry's only storage. A reader task folds every record into the
//! [`Store`]; a single transactional writer appends records and waits until the reader has applied them,
//! so a client that registers a schema and reads it back sees it (read-your-writes).
//!
//! Writes go through one transactional producer whose `transactional.id` is the same on every instance:
//! initialising it fences any earlier writer, so at most one instance can append at a time and an id is
//! never handed out twice (docs/adr/0006-schema-registry.md).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use causeway_kafka::topology::{self, Topology};
use causeway_kafka::{KafkaConfig, client};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Mutex, MutexGuard, watch};

use crate::config::RegistryConfig;
use crate::error::{ApiError, Error};
use crate::model::{Key, OTHER_KEY_MAGIC};
use crate::store::Store;

/// The registry's state and its log.
#[derive(Clone)]
pub struct Log {
    store: Arc<RwLock<Store>>,
    applied: watch::Receiver<i64>,
    writer: Arc<Mutex<Writer>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("applied", &*self.applied.borrow())
            .finish_non_exhaustive()
    }
}

/// The single writer; hold it (through [`Log::writer`]) from reading the store to writing, so that the
/// decision (next id, next version) and the record it leads to cannot interleave with another request.
pub struct Writer {
    producer: FutureProducer,
    topic: String,
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

impl Log {
    /// Make sure the topic exists as a single-partition compacted topic, start the reader, take the
    /// writer role, and return once the store holds everything written before.
    pub async fn open(
        kafka: &KafkaConfig,
        config: &RegistryConfig,
    ) -> Result<(Self, tokio::task::JoinHandle<Result<(), Error>>), Error> {
        ensure_topic(kafka, config).await?;
        let store = Arc::new(RwLock::new(Store::default()));
        let (applied_tx, applied) = watch::channel(0i64);

        let group = format!("{}-reader", config.topic);
        let consumer = client::consumer(
            kafka,
            "schema-registry",
            &group,
            causeway_kafka::config::OffsetMode::Transactional,
        )?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&config.topic, 0, Offset::Beginning)
            .map_err(|source| causeway_kafka::Error::Operation {
                operation: "assign",
                source,
            })?;
        consumer
            .assign(&assignment)
            .map_err(|source| causeway_kafka::Error::Operation {
                operation: "assign",
                source,
            })?;
        let reader = tokio::spawn(read(
            consumer,
            Arc::clone(&store),
            applied_tx,
            config.topic.clone(),
        ));

        let timeout = Duration::from_millis(config.write_timeout_ms);
        let producer = {
            let kafka = kafka.clone();
            let id = config.writer_transactional_id.clone();
            tokio::task::spawn_blocking(move || {
                client::transactional_producer(&kafka, "schema-registry", &id, timeout)
            })
            .await
            .map_err(|e| causeway_kafka::Error::Task(e.to_string()))??
        };
        let mut writer = Writer {
            producer,
            topic: config.topic.clone(),
            applied: applied.clone(),
            timeout,
        };
        // Reading our own no-op back proves the store holds everything committed before it.
        writer
            .write(vec![(
                Key::Noop {
                    magic: OTHER_KEY_MAGIC,
                },
                None,
            )])
            .await
            .map_err(|e| Error::Reader {
                topic: config.topic.clone(),
                why: e.message,
            })?;

        Ok((
            Self {
                store,
                applied,
                writer: Arc::new(Mutex::new(writer)),
            },
            reader,
        ))
    }

    /// Read access to the state.
    pub fn store(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        // A panic while holding the lock leaves the store as it was before the record: still usable.
        self.store
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The writer, exclusively.
    pub async fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().await
    }

    /// The offset of the next record the reader will apply.
    pub fn applied(&self) -> i64 {
        *self.applied.borrow()
    }
}

impl Writer {
    /// Append `records` in one transaction and wait until the reader has applied them.
    pub async fn write(&mut self, records: Vec<(Key, Option<Vec<u8>>)>) -> Result<(), ApiError> {
        let store_err =
            |what: &str, e: &dyn std::fmt::Display| ApiError::store(&format!("{what}: {e}"));
        self.producer
            .begin_transaction()
            .map_err(|e| store_err("begin transaction", &e))?;
        let mut last_offset = -1;
        for (key, value) in &records {
            let key = serde_json::to_vec(key).map_err(|e| store_err("encode key", &e))?;
            let mut record = FutureRecord::<Vec<u8>, Vec<u8>>::to(&self.topic)
                .key(&key)
                .partition(0);
            if let Some(v) = value {
                record = record.payload(v);
            }
            match self.producer.send(record, self.timeout).await {
                Ok(delivery) => last_offset = delivery.offset,
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
            tracing::error!(error = %e, "aborting a failed _schemas write failed too");
        }
    }
}

async fn read(
    consumer: StreamConsumer,
    store: Arc<RwLock<Store>>,
    applied: watch::Sender<i64>,
    topic: String,
) -> Result<(), Error> {
    loop {
        let message = consumer.recv().await.map_err(|e| Error::Reader {
            topic: topic.clone(),
            why: e.to_string(),
        })?;
        let offset = message.offset();
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

async fn ensure_topic(kafka: &KafkaConfig, config: &RegistryConfig) -> Result<(), Error> {
    let declared = format!(
        "[defaults]\npartitions = 1\nreplication_factor = {}\n[[topic]]\nname = \"{}\"\ncleanup_policy = \"compact\"\n",
        config.replication_factor, config.topic
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
        tracing::warn!(%drift, "the schema topic differs from what the registry would create");
    }
    if !report.created.is_empty() {
        tracing::info!(topic = %config.topic, "created the schema topic");
    }
    Ok(())
}

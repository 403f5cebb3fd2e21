//! Constructing clients from a [`KafkaConfig`], and checking that a broker answers.

use std::time::Duration;

use causeway_runtime::ServiceContext;
use rdkafka::ClientContext;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{KafkaConfig, OffsetMode};
use crate::error::Error;

/// An idempotent producer (`acks=all`). `purpose` names it in `client.id`.
pub fn producer(config: &KafkaConfig, purpose: &str) -> Result<FutureProducer, Error> {
    config
        .producer_config(purpose)
        .create()
        .map_err(|source| Error::Client {
            what: "producer",
            source,
        })
}

/// Send every (key, value) of `records` to `topic` in order, waiting while librdkafka's queue is full,
/// then wait for every acknowledgement. For loads, tools and tests; the services' hot paths batch
/// their own way.
pub async fn send_all<K: AsRef<str>, V: AsRef<[u8]>>(
    producer: &FutureProducer,
    topic: &str,
    records: &[(K, V)],
) -> Result<(), KafkaError> {
    let mut pending = Vec::with_capacity(records.len());
    for (key, value) in records {
        let mut record = rdkafka::producer::FutureRecord::to(topic)
            .key(key.as_ref())
            .payload(value.as_ref());
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    }
    for f in pending {
        match f.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e),
            Err(_) => return Err(KafkaError::Canceled),
        }
    }
    Ok(())
}

/// A transactional producer with `transactional_id`, its transactions initialised (this fences any
/// earlier producer with the same id). Blocks up to `timeout`: call from a blocking context.
pub fn transactional_producer(
    config: &KafkaConfig,
    purpose: &str,
    transactional_id: &str,
    timeout: Duration,
) -> Result<FutureProducer, Error> {
    use rdkafka::producer::Producer;
    let producer: FutureProducer = config
        .transactional_producer_config(purpose, transactional_id)
        .create()
        .map_err(|source| Error::Client {
            what: "transactional producer",
            source,
        })?;
    producer
        .init_transactions(timeout)
        .map_err(|source| Error::Operation {
            operation: "init_transactions",
            source,
        })?;
    Ok(producer)
}

/// A consumer in `group_id` reading `read_committed`, with offsets handled per `mode`.
pub fn consumer(
    config: &KafkaConfig,
    purpose: &str,
    group_id: &str,
    mode: OffsetMode,
) -> Result<StreamConsumer, Error> {
    config
        .consumer_config(purpose, group_id, mode)
        .create()
        .map_err(|source| Error::Client {
            what: "consumer",
            source,
        })
}

/// The context of a consumer that reads to partition ends (`enable.partition.eof`: a restore, the
/// gateway's results follower). Reaching an end is what it asked for, not an error: librdkafka also
/// reports it as a client error, which rdkafka's default context would log at ERROR each time. Every
/// other client error is logged as rdkafka does.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadsToEnd;

impl ClientContext for ReadsToEnd {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
            return;
        }
        tracing::error!(error = %error, reason, "Kafka client error");
    }
}

impl ConsumerContext for ReadsToEnd {}

/// An admin client.
pub fn admin(config: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, Error> {
    config
        .admin_config()
        .create()
        .map_err(|source| Error::Client {
            what: "admin",
            source,
        })
}

/// Succeeds once a broker answers a metadata request within `timeout`.
pub async fn check_broker(config: &KafkaConfig, timeout: Duration) -> Result<(), Error> {
    let admin = admin(config)?;
    let servers = config.bootstrap_servers.clone();
    // librdkafka's metadata call blocks its thread.
    let outcome = tokio::task::spawn_blocking(move || {
        admin
            .inner()
            .fetch_metadata(None, timeout)
            .map(|_| ())
            .map_err(|source| Error::Unreachable {
                servers,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                source,
            })
    })
    .await;
    match outcome {
        Ok(result) => result,
        Err(join) => Err(Error::Task(join.to_string())),
    }
}

/// Whether `topic` exists (has partitions) on the cluster.
pub async fn topic_exists(
    config: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<bool, Error> {
    let admin = admin(config)?;
    let topic = topic.to_string();
    let outcome = tokio::task::spawn_blocking(move || {
        admin
            .inner()
            .fetch_metadata(Some(&topic), timeout)
            .map(|m| {
                m.topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            })
            .map_err(|source| Error::Operation {
                operation: "fetch topic metadata",
                source,
            })
    })
    .await;
    match outcome {
        Ok(result) => result,
        Err(join) => Err(Error::Task(join.to_string())),
    }
}

/// Wait, with backoff, until a broker answers (`Ok(true)`), shutdown fires (`Ok(false)`), or the client
/// cannot work at all (a fatal error, such as a bad librdkafka property).
pub async fn wait_for_broker(ctx: &ServiceContext, config: &KafkaConfig) -> Result<bool, Error> {
    ctx.wait_for("kafka", || check_broker(config, BROKER_CHECK_TIMEOUT))
        .await
}

/// How long one reachability check waits for a metadata answer.
const BROKER_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

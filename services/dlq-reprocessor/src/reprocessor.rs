//! The job of `dlq-reprocessor`: wait for Kafka and Redis, serve the operator API, keep the depth
//! metrics, and run the consumer runner over the dead-letter topics, indexing each dead letter once.

use std::sync::Arc;
use std::time::Duration;

use causeway_contracts::wire::Codec;
use causeway_kafka::runner::{Failure, Handler, Runner};
use causeway_runtime::ServiceContext;
use rdkafka::Message;
use rdkafka::message::BorrowedMessage;

use crate::actions::{Desk, Meters};
use crate::api::{Api, router};
use crate::audit::Audit;
use crate::config::Config;
use crate::error::Error;
use crate::history::{self, Entry, History};
use crate::index::{Index, Letter, now_ms};
use causeway_contracts::records::CommandResult;
use causeway_contracts::wire::WireError;

/// How often the depth metrics are read from the index.
const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// Run until shutdown.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<(), Error> {
    if !causeway_kafka::client::wait_for_broker(&ctx, &config.kafka).await? {
        return Ok(());
    }
    if !ctx
        .wait_for("redis", || async {
            causeway_redis::ping(&config.redis)
                .await
                .map_err(Error::Redis)
        })
        .await?
    {
        return Ok(());
    }
    let connection = causeway_redis::connect(&config.redis).await?;
    let index = Index::new(connection, &config.dlq.prefix);
    let meters =
        Meters::new(ctx.metrics.registry()).map_err(|e| Error::Config(format!("metrics: {e}")))?;
    let producer = causeway_kafka::client::producer(&config.kafka, "replay")?;
    let codec = Codec::new(&config.dlq.registry_url);
    let indexing_codec = codec.clone();
    let history = History::new(
        index.connection(),
        &config.dlq.prefix,
        config.history.ttl_hours.saturating_mul(3600),
    );
    let desk = Desk {
        index: index.clone(),
        kafka: config.kafka.clone(),
        producer: producer.clone(),
        audit: Audit::new(
            producer,
            codec.clone(),
            &config.dlq.audit_topic,
            config.kafka.clone(),
        ),
        max_replays: config.dlq.max_replays,
        meters: meters.clone(),
    };
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| {
            Error::Config(format!(
                "cannot listen on {} (http.listen): {e}",
                config.http.listen
            ))
        })?;
    let api_desk = desk.clone();
    let api = Arc::new(Api {
        desk,
        codec,
        tokens: config.access.tokens.clone(),
        secret_headers: config
            .dlq
            .secret_headers
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        max_batch: config.dlq.max_batch,
        history: history.clone(),
        context: config.history.context.clone(),
        max_events: config.history.max_events,
        history_reads: tokio::sync::Semaphore::new(crate::api::HISTORY_READS),
    });
    let routes = causeway_observe::http::HttpMeters::new(ctx.metrics.registry())
        .map_err(|e| Error::Config(format!("metrics: {e}")))?
        .around(router(api));
    let server = {
        let shutdown = ctx.shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, routes)
                .with_graceful_shutdown(async move { shutdown.wait().await })
                .await
        })
    };
    tracing::info!(listen = %config.http.listen, "operator API serving");
    let depth = tokio::spawn(keep_depth(index.clone(), meters.clone(), ctx.clone()));
    let redrive = tokio::spawn(crate::redrive::run(
        api_desk,
        config.redrive.clone(),
        i64::try_from(config.dlq.keep_done_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX),
        ctx.clone(),
    ));
    let mut kafka = config.kafka.clone();
    // A pattern picks up a new DLQ topic within this (librdkafka's default is 5 minutes).
    kafka
        .properties
        .entry("topic.metadata.refresh.interval.ms".into())
        .or_insert_with(|| "30000".into());
    let mut topics = config.dlq.topics.clone();
    if !config.history.results_topic.is_empty() {
        topics.push(config.history.results_topic.clone());
    }
    let runner = Runner::new(kafka, config.consumer.clone(), &config.dlq.group_id, topics);
    let handler = Indexer {
        index,
        history,
        results_topic: config.history.results_topic.clone(),
        codec: indexing_codec,
        meters,
        runtime: tokio::runtime::Handle::current(),
    };
    causeway_kafka::projector::serve(runner, handler, &ctx).await?;
    depth.abort();
    redrive.abort();
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Config(format!("the operator API failed: {e}"))),
        Err(e) => Err(Error::Config(format!("the operator API task failed: {e}"))),
    }
}

/// The depth and age gauges, read from the index (so that every instance reports the same).
async fn keep_depth(index: Index, meters: Meters, ctx: ServiceContext) {
    loop {
        match index.depth().await {
            Ok(groups) => {
                let now = now_ms();
                for (group, n, oldest) in groups {
                    meters.show(&group);
                    meters.depth.with_label_values(&[&group]).set(n);
                    meters
                        .oldest
                        .with_label_values(&[&group])
                        .set(oldest.map_or(0, |o| ((now - o).max(0)) / 1000));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the depth of the dead-letter topics"),
        }
        match index.parked_behind().await {
            Ok(n) => meters.behind.set(n),
            Err(e) => tracing::warn!(error = %e, "cannot count the records waiting behind a head"),
        }
        tokio::select! {
            () = tokio::time::sleep(DEPTH_EVERY) => {}
            () = ctx.shutdown.wait() => return,
        }
    }
}

/// What the runner reads: a dead letter (with its record's correlation id, when it decodes), or a
/// command result for the history.
enum Indexed {
    Letter(Letter, Option<String>),
    Result(Entry),
}

/// Indexes each dead letter and each command result.
struct Indexer {
    index: Index,
    history: History,
    results_topic: String,
    codec: Codec,
    meters: Meters,
    runtime: tokio::runtime::Handle,
}

/// A Redis failure of the index: a key of another type is another writer in the index's key space;
/// no dead letter of a dead letter: stop, for an operator to fix.
fn index_failure(e: &redis::RedisError) -> Failure {
    match causeway_redis::failure(e) {
        Failure::Poison(why) | Failure::PoisonItem(_, why) => Failure::Fatal(format!(
            "{why} (is something else writing under the index's prefix?)"
        )),
        other => other,
    }
}

impl Handler for Indexer {
    type Item = Indexed;

    fn prepare(&mut self, record: &BorrowedMessage<'_>) -> Result<Option<Indexed>, Failure> {
        if record.topic() == self.results_topic {
            let Some(bytes) = record.payload() else {
                return Ok(None);
            };
            return match self
                .runtime
                .block_on(self.codec.decode::<CommandResult>(bytes))
            {
                Ok(d) => Ok(Some(Indexed::Result(Entry::of(record, d.value)))),
                Err(e @ WireError::Registry(_)) => Err(Failure::Transient(e.to_string())),
                Err(e) => {
                    tracing::warn!(error = %e, offset = record.offset(), "a command result that does not decode is left out of the history");
                    Ok(None)
                }
            };
        }
        // The correlation id, when the record decodes (a dead letter is indexed either way).
        let correlation = self
            .runtime
            .block_on(history::decode(&self.codec, record.payload()))
            .ok()
            .and_then(|(_, v)| history::correlation_of(&v));
        Ok(Some(Indexed::Letter(Letter::of(record), correlation)))
    }

    fn write(&mut self, items: &[Indexed]) -> Result<(), Failure> {
        let mut letters = Vec::new();
        let mut correlations = Vec::new();
        let mut results = Vec::new();
        for item in items {
            match item {
                Indexed::Letter(l, c) => {
                    letters.push(l.clone());
                    correlations.push(c.clone());
                }
                Indexed::Result(e) => results.push(e.clone()),
            }
        }
        let added = self
            .runtime
            .block_on(self.index.add(&letters))
            .map_err(|e| index_failure(&e))?;
        for ((l, new), correlation) in letters.iter().zip(added).zip(&correlations) {
            if let Some(c) = correlation {
                self.runtime
                    .block_on(self.history.file_letter(c, l))
                    .map_err(|e| index_failure(&e))?;
            }
            if new {
                self.meters
                    .letters
                    .with_label_values(&[&l.group, &l.class])
                    .inc();
            }
        }
        self.runtime
            .block_on(self.history.add(&results))
            .map_err(|e| index_failure(&e))?;
        Ok(())
    }
}

//! The job of `dlq-reprocessor`: wait for Kafka and Redis, serve the operator API, keep the depth
//! metrics, and run the consumer runner over the dead-letter topics, indexing each dead letter once.

use std::sync::Arc;
use std::time::Duration;

use causeway_contracts::wire::Codec;
use causeway_kafka::runner::{Failure, Handler, Runner};
use causeway_runtime::ServiceContext;
use rdkafka::message::BorrowedMessage;

use crate::actions::{Desk, Meters};
use crate::api::{Api, router};
use crate::audit::Audit;
use crate::config::Config;
use crate::error::Error;
use crate::index::{Index, Letter, now_ms};

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
    let desk = Desk {
        index: index.clone(),
        kafka: config.kafka.clone(),
        producer: producer.clone(),
        audit: Audit::new(producer, codec.clone(), &config.dlq.audit_topic),
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
    });
    let server = {
        let shutdown = ctx.shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, router(api))
                .with_graceful_shutdown(async move { shutdown.wait().await })
                .await
        })
    };
    tracing::info!(listen = %config.http.listen, "operator API serving");
    let depth = tokio::spawn(keep_depth(index.clone(), meters.clone(), ctx.clone()));
    let redrive = tokio::spawn(crate::redrive::run(
        api_desk,
        config.redrive.clone(),
        ctx.clone(),
    ));
    let mut kafka = config.kafka.clone();
    // A pattern picks up a new DLQ topic within this (librdkafka's default is 5 minutes).
    kafka
        .properties
        .entry("topic.metadata.refresh.interval.ms".into())
        .or_insert_with(|| "30000".into());
    let runner = Runner::new(
        kafka,
        config.consumer.clone(),
        &config.dlq.group_id,
        config.dlq.topics.clone(),
    );
    let handler = Indexer {
        index,
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
                    meters.depth.with_label_values(&[&group]).set(n);
                    meters
                        .oldest
                        .with_label_values(&[&group])
                        .set(oldest.map_or(0, |o| ((now - o).max(0)) / 1000));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the depth of the dead-letter topics"),
        }
        tokio::select! {
            () = tokio::time::sleep(DEPTH_EVERY) => {}
            () = ctx.shutdown.wait() => return,
        }
    }
}

/// Indexes each dead letter.
struct Indexer {
    index: Index,
    meters: Meters,
    runtime: tokio::runtime::Handle,
}

impl Handler for Indexer {
    type Item = Letter;

    fn prepare(&mut self, record: &BorrowedMessage<'_>) -> Result<Option<Letter>, Failure> {
        Ok(Some(Letter::of(record)))
    }

    fn write(&mut self, items: &[Letter]) -> Result<(), Failure> {
        let added =
            self.runtime.block_on(self.index.add(items)).map_err(
                |e| match causeway_redis::failure(&e) {
                    // The index's own keys hold something else: another writer in its key space. No
                    // dead letter of a dead letter: stop, for an operator to fix.
                    Failure::Poison(why) | Failure::PoisonItem(_, why) => Failure::Fatal(format!(
                        "{why} (is something else writing under the index's prefix?)"
                    )),
                    other => other,
                },
            )?;
        for (l, new) in items.iter().zip(added) {
            if new {
                self.meters
                    .letters
                    .with_label_values(&[&l.group, &l.class])
                    .inc();
            }
        }
        Ok(())
    }
}

//! The job of `projector-redis`: wait for Kafka, the registry and Redis, then run the consumer runner
//! (crates/kafka) over the event topics of the configured domain's projections, applying each event to
//! its document with `apply.lua` (newer versions only, offset recorded, atomically), a batch per
//! pipeline.

use causeway_kafka::projector::{Decided, EventReader, Freshness};
use causeway_kafka::runner::{Failure, Handler, Runner};
use causeway_runtime::ServiceContext;
use rdkafka::message::BorrowedMessage;
use redis::aio::ConnectionManager;

use crate::api::{ReadApi, Served};
use crate::config::Config;
use crate::error::Error;
use crate::store::{self, Generations, Keys};

/// Run until shutdown.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<(), Error> {
    if !causeway_kafka::client::wait_for_broker(&ctx, &config.kafka).await? {
        return Ok(());
    }
    if !ctx.wait_for("redis", || store::ping(&config.redis)).await? {
        return Ok(());
    }
    let domains = causeway_domains::domains();
    let domain = domains
        .get(&config.projector.domain)
        .ok_or_else(|| Error::Config(format!("unknown domain {:?}", config.projector.domain)))?;
    let hosted = config.projector.hosted(domain);
    let context = config.projector.context().to_string();
    let aggregates: Vec<&str> = {
        let mut a: Vec<&str> = hosted.iter().map(|p| p.aggregate_type()).collect();
        a.sort_unstable();
        a.dedup();
        a
    };
    let mut connection = store::connect(&config.redis).await?;
    let script = store::apply_script();
    script.load_async(&mut connection).await?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| {
            Error::Config(format!(
                "cannot listen on {} (http.listen): {e}",
                config.http.listen
            ))
        })?;
    let generations: Vec<Generations> = hosted
        .iter()
        .map(|p| {
            Generations::new(
                &config.projector.prefix,
                p.name(),
                config.projector.generation,
            )
        })
        .collect();
    for g in &generations {
        store::init_generations(&mut connection, g).await?;
    }
    let read_api = std::sync::Arc::new(ReadApi {
        projections: hosted
            .iter()
            .zip(&generations)
            .map(|(p, g)| {
                (
                    p.name(),
                    Served {
                        name: p.name(),
                        aggregate: p.aggregate_type(),
                        fields: p.fields(),
                        generations: g.clone(),
                    },
                )
            })
            .collect(),
        connection: connection.clone(),
    });
    let routes = causeway_observe::http::HttpMeters::new(ctx.metrics.registry())
        .map_err(|e| Error::Config(format!("metrics: {e}")))?
        .around(crate::api::router(read_api));
    let server = {
        let shutdown = ctx.shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, routes)
                .with_graceful_shutdown(async move { shutdown.wait().await })
                .await
        })
    };
    tracing::info!(listen = %config.http.listen, "read API serving");
    let reader = EventReader::new(
        hosted,
        &context,
        &aggregates,
        &config.projector.registry_url,
        tokio::runtime::Handle::current(),
    );
    let topics = reader.topics();
    let freshness = Freshness::new(ctx.metrics.registry(), &reader.hosted)
        .map_err(|e| Error::Config(format!("metrics: {e}")))?;
    let handler = Projections {
        reader,
        freshness,
        generations,
        runtime: tokio::runtime::Handle::current(),
        connection,
        script,
    };
    let runner = Runner::new(
        config.kafka.clone(),
        config.consumer.clone(),
        &config.projector.group_id,
        topics,
    );
    causeway_kafka::projector::serve(runner, handler, &ctx).await?;
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Config(format!("the read API failed: {e}"))),
        Err(e) => Err(Error::Config(format!("the read API task failed: {e}"))),
    }
}

/// The hosted projections as the runner's handler.
struct Projections {
    reader: EventReader,
    freshness: Freshness,
    /// Per hosted projection, its generations in Redis.
    generations: Vec<Generations>,
    runtime: tokio::runtime::Handle,
    connection: ConnectionManager,
    script: redis::Script,
}

impl Handler for Projections {
    type Item = Decided;

    fn prepare(&mut self, record: &BorrowedMessage<'_>) -> Result<Option<Decided>, Failure> {
        self.reader.read(record)
    }

    fn write(&mut self, items: &[Decided]) -> Result<(), Failure> {
        // The generation each projection writes, read at every write; none while a rebuild switches
        // generations (docs/adr/0011-projections.md): the batch waits, partitions paused, like any
        // transient failure, and is written to the new generation once it is live.
        let mut connection = self.connection.clone();
        let targets = self
            .runtime
            .block_on(store::targets(&mut connection, &self.generations))
            .map_err(|e| match store::failure(&e) {
                Failure::Fatal(why) => Failure::Fatal(why),
                _ => Failure::Transient(format!("redis: {e}")),
            })?;
        let mut keys: Vec<Vec<Keys>> = Vec::with_capacity(targets.len());
        for (i, target) in targets.iter().enumerate() {
            match target {
                Some(n) => keys.push(vec![self.generations[i].keys(*n)]),
                None if items.iter().any(|d| d.writes.iter().any(|(p, _)| *p == i)) => {
                    return Err(Failure::Transient(format!(
                        "a rebuild of {} is switching generations",
                        self.reader.hosted[i].name()
                    )));
                }
                None => keys.push(Vec::new()),
            }
        }
        self.runtime.block_on(store::apply_batch(
            &mut connection,
            &self.script,
            items,
            |i| &keys[i],
        ))?;
        self.freshness.applied(items);
        Ok(())
    }
}

//! The job of `projector-redis`: wait for Kafka, the registry and Redis, then run the consumer runner
//! (crates/kafka) over the event topics of the configured domain's projections, applying each event to
//! its document with `apply.lua` (newer versions only, offset recorded, atomically), a batch per
//! pipeline.

use causeway_contracts::projecting::Projecting;
use causeway_core::ErrorClass;
use causeway_kafka::projector::{Decided, EventReader};
use causeway_kafka::runner::{Failure, Handler, Runner, Status};
use causeway_runtime::ServiceContext;
use rdkafka::message::BorrowedMessage;
use redis::aio::ConnectionManager;

use crate::api::{ReadApi, Served};
use crate::config::Config;
use crate::error::{Error, classify_redis};
use crate::store::{self, Keys};

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
    let hosted: Vec<Box<dyn Projecting>> = domain
        .projections
        .iter()
        .filter(|p| {
            config.projector.projections.is_empty()
                || config.projector.projections.iter().any(|n| n == p.name)
        })
        .map(|p| p.host())
        .collect();
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
    let keys: Vec<Keys> = hosted
        .iter()
        .map(|p| {
            Keys::new(
                &config.projector.prefix,
                p.name(),
                config.projector.generation,
            )
        })
        .collect();
    let read_api = std::sync::Arc::new(ReadApi {
        projections: hosted
            .iter()
            .zip(&keys)
            .map(|(p, keys)| {
                (
                    p.name(),
                    Served {
                        name: p.name(),
                        aggregate: p.aggregate_type(),
                        fields: p.fields(),
                        keys: keys.clone(),
                    },
                )
            })
            .collect(),
        connection: connection.clone(),
    });
    let server = {
        let shutdown = ctx.shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, crate::api::router(read_api))
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
    let handler = Projections {
        reader,
        keys,
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
    let shutdown = ctx.shutdown.clone();
    let metrics = ctx.metrics.clone();
    let probes = ctx.clone();
    tokio::task::spawn_blocking(move || {
        runner.run(handler, shutdown, metrics.registry(), move |status| {
            probes.set_ready(status == Status::Ready);
        })
    })
    .await
    .map_err(|e| Error::Config(format!("the projector task failed: {e}")))??;
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Config(format!("the read API failed: {e}"))),
        Err(e) => Err(Error::Config(format!("the read API task failed: {e}"))),
    }
}

/// The hosted projections as the runner's handler.
struct Projections {
    reader: EventReader,
    keys: Vec<Keys>,
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
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        // For each script call, the item it belongs to.
        let mut owner = Vec::new();
        for (n, item) in items.iter().enumerate() {
            for (i, projected) in &item.writes {
                let keys = &self.keys[*i];
                let change = &projected.change;
                let call = pipe
                    .cmd("EVALSHA")
                    .arg(self.script.get_hash())
                    .arg(2 + change.index.len())
                    .arg(keys.doc(&projected.aggregate_id))
                    .arg(keys.offsets());
                for entry in &change.index {
                    call.arg(keys.index(entry.index, &entry.key));
                }
                call.arg(projected.version)
                    .arg(projected.occurred_at_ms)
                    .arg(&item.position)
                    .arg(item.offset)
                    .arg(change.set.len());
                for (name, value) in &change.set {
                    call.arg(*name).arg(value.to_string());
                }
                call.arg(change.add.len());
                for (name, delta) in &change.add {
                    call.arg(*name).arg(*delta);
                }
                call.arg(&projected.aggregate_id);
                for entry in &change.index {
                    call.arg(entry.score);
                }
                owner.push(n);
            }
        }
        if owner.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        let answers: Vec<redis::RedisResult<i64>> = self
            .runtime
            .block_on(pipe.query_async(&mut connection))
            .map_err(|e| match failure(&e) {
                // The whole pipeline failing says nothing about one event.
                Failure::Fatal(why) => Failure::Fatal(why),
                _ => Failure::Transient(format!("redis: {e}")),
            })?;
        for (n, answer) in answers.into_iter().enumerate() {
            if let Err(e) = answer {
                if matches!(
                    e.kind(),
                    redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
                ) {
                    // The script cache was emptied (Redis restarted): load it, write again.
                    let loaded = self
                        .runtime
                        .block_on(self.script.load_async(&mut connection));
                    return Err(Failure::Transient(match loaded {
                        Ok(_) => format!("redis: {e} (script loaded again)"),
                        Err(l) => format!("redis: {e}; loading the script: {l}"),
                    }));
                }
                return Err(match failure(&e) {
                    Failure::Poison(why) => {
                        Failure::PoisonItem(owner.get(n).copied().unwrap_or(0), why)
                    }
                    other => other,
                });
            }
        }
        Ok(())
    }
}

/// What a Redis error means for the batch. Only what the script itself refuses for one event is that
/// event's poison: a generic error (`ERR`, raised by the script) or a key of another type
/// (`WRONGTYPE`). Credentials and permissions are fatal (a restart once fixed); everything else (out of
/// memory, a failing persistence, a busy or loading server, a failover, an unknown error code) is
/// transient: retried, and never a reason to drop an event.
fn failure(e: &redis::RedisError) -> Failure {
    use redis::{ErrorKind, ServerErrorKind as S};
    if matches!(classify_redis(e), ErrorClass::Transient) {
        return Failure::Transient(format!("redis: {e}"));
    }
    match (e.kind(), e.code()) {
        (ErrorKind::Server(S::ResponseError), _) | (_, Some("WRONGTYPE")) => {
            Failure::Poison(format!("redis refused the write: {e}"))
        }
        (ErrorKind::AuthenticationFailed | ErrorKind::Server(S::NoPerm), _)
        | (_, Some("NOAUTH" | "WRONGPASS")) => Failure::Fatal(format!("redis: {e}")),
        _ => Failure::Transient(format!("redis: {e}")),
    }
}

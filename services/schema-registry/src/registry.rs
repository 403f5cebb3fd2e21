//! The job of `schema-registry`: wait for Kafka, load the schema log, serve the REST API until shutdown.

use std::sync::Arc;

use causeway_runtime::ServiceContext;
use tokio::net::TcpListener;

use crate::api::{self, App};
use crate::config::Config;
use crate::error::Error;
use crate::log::Log;

/// Run until shutdown.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<(), Error> {
    if !causeway_kafka::client::wait_for_broker(&ctx, &config.kafka).await? {
        return Ok(());
    }
    let registry = &config.registry;
    let (log, mut reader) = tokio::select! {
        opened = Log::open(&config.kafka, registry) => opened?,
        _ = ctx.shutdown.wait() => return Ok(()),
    };
    tracing::info!(topic = %registry.topic, applied = log.applied(), "schema log loaded");

    let listener = TcpListener::bind(registry.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: registry.listen,
            source,
        })?;
    let app = Arc::new(App {
        log,
        default_level: registry.default_level(),
    });
    let router = api::router(app, registry.max_request_bytes);
    let shutdown = ctx.shutdown.clone();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await
    });
    tracing::info!(listen = %registry.listen, "schema registry API serving");
    ctx.set_ready(true);

    tokio::select! {
        served = &mut server => {
            return match served {
                Ok(Ok(())) => Ok(()),
                Ok(Err(source)) => Err(Error::Listen { addr: registry.listen, source }),
                Err(e) => Err(Error::Reader { topic: "api".into(), why: e.to_string() }),
            };
        }
        read = &mut reader => {
            ctx.set_ready(false);
            return match read {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Ok(()),
                Err(e) => Err(Error::Reader { topic: registry.topic.clone(), why: e.to_string() }),
            };
        }
        _ = ctx.shutdown.wait() => {}
    }
    ctx.set_ready(false);
    reader.abort();
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(Error::Listen {
            addr: registry.listen,
            source,
        }),
        Err(e) => Err(Error::Reader {
            topic: "api".into(),
            why: e.to_string(),
        }),
    }
}

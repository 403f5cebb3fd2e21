//! The job of `schema-registry`: wait for Kafka, load the schema log, serve the REST API until shutdown.

use std::sync::Arc;

use causeway_runtime::ServiceContext;
use tokio::net::TcpListener;

use crate::api::{self, App};
use crate::config::Config;
use crate::error::Error;
use crate::log::{Log, Tasks};
use causeway_observe::metrics::names;

/// Run until shutdown.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<(), Error> {
    if !causeway_kafka::client::wait_for_broker(&ctx, &config.kafka).await? {
        return Ok(());
    }
    let registry = &config.registry;
    let leader_gauge = prometheus::IntGauge::new(
        names::REGISTRY_LEADER,
        "Whether this registry instance is the elected schema writer (1) or not (0).",
    )
    .and_then(|g| {
        ctx.metrics
            .registry()
            .register(Box::new(g.clone()))
            .map(|()| g)
    })
    .map_err(|e| Error::Reader {
        topic: "metrics".into(),
        why: e.to_string(),
    })?;
    let (log, tasks) = tokio::select! {
        opened = Log::open(&config.kafka, registry, registry.advertised_url(), leader_gauge) => opened?,
        _ = ctx.shutdown.wait() => return Ok(()),
    };
    let Tasks {
        mut reader,
        election,
    } = tasks;
    tracing::info!(topic = %registry.topic, applied = log.applied(), "schema log loaded");

    let listener = TcpListener::bind(registry.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: registry.listen,
            source,
        })?;
    let app = Arc::new(App {
        log: log.clone(),
        default_level: registry.default_level(),
        http: causeway_contracts::registry::http_client(),
        max_body: registry.max_request_bytes,
        own_url: registry.advertised_url(),
        write_timeout: std::time::Duration::from_millis(registry.write_timeout_ms),
    });
    let router = causeway_observe::http::HttpMeters::new(ctx.metrics.registry())
        .map_err(|e| Error::Metrics(e.to_string()))?
        .around(api::router(app));
    let shutdown = ctx.shutdown.clone();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await
    });
    tracing::info!(listen = %registry.listen, "schema registry API serving");
    // Ready once writes have somewhere to go: this instance leads, or another one announced itself (an
    // announcement of our own URL is a previous life of this instance, not a writer).
    let own_url = registry.advertised_url();
    loop {
        if log.is_leader() || log.leader_url().is_some_and(|url| url != own_url) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            _ = ctx.shutdown.wait() => break,
        }
    }
    ctx.set_ready(true);

    tokio::select! {
        served = &mut server => {
            return match served {
                Ok(Ok(())) => Ok(()),
                Ok(Err(source)) => Err(Error::Listen { addr: registry.listen, source }),
                Err(e) => Err(Error::Reader { topic: "api".into(), why: e.to_string() }),
            };
        }
        elected = election => {
            ctx.set_ready(false);
            return match elected {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Ok(()),
                Err(e) => Err(Error::Reader { topic: "election".into(), why: e.to_string() }),
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

//! The job of `command-gateway`: wait for Kafka and the registry, follow the results topic, serve the
//! command API until shutdown.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use causeway_contracts::wire::Codec;
use causeway_kafka::client;
use causeway_kafka::config::OffsetMode;
use causeway_runtime::ServiceContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::net::TcpListener;

use crate::api::{self, App};
use crate::config::Config;
use crate::error::Error;
use crate::results::Results;

/// Run until shutdown.
pub async fn run(config: Config, ctx: ServiceContext) -> Result<(), Error> {
    if !client::wait_for_broker(&ctx, &config.kafka).await? {
        return Ok(());
    }
    // A command the broker has not acknowledged within the produce timeout is answered 503. The timeout
    // bounds delivery, not only queueing; the command may still land, so clients retry with the same
    // Idempotency-Key and the processor answers the resend with the first result.
    let mut kafka = config.kafka.clone();
    let timeout = config.gateway.produce_timeout_ms.to_string();
    kafka
        .properties
        .entry("message.timeout.ms".into())
        .or_insert(timeout.clone());
    kafka
        .properties
        .entry("request.timeout.ms".into())
        .or_insert(timeout);
    let producer = client::producer(&kafka, "command-gateway")?;
    let codec = Codec::new(&config.gateway.registry_url);
    let results = Results::new(config.gateway.max_tracked_results);
    // A group of its own per process: every gateway instance sees every result.
    let group = format!("command-gateway-results-{}", uuid::Uuid::now_v7());
    let mut results_config =
        config
            .kafka
            .consumer_config("command-gateway-results", &group, OffsetMode::Transactional);
    // Partition ends tell the follower when it has read everything since the lookback.
    results_config.set("enable.partition.eof", "true");
    let consumer: rdkafka::consumer::StreamConsumer<client::ReadsToEnd> = results_config
        .create_with_context(client::ReadsToEnd)
        .map_err(|source| causeway_kafka::Error::Client {
            what: "results consumer",
            source,
        })?;
    let partitions = Results::start_from(
        &consumer,
        &config.gateway.results_topic,
        std::time::Duration::from_millis(config.gateway.results_lookback_ms),
    )
    .map_err(|source| match source {
        KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopic)
        | KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition) => {
            Error::MissingResultsTopic(config.gateway.results_topic.clone())
        }
        source => causeway_kafka::Error::Operation {
            operation: "assign the results topic",
            source,
        }
        .into(),
    })?;
    let domain = causeway_domains::domains()
        .get(&config.gateway.domain)
        .cloned()
        .ok_or_else(|| Error::UnknownDomain(config.gateway.domain.clone()))?;
    let listen = config.http.listen;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Listen {
            addr: listen,
            source,
        })?;
    // Ready once the results since the lookback are read (any instance then answers for any command
    // sent since), and not while reading them fails.
    let follower = {
        let ctx = ctx.clone();
        tokio::spawn(results.clone().follow(
            consumer,
            codec.clone(),
            partitions,
            move |caught_up| ctx.set_ready(caught_up),
        ))
    };

    let app = Arc::new(App {
        config: config.gateway.clone(),
        producer,
        codec,
        schemas: RwLock::new(HashMap::new()),
        http: causeway_contracts::registry::http_client(),
        results,
        domain,
    });
    let shutdown = ctx.shutdown.clone();
    let meters = causeway_observe::http::HttpMeters::new(ctx.metrics.registry())
        .map_err(|e| Error::Metrics(e.to_string()))?;
    let routes = meters.around(api::router(app, config.http.max_body_bytes));
    let server =
        axum::serve(listener, routes).with_graceful_shutdown(async move { shutdown.wait().await });
    tracing::info!(%listen, "command API serving");
    let served = server.await;
    follower.abort();
    served.map_err(|source| Error::Listen {
        addr: listen,
        source,
    })
}

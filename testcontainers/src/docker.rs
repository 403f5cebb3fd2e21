//! The Docker backend (feature `docker`, `CAUSEWAY_STACK=docker`): the same three components as
//! containers through testcontainers-rs, for machines with a Docker engine. The project's CI and its
//! developer machines have none, so this backend is compiled (`make check-docker`) but not run there;
//! the native backend is the one the suite is tested with.
//!
//! The containers live as long as the test process: a dedicated thread owns them and its runtime, and
//! testcontainers' reaper removes them when the process exits. Each test binary starts its own set.

use std::sync::mpsc;

use testcontainers::core::ContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, Image};
use testcontainers_modules::clickhouse::ClickHouse;
use testcontainers_modules::kafka::apache::{self, Kafka};
use testcontainers_modules::redis::{REDIS_PORT, Redis};

use crate::Stack;

const CLICKHOUSE_HTTP_PORT: u16 = 8123;

/// Start Kafka, Redis and ClickHouse containers and return their endpoints.
pub fn up() -> Result<Stack, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("causeway-docker-stack".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(format!(
                        "cannot start a runtime for the containers: {e}"
                    )));
                    return;
                }
            };
            runtime.block_on(async move {
                match start().await {
                    Ok((stack, containers)) => {
                        let _ = tx.send(Ok(stack));
                        // Hold the containers for the life of the process.
                        let _keep = containers;
                        std::future::pending::<()>().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| format!("cannot start the container thread: {e}"))?;
    rx.recv()
        .map_err(|_| "the container thread ended without an answer".to_string())?
}

type Containers = (
    ContainerAsync<Kafka>,
    ContainerAsync<Redis>,
    ContainerAsync<ClickHouse>,
    crate::process::ServiceProcess,
);

async fn start() -> Result<(Stack, Containers), String> {
    let kafka = start_one("Apache Kafka", Kafka::default()).await?;
    let redis = start_one("Redis", Redis::default()).await?;
    let clickhouse = start_one("ClickHouse", ClickHouse::default()).await?;
    let kafka_bootstrap = format!("127.0.0.1:{}", port(&kafka, apache::KAFKA_PORT).await?);
    // The registry is this repository's own binary, run as a process against the Kafka container.
    let (registry, registry_url) = crate::native::start_registry(&kafka_bootstrap)?;
    let stack = Stack {
        kafka_bootstrap,
        redis_url: format!("redis://127.0.0.1:{}", port(&redis, REDIS_PORT).await?),
        clickhouse_url: format!(
            "http://127.0.0.1:{}",
            port(&clickhouse, CLICKHOUSE_HTTP_PORT).await?
        ),
        registry_url,
    };
    Ok((stack, (kafka, redis, clickhouse, registry)))
}

async fn start_one<I: Image>(what: &str, image: I) -> Result<ContainerAsync<I>, String> {
    image.start().await.map_err(|e| {
        format!("cannot start the {what} container (is a Docker engine running?): {e}")
    })
}

async fn port<I: Image>(
    container: &ContainerAsync<I>,
    internal: impl Into<ContainerPort>,
) -> Result<u16, String> {
    let internal = internal.into();
    container
        .get_host_port_ipv4(internal)
        .await
        .map_err(|e| format!("container port {internal:?} is not mapped: {e}"))
}

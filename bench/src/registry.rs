//! The schema registry benchmark. A release build of the registry runs on a topic of its own against
//! the stack's Kafka. Measured, each beside its floor on this machine:
//! - `GET /schemas/ids/{id}` under concurrent clients, beside `GET /` on the same server (the HTTP
//!   stack's cost with no registry work);
//! - registration of new schemas one after another, beside a bare Kafka transaction of one record
//!   (the durable write every registration makes).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_kafka::{KafkaConfig, client};
use causeway_testcontainers::process::{ServiceProcess, free_port};
use causeway_testcontainers::{native, unique};
use rdkafka::producer::{FutureRecord, Producer};
use serde_json::json;

use crate::stats::{Samples, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry binary to measure (build it with --release).
    #[arg(long, default_value = "target/release/schema-registry")]
    registry_bin: PathBuf,
    /// Concurrent clients for the read benchmarks.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long each read benchmark runs, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// How many schemas to register.
    #[arg(long, default_value_t = 200)]
    registrations: usize,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let stack = native::endpoints()
        .map_err(|e| anyhow::anyhow!("the stack is not running (make up): {e}"))?;
    let topic = unique("_schemas_bench");
    let api = format!("127.0.0.1:{}", free_port());
    let config = native::repo_root().join("services/schema-registry/schema-registry.toml");
    let mut registry = ServiceProcess::start(
        &args.registry_bin,
        &config,
        &[
            (
                "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
                stack.kafka_bootstrap.as_str(),
            ),
            ("CAUSEWAY__REGISTRY__LISTEN", api.as_str()),
            ("CAUSEWAY__REGISTRY__TOPIC", topic.as_str()),
            (
                "CAUSEWAY__REGISTRY__WRITER_TRANSACTIONAL_ID",
                topic.as_str(),
            ),
            ("RUST_LOG", "warn"),
        ],
    )
    .map_err(anyhow::Error::msg)?;
    registry
        .wait_ready(Duration::from_secs(60))
        .map_err(anyhow::Error::msg)?;
    let base = format!("http://{api}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;

    // Registrations, one after another (the registry serialises them anyway).
    let mut latencies = Vec::with_capacity(args.registrations);
    let started = Instant::now();
    for i in 0..args.registrations {
        let schema = json!({ "type": "record", "name": format!("R{i}"), "namespace": "bench",
                             "fields": [{ "name": "f", "type": "string" }] })
        .to_string();
        let t = Instant::now();
        let response = http
            .post(format!("{base}/subjects/bench-{i}/versions"))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(json!({ "schema": schema }).to_string())
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "register answered {}",
            response.status()
        );
        latencies.push(t.elapsed());
    }
    let register = Samples::new(latencies, started.elapsed());

    let kafka = KafkaConfig::for_servers(stack.kafka_bootstrap.clone());
    let baseline_write =
        bare_transactions(&kafka, &unique("bench-txn"), args.registrations).await?;

    let ids = args.registrations as u64;
    let by_id = load(&http, &args, {
        let base = base.clone();
        move |n| format!("{base}/schemas/ids/{}", 1 + n % ids)
    })
    .await?;
    let root = load(&http, &args, {
        let base = base.clone();
        move |_| format!("{base}/")
    })
    .await?;

    let _ = registry.terminate(Duration::from_secs(20));
    table(
        &format!(
            "schema registry (release build; {} clients for reads; loopback; 2 cores shared by client, registry and Kafka)",
            args.clients
        ),
        &[
            ("GET /schemas/ids/{id}", &by_id),
            ("  baseline: GET / on the same server", &root),
            ("POST /subjects/{s}/versions (new schema)", &register),
            ("  baseline: one-record Kafka transaction", &baseline_write),
        ],
    );
    Ok(())
}

/// `args.clients` tasks requesting `url(n)` for `args.seconds`.
async fn load(
    http: &reqwest::Client,
    args: &Args,
    url: impl Fn(u64) -> String + Send + Sync + 'static,
) -> anyhow::Result<Samples> {
    let url = Arc::new(url);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    for c in 0..args.clients {
        let http = http.clone();
        let url = Arc::clone(&url);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = c as u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let response = http.get(url(n)).send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "GET answered {}",
                    response.status()
                );
                response.bytes().await?;
                latencies.push(t.elapsed());
                n += 7;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(Samples::new(all, started.elapsed()))
}

async fn bare_transactions(kafka: &KafkaConfig, topic: &str, n: usize) -> anyhow::Result<Samples> {
    let declared = format!(
        "[defaults]\npartitions = 1\nreplication_factor = 1\n[[topic]]\nname = \"{topic}\"\n"
    );
    let topology = causeway_kafka::Topology::parse(&declared, "bench")?;
    causeway_kafka::topology::apply(kafka, &topology, false, Duration::from_secs(30)).await?;
    let producer = {
        let kafka = kafka.clone();
        let id = unique("bench-txn-id");
        tokio::task::spawn_blocking(move || {
            client::transactional_producer(&kafka, "bench", &id, Duration::from_secs(30))
        })
        .await??
    };
    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        producer.begin_transaction()?;
        let key = i.to_string();
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload("x").partition(0),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
        let p = producer.clone();
        tokio::task::spawn_blocking(move || p.commit_transaction(Duration::from_secs(30)))
            .await??;
        latencies.push(t.elapsed());
    }
    Ok(Samples::new(latencies, started.elapsed()))
}

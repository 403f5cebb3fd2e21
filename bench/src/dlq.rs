//! Dead letters: the dlq-reprocessor (release build) against the stack's Kafka, registry and Redis, on
//! topics of its own. Measured:
//! - dead letters indexed per second: records as the suite's consumers dead-letter them (headers and
//!   all) preloaded on a DLQ topic, from the reprocessor ready until its index counts them all;
//! - replay throughput: every one of them replayed by one filter (`POST /v1/dead-letters/replay`),
//!   read back from the DLQ and sent to its source partition, state and audit recorded;
//! - beside them, the broker's ceiling for records of the same size (`kafka-producer-perf-test`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use causeway_kafka::KafkaConfig;
use causeway_kafka::dead_letter::{self, Why};
use causeway_kafka::topology::Topology;
use causeway_testcontainers::process::{ServiceProcess, free_port};
use causeway_testcontainers::{Stack, native, unique};
use rdkafka::Timestamp;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, Producer};
use serde_json::Value;

use crate::stats::{Samples, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The dlq-reprocessor binary (build it with --release).
    #[arg(long, default_value = "target/release/dlq-reprocessor")]
    bin: PathBuf,
    /// Dead letters preloaded (replayed by one filter: at most the reprocessor's max_batch, 10 000).
    #[arg(long, default_value_t = 10_000)]
    letters: usize,
    /// Partitions of the DLQ and source topics.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 200)]
    size: usize,
}

const TOKEN: &str = "bench-token-0123456789abcdef";

fn api_call(
    api: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<Value> {
    let auth = format!("Bearer {TOKEN}");
    let r = causeway_testcontainers::process::http_request_with(
        api,
        method,
        path,
        &[("Authorization", auth.as_str())],
        body,
    )
    .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(r.status == 200, "{method} {path}: {} {}", r.status, r.body);
    Ok(serde_json::from_str(&r.body)?)
}

/// `n` dead letters of group `group` on `<group>.dlq`, as the runner writes them, for records of
/// `source` (spread over its partitions, keys over 1000 aggregates).
async fn preload(
    kafka: &KafkaConfig,
    group: &str,
    source: &str,
    n: usize,
    size: usize,
    partitions: i32,
) -> anyhow::Result<()> {
    let producer: FutureProducer = causeway_kafka::client::producer(kafka, "bench")?;
    let dlq = format!("{group}.dlq");
    let value = vec![b'x'; size];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let partition = (i as i32) % partitions;
        let original = OwnedMessage::new(
            Some(value.clone()),
            Some(format!("agg-{}", i % 1000).into_bytes()),
            source.to_string(),
            Timestamp::CreateTime(now),
            partition,
            i as i64,
            Some(OwnedHeaders::new().insert(Header {
                key: "traceparent",
                value: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            })),
        );
        let why = Why {
            reason: "undecodable record: not Avro",
            class: "poison",
            group,
            at: now,
            attempts: 1,
            first_failure: now,
            behind: None,
            parks_key: false,
        };
        let record = dead_letter::record(&original, &dlq, &why, 1_000_000, 1024);
        let mut future = rdkafka::producer::FutureRecord::to(&dlq);
        if let Some(k) = record.key {
            future = future.key(k);
        }
        if let Some(p) = record.payload {
            future = future.payload(p);
        }
        if let Some(h) = record.headers {
            future = future.headers(h);
        }
        pending.push(
            producer
                .send_result(future)
                .map_err(|(e, _)| anyhow::anyhow!("{e}"))?,
        );
    }
    for p in pending {
        p.await?.map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let stack = native::endpoints().map_err(anyhow::Error::msg)?;
    let kafka = KafkaConfig::for_servers(stack.kafka_bootstrap.clone());
    let context = unique("bench-dlq");
    let group = format!("{context}-consumer");
    let source = format!("{context}.thing.events");
    let declared = format!(
        "[defaults]\npartitions = {}\nreplication_factor = 1\n[[topic]]\nname = \"{source}\"\n[[topic]]\nname = \"{group}.dlq\"\n[[topic]]\nname = \"causeway.dlq-audit\"\n",
        args.partitions
    );
    causeway_kafka::topology::apply(
        &kafka,
        &Topology::parse(&declared, "bench")?,
        false,
        Duration::from_secs(30),
    )
    .await?;
    // The audit records' contract (the replay writes one).
    let catalog = causeway_contracts::catalog::Catalog::load(&native::repo_root().join("avro"))?;
    causeway_contracts::registry::RegistryClient::new(&stack.registry_url)
        .register_catalog(&catalog, |_| {})
        .await
        .map_err(anyhow::Error::msg)?;
    eprintln!("dlq bench: preloading {} dead letters", args.letters);
    preload(
        &kafka,
        &group,
        &source,
        args.letters,
        args.size,
        args.partitions,
    )
    .await?;

    let (process, api, indexing) = start_and_index(&args, &stack, &group).await?;
    eprintln!("dlq bench: replaying them by one filter");
    let started = Instant::now();
    let body = format!("{{\"filter\": {{\"group\": \"{group}\"}}}}");
    let report = tokio::task::spawn_blocking(move || {
        api_call(api, "POST", "/v1/dead-letters/replay", Some(&body))
    })
    .await??;
    let replaying = started.elapsed();
    let replayed = report["counts"]["replayed"].as_u64().unwrap_or(0) as usize;
    anyhow::ensure!(
        replayed == args.letters,
        "{replayed} of {} replayed: {}",
        args.letters,
        report["counts"]
    );
    let _ = process.terminate(Duration::from_secs(30));

    eprintln!("dlq bench: kafka-producer-perf-test");
    let ceiling = {
        let stack = stack.clone();
        let (n, size, partitions) = (args.letters * 5, args.size, args.partitions);
        tokio::task::spawn_blocking(move || {
            crate::processor::kafka_ceiling(&stack, &kafka, n, size, partitions)
        })
        .await??
    };
    table(
        &format!(
            "dead letters (release build; {} dead letters of {} bytes, {} partitions; loopback; 2 cores shared by the reprocessor, Redis and Kafka)",
            args.letters, args.size, args.partitions
        ),
        &[
            (
                "dead letters indexed (DLQ -> Redis index)",
                &Samples::throughput(args.letters, indexing),
            ),
            (
                "replayed by one filter (read back, sent, state, audit)",
                &Samples::throughput(args.letters, replaying),
            ),
            ("  ceiling: kafka-producer-perf-test acks=all", &ceiling),
        ],
    );
    Ok(())
}

/// The reprocessor over `<group>.dlq`, and the time from its start until its index counts every
/// preloaded letter.
async fn start_and_index(
    args: &Args,
    stack: &Stack,
    group: &str,
) -> anyhow::Result<(ServiceProcess, std::net::SocketAddr, Duration)> {
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listen = api.to_string();
    let prefix = unique("bench-dlq-index");
    let topics = format!("[\"{group}.dlq\"]");
    let tokens = format!("[{{ name = \"bench\", token = \"{TOKEN}\" }}]");
    let own_group = unique("bench-dlq-reprocessor");
    let config = native::repo_root().join("services/dlq-reprocessor/dlq-reprocessor.toml");
    let env = [
        (
            "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
            stack.kafka_bootstrap.as_str(),
        ),
        ("CAUSEWAY__REDIS__URL", stack.redis_url.as_str()),
        ("CAUSEWAY__DLQ__REGISTRY_URL", stack.registry_url.as_str()),
        ("CAUSEWAY__DLQ__PREFIX", prefix.as_str()),
        ("CAUSEWAY__DLQ__GROUP_ID", own_group.as_str()),
        ("CAUSEWAY__DLQ__TOPICS", topics.as_str()),
        ("CAUSEWAY__HISTORY__RESULTS_TOPIC", ""),
        ("CAUSEWAY__REDRIVE__CLASSES", "[]"),
        ("CAUSEWAY__HTTP__LISTEN", listen.as_str()),
        ("CAUSEWAY__ACCESS__TOKENS", tokens.as_str()),
        ("RUST_LOG", "warn"),
    ];
    eprintln!("dlq bench: indexing");
    let started = Instant::now();
    let mut process =
        ServiceProcess::start(&args.bin, &config, &env).map_err(anyhow::Error::msg)?;
    process
        .wait_ready(Duration::from_secs(60))
        .map_err(anyhow::Error::msg)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let want = args.letters as i64;
    loop {
        let counts = tokio::task::spawn_blocking(move || {
            api_call(api, "GET", "/v1/dead-letters/counts", None)
        })
        .await??;
        let parked = counts["by_class"]["poison"].as_i64().unwrap_or(0);
        if parked >= want {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the index holds {parked} of {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((process, api, started.elapsed()))
}

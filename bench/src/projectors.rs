//! The read side: the projectors (release builds) against the stack's Kafka, registry, Redis and
//! ClickHouse, each on topics of its own. Measured:
//! - projector-redis: events applied per second (preloaded events, from ready until Redis records the
//!   last offset of every partition), beside `redis-benchmark`'s pipelined HSET ceiling on the same
//!   Redis;
//! - projector-clickhouse: event rows per second (until the events table holds them all), beside
//!   `clickhouse-client` inserting the same rows (exported from that table) in one bulk INSERT;
//! - end to end: a command POSTed to the gateway until the read API answers with the version its
//!   result gave (processor, gateway and projector-redis running).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_contracts::records::EventMetadata;
use causeway_kafka::client;
use causeway_orders::contracts::inventory::StockAdded;
use causeway_testcontainers::process::{ServiceProcess, free_port};
use causeway_testcontainers::{Stack, native, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;

use crate::processor::World;
use crate::stats::{Samples, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The projector-redis binary (build it with --release).
    #[arg(long, default_value = "target/release/projector-redis")]
    redis_bin: PathBuf,
    /// The projector-clickhouse binary (build it with --release).
    #[arg(long, default_value = "target/release/projector-clickhouse")]
    clickhouse_bin: PathBuf,
    /// The processor binary, for the end-to-end run.
    #[arg(long, default_value = "target/release/aggregate-processor")]
    processor_bin: PathBuf,
    /// The gateway binary, for the end-to-end run.
    #[arg(long, default_value = "target/release/command-gateway")]
    gateway_bin: PathBuf,
    /// Events preloaded for the throughput runs.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Aggregates (SKUs) they are spread over.
    #[arg(long, default_value_t = 1000)]
    aggregates: usize,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Concurrent HTTP clients of the end-to-end run.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// How long the end-to-end run lasts, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

/// The event topics of the domain's other aggregates (the bench world has the inventory's): a projector
/// reading every aggregate's events finds them (empty).
async fn other_topics(world: &World) -> anyhow::Result<()> {
    let mut declared = format!(
        "[defaults]\npartitions = {}\nreplication_factor = 1\n",
        world.partitions
    );
    for aggregate in ["order", "payment"] {
        declared += &format!(
            "[[topic]]\nname = \"{}.{aggregate}.events\"\n",
            world.context
        );
    }
    let topology = causeway_kafka::Topology::parse(&declared, "bench")?;
    causeway_kafka::topology::apply(&world.kafka, &topology, false, Duration::from_secs(30))
        .await?;
    Ok(())
}

/// Preload `n` StockAdded events over `aggregates` SKUs (versions 1, 2, ... per SKU) into the
/// world's inventory events topic; the end offset of each partition.
async fn preload(world: &World, n: usize, aggregates: usize) -> anyhow::Result<HashMap<i32, i64>> {
    let topic = format!("{}.inventory.events", world.context);
    let producer = client::producer(&world.kafka, "bench")?;
    let mut records = Vec::with_capacity(n);
    let mut versions: HashMap<usize, i64> = HashMap::new();
    for i in 0..n {
        let s = i % aggregates;
        let sku = format!("sku-{s}");
        let v = versions.entry(s).or_insert(0);
        *v += 1;
        let event = StockAdded {
            metadata: EventMetadata {
                event_id: format!("{sku}-{v}"),
                aggregate_id: sku.clone(),
                aggregate_version: *v,
                causation_id: format!("c-{i}"),
                correlation_id: format!("c-{i}"),
                occurred_at: 1_700_000_000_000 + i64::try_from(i).unwrap_or(0),
                schema_version: 1,
            },
            sku: sku.clone(),
            quantity: 1,
            available: i32::try_from(*v).unwrap_or(i32::MAX),
        };
        let bytes = world
            .codec
            .encode(&topic, "causeway.orders.inventory.StockAdded", &event)
            .await?;
        records.push((sku, bytes));
    }
    client::send_all(&producer, &topic, &records)
        .await
        .map_err(|e| anyhow::anyhow!("preload: {e}"))?;
    let consumer: BaseConsumer = world
        .kafka
        .consumer_config(
            "bench",
            &unique("ends"),
            causeway_kafka::config::OffsetMode::Transactional,
        )
        .create()?;
    let mut ends = HashMap::new();
    for p in 0..world.partitions {
        let (_, high) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10))?;
        ends.insert(p, high);
    }
    Ok(ends)
}

/// A projector of `world`'s events, release build `bin`, with `extra` environment.
fn start(
    world: &World,
    bin: &std::path::Path,
    service: &str,
    prefix: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<ServiceProcess> {
    let config = native::repo_root().join(format!("services/{service}/{service}.toml"));
    let group = format!("{}-{service}", world.context);
    let mut env = vec![
        (
            "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
            world.stack.kafka_bootstrap.as_str(),
        ),
        (
            "CAUSEWAY__PROJECTOR__REGISTRY_URL",
            world.stack.registry_url.as_str(),
        ),
        ("CAUSEWAY__PROJECTOR__CONTEXT", world.context.as_str()),
        ("CAUSEWAY__PROJECTOR__GROUP_ID", group.as_str()),
        ("CAUSEWAY__PROJECTOR__PREFIX", prefix),
        ("RUST_LOG", "warn"),
    ];
    env.extend_from_slice(extra);
    let mut process = ServiceProcess::start(bin, &config, &env).map_err(anyhow::Error::msg)?;
    process
        .wait_ready(Duration::from_secs(60))
        .map_err(anyhow::Error::msg)?;
    Ok(process)
}

/// projector-redis over the preloaded events: the time from ready until Redis records the last offset
/// of every partition.
async fn redis_run(args: &Args, stack: &Stack) -> anyhow::Result<Duration> {
    let world = World::new(stack, args.partitions).await?;
    let ends = preload(&world, args.events, args.aggregates).await?;
    let prefix = world.context.replace('.', "-");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut redis = redis::Client::open(stack.redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let started = Instant::now();
    let process = start(
        &world,
        &args.redis_bin,
        "projector-redis",
        &prefix,
        &[
            ("CAUSEWAY__REDIS__URL", stack.redis_url.as_str()),
            ("CAUSEWAY__HTTP__LISTEN", listen.as_str()),
            ("CAUSEWAY__PROJECTOR__PROJECTIONS", r#"["stock-by-sku"]"#),
        ],
    )?;
    let ready = started.elapsed();
    let offsets_key = format!("{prefix}:stock-by-sku:g1:offsets");
    let topic = format!("{}.inventory.events", world.context);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let recorded: HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(&offsets_key)
            .query_async(&mut redis)
            .await?;
        let done = ends.iter().all(|(p, end)| {
            *end == 0 || recorded.get(&format!("{topic}:{p}")).copied() == Some(end - 1)
        });
        if done {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "projector-redis did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed() - ready;
    let _ = process.terminate(Duration::from_secs(30));
    Ok(elapsed)
}

/// `redis-benchmark`'s pipelined HSET rate on the same Redis.
fn redis_ceiling(stack: &Stack, n: usize) -> anyhow::Result<Samples> {
    let port = stack
        .redis_url
        .rsplit(':')
        .next()
        .unwrap_or("6379")
        .trim_end_matches('/')
        .to_string();
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port, "-n", &n.to_string()])
        .args(["-P", "64", "-q", "-t", "hset"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The last line, e.g. "HSET: 555555.56 requests per second, p50=0.839 msec" (progress lines before).
    let rate: f64 = text
        .rsplit("HSET:")
        .next()
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("redis-benchmark said: {text}"))?;
    Ok(Samples::throughput(
        n,
        Duration::from_secs_f64(n as f64 / rate.max(f64::EPSILON)),
    ))
}

/// POST a query to ClickHouse's HTTP interface; the answer's text.
async fn clickhouse(http: &reqwest::Client, url: &str, sql: &str) -> anyhow::Result<String> {
    let response = http.post(url).body(sql.to_string()).send().await?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "{sql}: {status}: {text}");
    Ok(text)
}

/// projector-clickhouse over the preloaded events: the time from ready until the events table holds
/// them all; then `clickhouse-client` inserting the same rows in one bulk INSERT.
async fn clickhouse_runs(args: &Args, stack: &Stack) -> anyhow::Result<(Duration, Duration)> {
    let world = World::new(stack, args.partitions).await?;
    other_topics(&world).await?;
    preload(&world, args.events, args.aggregates).await?;
    let prefix = unique("bench").replace('-', "_");
    let http = reqwest::Client::new();
    let url = stack.clickhouse_url.clone();
    let started = Instant::now();
    let process = start(
        &world,
        &args.clickhouse_bin,
        "projector-clickhouse",
        &prefix,
        &[("CAUSEWAY__CLICKHOUSE__URL", url.as_str())],
    )?;
    let ready = started.elapsed();
    let events = format!("{prefix}_events");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n: usize = clickhouse(&http, &url, &format!("SELECT count() FROM {events}"))
            .await?
            .trim()
            .parse()
            .unwrap_or(0);
        if n >= args.events {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "projector-clickhouse did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed() - ready;
    let _ = process.terminate(Duration::from_secs(30));

    // The same rows, exported, then inserted by clickhouse-client in one go.
    let rows = clickhouse(
        &http,
        &url,
        &format!("SELECT * FROM {events} FORMAT JSONEachRow"),
    )
    .await?;
    let file = std::env::temp_dir().join(format!("{prefix}.json"));
    std::fs::write(&file, rows)?;
    clickhouse(
        &http,
        &url,
        &format!("CREATE TABLE {prefix}_bulk AS {events}"),
    )
    .await?;
    let tcp =
        std::env::var("CAUSEWAY_STACK_CLICKHOUSE_TCP_PORT").unwrap_or_else(|_| "19000".into());
    let input = std::fs::File::open(&file)?;
    let t = Instant::now();
    let status = Command::new("clickhouse-client")
        .args(["--host", "127.0.0.1", "--port", &tcp])
        .args([
            "--query",
            &format!("INSERT INTO {prefix}_bulk FORMAT JSONEachRow"),
        ])
        .stdin(input)
        .status()?;
    let bulk = t.elapsed();
    anyhow::ensure!(status.success(), "clickhouse-client: {status}");
    let _ = std::fs::remove_file(&file);
    Ok((elapsed, bulk))
}

/// Commands POSTed to the gateway until the read API shows the version their result gave.
async fn end_to_end(args: &Args, stack: &Stack) -> anyhow::Result<Samples> {
    let world = World::new(stack, args.partitions).await?;
    let mut processor = world.processor(&args.processor_bin, "e2e")?;
    processor
        .wait_ready(Duration::from_secs(60))
        .map_err(anyhow::Error::msg)?;
    let api = format!("127.0.0.1:{}", free_port());
    let read_api = format!("127.0.0.1:{}", free_port());
    let results = format!("{}.command-results", world.context);
    let mut gateway = ServiceProcess::start(
        &args.gateway_bin,
        &native::repo_root().join("services/command-gateway/command-gateway.toml"),
        &[
            (
                "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
                stack.kafka_bootstrap.as_str(),
            ),
            ("CAUSEWAY__HTTP__LISTEN", api.as_str()),
            (
                "CAUSEWAY__GATEWAY__REGISTRY_URL",
                stack.registry_url.as_str(),
            ),
            ("CAUSEWAY__GATEWAY__CONTEXT", world.context.as_str()),
            ("CAUSEWAY__GATEWAY__RESULTS_TOPIC", results.as_str()),
            ("RUST_LOG", "warn"),
        ],
    )
    .map_err(anyhow::Error::msg)?;
    gateway
        .wait_ready(Duration::from_secs(60))
        .map_err(anyhow::Error::msg)?;
    let prefix = world.context.replace('.', "-");
    let projector = start(
        &world,
        &args.redis_bin,
        "projector-redis",
        &prefix,
        &[
            ("CAUSEWAY__REDIS__URL", stack.redis_url.as_str()),
            ("CAUSEWAY__HTTP__LISTEN", read_api.as_str()),
            ("CAUSEWAY__PROJECTOR__PROJECTIONS", r#"["stock-by-sku"]"#),
        ],
    )?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let (base, reads) = (
        Arc::new(format!("http://{api}")),
        Arc::new(format!("http://{read_api}")),
    );
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (http, base, reads) = (http.clone(), Arc::clone(&base), Arc::clone(&reads));
        let aggregates = args.aggregates;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0usize;
            while Instant::now() < deadline {
                let id = format!("e2e-{c}-{n}-{}", unique("r"));
                let sku = format!("sku-{}", (c * 7919 + n) % aggregates);
                n += 1;
                let t = Instant::now();
                let response = http
                    .post(format!("{base}/v1/commands/inventory/AddStock"))
                    .header("Content-Type", "application/json")
                    .body(json!({ "command_id": id, "sku": sku, "quantity": 1 }).to_string())
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status().as_u16() == 202,
                    "POST answered {}",
                    response.status()
                );
                response.bytes().await?;
                let status: serde_json::Value = http
                    .get(format!("{base}/v1/commands/{id}?wait_ms=10000"))
                    .send()
                    .await?
                    .json()
                    .await?;
                let version = status["version"].as_i64().unwrap_or(0);
                anyhow::ensure!(version > 0, "status: {status}");
                let read = http
                    .get(format!(
                        "{reads}/v1/read/stock-by-sku/{sku}?min_version={version}&wait_ms=10000"
                    ))
                    .send()
                    .await?;
                anyhow::ensure!(
                    read.status().as_u16() == 200,
                    "read answered {}",
                    read.status()
                );
                read.bytes().await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let samples = Samples::new(all, started.elapsed());
    let _ = projector.terminate(Duration::from_secs(20));
    let _ = gateway.terminate(Duration::from_secs(20));
    let _ = processor.terminate(Duration::from_secs(30));
    Ok(samples)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let stack = native::endpoints()
        .map_err(|e| anyhow::anyhow!("the stack is not running (make up): {e}"))?;
    eprintln!(
        "projectors bench: projector-redis over {} events",
        args.events
    );
    let redis = redis_run(&args, &stack).await?;
    eprintln!("projectors bench: redis-benchmark");
    let ceiling = {
        let (stack, n) = (stack.clone(), args.events);
        tokio::task::spawn_blocking(move || redis_ceiling(&stack, n)).await??
    };
    eprintln!("projectors bench: projector-clickhouse, then clickhouse-client");
    let (clickhouse, bulk) = clickhouse_runs(&args, &stack).await?;
    eprintln!("projectors bench: end to end");
    let e2e = end_to_end(&args, &stack).await?;
    table(
        &format!(
            "read side (release builds; {} events over {} aggregates, {} partitions; {} HTTP clients; \
             loopback; 2 cores shared by client, services, Kafka, Redis and ClickHouse)",
            args.events, args.aggregates, args.partitions, args.clients
        ),
        &[
            (
                "projector-redis, events applied",
                &Samples::throughput(args.events, redis),
            ),
            ("  ceiling: redis-benchmark HSET -P 64", &ceiling),
            (
                "projector-clickhouse, event rows",
                &Samples::throughput(args.events, clickhouse),
            ),
            (
                "  baseline: clickhouse-client bulk INSERT",
                &Samples::throughput(args.events, bulk),
            ),
            ("end to end: POST -> read model at that version", &e2e),
        ],
    );
    Ok(())
}

//! The command path, release builds, against the stack's Kafka and registry, each run on topics of
//! its own. Measured, for the aggregate processor and the Kafka Streams baseline (bench/streams, the
//! same Inventory logic; `causeway-bench baseline-check` proves it writes the same) side by side:
//! - throughput with exactly-once on: commands preloaded, 1 and then 2 instances, from the first
//!   instance ready until the group has committed every command; beside Kafka's own producer perf tool
//!   writing the same number of records of the same size (`acks=all`: the broker's ceiling) and Kafka's
//!   `TransactionalMessageCopier` copying them in transactions (the EOS ceiling);
//! - peak RSS of one instance under that load;
//! - p50/p99 from a command produced until its result is readable, at half of each one's throughput;
//! - with many aggregates: the time to ready after a clean stop, and after losing the local state;
//! - the gateway alone (POSTs answered 202) and end to end (POST, then the status API's long poll).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_contracts::catalog::Catalog;
use causeway_contracts::registry::RegistryClient;
use causeway_contracts::wire::Codec;
use causeway_kafka::{KafkaConfig, Topology, client};
use causeway_orders::contracts::inventory::AddStock;
use causeway_testcontainers::process::{ServiceProcess, free_port};
use causeway_testcontainers::{Stack, native, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::json;

use crate::stats::{Samples, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The processor binary (build it with --release).
    #[arg(long, default_value = "target/release/aggregate-processor")]
    processor_bin: PathBuf,
    /// The gateway binary (build it with --release).
    #[arg(long, default_value = "target/release/command-gateway")]
    gateway_bin: PathBuf,
    /// Commands preloaded for the throughput runs.
    #[arg(long, default_value_t = 100_000)]
    commands: usize,
    /// Aggregates (SKUs) they are spread over.
    #[arg(long, default_value_t = 1000)]
    aggregates: usize,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Concurrent HTTP clients for the gateway runs.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long each gateway run lasts, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// How long each latency run (at half of each system's throughput) lasts, in seconds.
    #[arg(long, default_value_t = 15)]
    latency_seconds: u64,
    /// Aggregates built, then restored after a restart (0: skip the restart runs).
    #[arg(long, default_value_t = 1_000_000)]
    restore_aggregates: usize,
    /// Which runs to make, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "throughput,latency,restart,gateway"
    )]
    runs: Vec<Figure>,
    /// Which systems to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "causeway,streams")]
    systems: Vec<crate::compare::System>,
    /// One rate for every latency run, commands/s (default: half of each system's own 1-instance
    /// throughput, which needs the throughput run).
    #[arg(long)]
    latency_rate: Option<f64>,
}

/// The runs of the command path bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Figure {
    /// 1 and 2 instances draining the preloaded commands, their RSS, the broker's ceilings.
    Throughput,
    /// Command produced -> result readable at a steady rate.
    Latency,
    /// Many aggregates built, then a restart after a clean stop and a restore with local state lost.
    Restart,
    /// The command gateway: POST -> 202 and POST -> result on the status API.
    Gateway,
}

/// Topics and contracts of one run, under a context of its own.
pub(crate) struct World {
    pub(crate) context: String,
    pub(crate) kafka: KafkaConfig,
    pub(crate) codec: Codec,
    pub(crate) stack: Stack,
    pub(crate) partitions: i32,
}

impl Drop for World {
    /// Its processors' on-disk stores go with it.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.state_dir());
    }
}

impl World {
    pub(crate) async fn new(stack: &Stack, partitions: i32) -> anyhow::Result<Self> {
        Self::of(stack, partitions, &["inventory"], &[]).await
    }

    /// The topics of `aggregates` and `sagas` of the orders domain (with `partitions` each), its
    /// results topic and the processor's and orchestrator's DLQs, under a context of its own, and every
    /// contract registered under them.
    pub(crate) async fn of(
        stack: &Stack,
        partitions: i32,
        aggregates: &[&str],
        sagas: &[&str],
    ) -> anyhow::Result<Self> {
        let context = unique("bench");
        let mut declared =
            format!("[defaults]\npartitions = {partitions}\nreplication_factor = 1\n");
        let compacted = "cleanup_policy = \"compact\"\n";
        for aggregate in aggregates {
            for kind in ["commands", "events", "changelog"] {
                declared += &format!("[[topic]]\nname = \"{context}.{aggregate}.{kind}\"\n");
                if kind == "changelog" {
                    declared += compacted;
                }
            }
        }
        for saga in sagas {
            declared += &format!("[[topic]]\nname = \"{context}.{saga}.inbox\"\n");
            declared += &format!("[[topic]]\nname = \"{context}.{saga}.changelog\"\n{compacted}");
        }
        declared += &format!("[[topic]]\nname = \"{context}.command-results\"\n");
        declared += &format!("[[topic]]\nname = \"{context}-sagas.dlq\"\n");
        declared += &format!("[[topic]]\nname = \"{context}-processor.dlq\"\n");
        let kafka = KafkaConfig::for_servers(stack.kafka_bootstrap.clone());
        let topology = Topology::parse(&declared, "bench")?;
        causeway_kafka::topology::apply(&kafka, &topology, false, Duration::from_secs(30)).await?;
        let mut catalog = Catalog::load(&native::repo_root().join("avro"))?;
        for record in &mut catalog.records {
            if let Some(topic) = &mut record.topic {
                *topic = topic
                    .replacen("orders.", &format!("{context}."), 1)
                    .replacen("causeway.", &format!("{context}."), 1);
            }
        }
        RegistryClient::new(&stack.registry_url)
            .register_catalog(&catalog, |_| {})
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(Self {
            codec: Codec::new(&stack.registry_url),
            context,
            kafka,
            stack: stack.clone(),
            partitions,
        })
    }

    pub(crate) fn commands_topic(&self) -> String {
        format!("{}.inventory.commands", self.context)
    }

    pub(crate) fn events_topic(&self) -> String {
        format!("{}.inventory.events", self.context)
    }

    pub(crate) fn results_topic(&self) -> String {
        format!("{}.command-results", self.context)
    }

    /// The Kafka Streams baseline's output topics: events and results.
    pub(crate) fn streams_topics(&self) -> (String, String) {
        crate::streams::output_topics(&self.context)
    }

    /// Create [`World::streams_topics`].
    pub(crate) async fn create_streams_topics(&self) -> anyhow::Result<()> {
        crate::streams::create_output_topics(self).await
    }

    /// Preload `n` AddStock commands over `aggregates` SKUs; the mean encoded size.
    /// `n` AddStock commands over `aggregates` SKUs, encoded for the commands topic: (key, value).
    pub(crate) async fn load(
        &self,
        n: usize,
        aggregates: usize,
    ) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let topic = self.commands_topic();
        let mut records = Vec::with_capacity(n);
        for i in 0..n {
            let sku = format!("sku-{}", i % aggregates);
            let command = AddStock {
                command_id: format!("{}-{i}", self.context),
                sku: sku.clone(),
                quantity: 1,
                ..AddStock::default()
            };
            let bytes = self
                .codec
                .encode(&topic, "causeway.orders.inventory.AddStock", &command)
                .await?;
            records.push((sku, bytes));
        }
        Ok(records)
    }

    /// Send `records` to the commands topic and wait for every acknowledgement.
    pub(crate) async fn send_load(&self, records: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
        let producer = client::producer(&self.kafka, "bench")?;
        client::send_all(&producer, &self.commands_topic(), records)
            .await
            .map_err(|e| anyhow::anyhow!("sending the load: {e}"))
    }

    pub(crate) fn processor(&self, bin: &Path, instance: &str) -> anyhow::Result<ServiceProcess> {
        let config =
            native::repo_root().join("services/aggregate-processor/aggregate-processor.toml");
        let group = format!("{}-processor", self.context);
        let txn = format!("{group}-{instance}");
        let results = format!("{}.command-results", self.context);
        let state_dir = self.state_dir().display().to_string();
        let env = [
            (
                "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
                self.stack.kafka_bootstrap.as_str(),
            ),
            // Aggregate states on disk, as Kafka Streams keeps them in RocksDB.
            ("CAUSEWAY__PROCESSOR__STATE_DIR", state_dir.as_str()),
            ("CAUSEWAY__PROCESSOR__CONTEXT", self.context.as_str()),
            ("CAUSEWAY__PROCESSOR__AGGREGATES", r#"["inventory"]"#),
            ("CAUSEWAY__PROCESSOR__GROUP_ID", group.as_str()),
            ("CAUSEWAY__PROCESSOR__TRANSACTIONAL_ID", txn.as_str()),
            ("CAUSEWAY__PROCESSOR__RESULTS_TOPIC", results.as_str()),
            (
                "CAUSEWAY__PROCESSOR__REGISTRY_URL",
                self.stack.registry_url.as_str(),
            ),
            ("RUST_LOG", "warn"),
            // As the chart runs it (helm/causeway/templates/services.yaml).
            ("MALLOC_ARENA_MAX", "2"),
        ];
        ServiceProcess::start(bin, &config, &env).map_err(anyhow::Error::msg)
    }

    /// Where this world's processor instances keep their on-disk stores.
    pub(crate) fn state_dir(&self) -> PathBuf {
        std::env::temp_dir()
            .join("causeway-bench-state")
            .join(&self.context)
    }

    /// Records of the commands topic not yet committed by the processor group.
    pub(crate) fn lag(&self, consumer: &BaseConsumer, partitions: i32) -> anyhow::Result<i64> {
        let topic = self.commands_topic();
        let mut list = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for p in 0..partitions {
            let (_, high) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10))?;
            ends.insert(p, high);
            list.add_partition(&topic, p);
        }
        let committed = consumer.committed_offsets(list, Duration::from_secs(10))?;
        Ok(committed
            .elements()
            .iter()
            .map(|e| {
                let at = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                };
                (ends.get(&e.partition()).copied().unwrap_or(0) - at).max(0)
            })
            .sum())
    }
}

/// The processor's mean transaction time (ms) and mean batch size, from its metrics.
pub(crate) fn transaction_profile(processor: &ServiceProcess) -> String {
    let Ok((_, text)) = processor.get("/metrics") else {
        return "(no metrics)".into();
    };
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let transactions = value("causeway_processor_transaction_seconds_count");
    format!(
        "{transactions:.0} transactions, mean {:.1} ms, mean {:.1} commands each",
        value("causeway_processor_transaction_seconds_sum") * 1000.0 / transactions,
        value("causeway_processor_batch_records_sum") / transactions
    )
}

/// Kafka's producer perf tool: `n` records of `size` bytes, `acks=all`, on a topic of its own.
pub(crate) fn kafka_ceiling(
    stack: &Stack,
    kafka: &KafkaConfig,
    n: usize,
    size: usize,
    partitions: i32,
) -> anyhow::Result<Samples> {
    let topic = unique("bench-ceiling");
    let declared = format!(
        "[defaults]\npartitions = {partitions}\nreplication_factor = 1\n[[topic]]\nname = \"{topic}\"\n"
    );
    let topology = Topology::parse(&declared, "bench")?;
    tokio::runtime::Handle::current().block_on(causeway_kafka::topology::apply(
        kafka,
        &topology,
        false,
        Duration::from_secs(30),
    ))?;
    let libs = native::stack_dir().join("kafka/libs/*");
    let out = Command::new("java")
        .arg("-cp")
        .arg(&libs)
        .arg("org.apache.kafka.tools.ProducerPerformance")
        .args(["--topic", &topic, "--num-records", &n.to_string()])
        .args(["--record-size", &size.to_string(), "--throughput", "-1"])
        .arg("--producer-props")
        .arg(format!("bootstrap.servers={}", stack.kafka_bootstrap))
        .args([
            "acks=all",
            "enable.idempotence=true",
            "linger.ms=5",
            "compression.type=lz4",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "ProducerPerformance failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    // The last line: "N records sent, R records/sec (M MB/sec), ..."
    let rate: f64 = text
        .lines()
        .rev()
        .find(|l| l.contains("records/sec"))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|f| f.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no rate in ProducerPerformance's output: {text}"))?;
    Ok(Samples::throughput(
        n,
        Duration::from_secs_f64(n as f64 / rate.max(f64::EPSILON)),
    ))
}

/// The gateway with one processor behind it: (end-to-end samples, POST-only samples).
async fn gateway_runs(args: &Args, stack: &Stack) -> anyhow::Result<(Samples, Samples)> {
    let world = World::new(stack, args.partitions).await?;
    let mut processor = world.processor(&args.processor_bin, "gw")?;
    processor
        .wait_ready(Duration::from_secs(60))
        .map_err(anyhow::Error::msg)?;
    let api = format!("127.0.0.1:{}", free_port());
    let config = native::repo_root().join("services/command-gateway/command-gateway.toml");
    let results = format!("{}.command-results", world.context);
    let mut gateway = ServiceProcess::start(
        &args.gateway_bin,
        &config,
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
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let base = Arc::new(format!("http://{api}"));

    let run = |wait: bool| {
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let mut tasks = Vec::new();
        for c in 0..args.clients {
            let http = http.clone();
            let base = Arc::clone(&base);
            let aggregates = args.aggregates;
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0usize;
                while Instant::now() < deadline {
                    let id = format!(
                        "{}-{c}-{n}-{}",
                        if wait { "e2e" } else { "post" },
                        unique("c")
                    );
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
                    if wait {
                        let status: serde_json::Value = http
                            .get(format!("{base}/v1/commands/{id}?wait_ms=10000"))
                            .send()
                            .await?
                            .json()
                            .await?;
                        anyhow::ensure!(status["status"] == "accepted", "status: {status}");
                    }
                    latencies.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>(latencies)
            }));
        }
        async move {
            let started = Instant::now();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await??);
            }
            Ok::<_, anyhow::Error>(Samples::new(all, started.elapsed()))
        }
    };
    let end_to_end = run(true).await?;
    eprintln!(
        "  end to end, processor: {}",
        transaction_profile(&processor)
    );
    let posts = run(false).await?;
    let _ = gateway.terminate(Duration::from_secs(20));
    let _ = processor.terminate(Duration::from_secs(30));
    Ok((end_to_end, posts))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    use crate::compare::{self, Launch, System};
    let stack = native::endpoints()
        .map_err(|e| anyhow::anyhow!("the stack is not running (make up): {e}"))?;
    let classpath = tokio::task::spawn_blocking(crate::streams::build).await??;
    let launch = Launch {
        processor_bin: &args.processor_bin,
        classpath: &classpath,
        state_root: std::env::temp_dir().join(unique("bench-streams-state")),
    };
    let systems = args.systems.clone();
    let runs = |figure: Figure| args.runs.contains(&figure);
    anyhow::ensure!(
        !runs(Figure::Latency) || runs(Figure::Throughput) || args.latency_rate.is_some(),
        "the latency runs need the throughput runs (half of each one's throughput) or --latency-rate"
    );

    // Throughput and RSS: each system and instance count on a world of its own, preloaded alike.
    let mut size = 0;
    let mut drains: HashMap<(System, usize), compare::Drain> = HashMap::new();
    let mut last_world = None;
    for instances in [1, 2].into_iter().filter(|_| runs(Figure::Throughput)) {
        for &system in &systems {
            let world = World::new(&stack, args.partitions).await?;
            world.create_streams_topics().await?;
            eprintln!(
                "processor bench: {} commands, {}, {instances} instance(s)",
                args.commands,
                system.name()
            );
            let load = world.load(args.commands, args.aggregates).await?;
            size = load.iter().map(|(_, v)| v.len()).sum::<usize>() / load.len().max(1);
            let drained = compare::drain(&launch, system, &world, instances, &load).await?;
            drains.insert((system, instances), drained);
            last_world = Some(world);
        }
    }
    let rate = |system: System, instances: usize| {
        drains
            .get(&(system, instances))
            .map(|d| Samples::throughput(args.commands, d.elapsed))
            .unwrap_or_default()
    };

    let ceiling = if runs(Figure::Throughput) {
        eprintln!(
            "processor bench: ceilings (kafka-producer-perf-test, TransactionalMessageCopier)"
        );
        let stack = stack.clone();
        let kafka = KafkaConfig::for_servers(stack.kafka_bootstrap.clone());
        let (n, partitions) = (args.commands, args.partitions);
        tokio::task::spawn_blocking(move || kafka_ceiling(&stack, &kafka, n, size, partitions))
            .await??
    } else {
        Samples::default()
    };
    let eos_ceiling = match &last_world {
        Some(world) => {
            tokio::task::block_in_place(|| compare::eos_ceiling(world, 500, args.commands))?
        }
        None => Samples::default(),
    };

    // Latency at half of each one's own 1-instance throughput.
    let mut latencies = HashMap::new();
    for &system in systems.iter().filter(|_| runs(Figure::Latency)) {
        let half = args
            .latency_rate
            .unwrap_or_else(|| rate(system, 1).rate() / 2.0);
        eprintln!(
            "processor bench: {}, command -> result at {half:.0}/s for {} s",
            system.name(),
            args.latency_seconds
        );
        let world = World::new(&stack, args.partitions).await?;
        world.create_streams_topics().await?;
        let samples = compare::latency(
            &launch,
            system,
            &world,
            half,
            args.latency_seconds,
            args.aggregates,
        )
        .await?;
        latencies.insert(system, samples);
    }

    // Restarts with many aggregates.
    let mut restarts = HashMap::new();
    if args.restore_aggregates > 0 && runs(Figure::Restart) {
        for &system in &systems {
            eprintln!(
                "processor bench: {}, {} aggregates: build, restart, restore",
                system.name(),
                args.restore_aggregates
            );
            let world = World::new(&stack, args.partitions).await?;
            world.create_streams_topics().await?;
            let measured =
                compare::restart(&launch, system, &world, args.restore_aggregates).await?;
            restarts.insert(system, measured);
        }
    }
    let _ = std::fs::remove_dir_all(&launch.state_root);

    let (end_to_end, posts) = if runs(Figure::Gateway) {
        eprintln!("processor bench: the gateway");
        gateway_runs(&args, &stack).await?
    } else {
        Default::default()
    };

    let ours_latency = latencies.remove(&System::Causeway).unwrap_or_default();
    let theirs_latency = latencies.remove(&System::Streams).unwrap_or_default();
    // What the latency runs' rate was: half of each one's throughput, or the one given.
    let load = match args.latency_rate {
        Some(rate) => format!("at {rate:.0}/s"),
        None => "at 50% load".to_string(),
    };
    let ours_label = format!("causeway: command -> result, {load}");
    let theirs_label = format!("kafka streams: command -> result, {load}");
    table(
        &format!(
            "command path (release builds; {} commands of {size} bytes over {} aggregates, {} partitions; \
             {} HTTP clients; loopback; 2 cores shared by client, services and Kafka)",
            args.commands, args.aggregates, args.partitions, args.clients
        ),
        &[
            (
                "causeway processor, 1 instance (EOS)",
                &rate(System::Causeway, 1),
            ),
            (
                "kafka streams, 1 instance (EOS v2)",
                &rate(System::Streams, 1),
            ),
            (
                "causeway processor, 2 instances",
                &rate(System::Causeway, 2),
            ),
            ("kafka streams, 2 instances", &rate(System::Streams, 2)),
            ("  ceiling: kafka-producer-perf-test acks=all", &ceiling),
            (
                "  reference: TransactionalMessageCopier (EOS)",
                &eos_ceiling,
            ),
            (&ours_label, &ours_latency),
            (&theirs_label, &theirs_latency),
            ("gateway POST -> 202 (acks=all)", &posts),
            ("end to end: POST -> result on status API", &end_to_end),
        ],
    );
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!("\ncauseway beside kafka streams (same run, same machine)");
    for instances in [1, 2] {
        println!(
            "  throughput, {instances} instance(s): {:.2}x",
            ratio(
                rate(System::Causeway, instances).rate(),
                rate(System::Streams, instances).rate()
            )
        );
    }
    println!(
        "  p99 command -> result {load}: {:.1} ms vs {:.1} ms ({:.2}x)",
        ours_latency.quantile_ms(0.99),
        theirs_latency.quantile_ms(0.99),
        ratio(
            theirs_latency.quantile_ms(0.99),
            ours_latency.quantile_ms(0.99)
        )
    );
    let rss = |system: System| {
        drains
            .get(&(system, 1))
            .map_or(0.0, |d| d.rss_kib as f64 / 1024.0)
    };
    println!(
        "  peak RSS under load, 1 instance: {:.1} MiB vs {:.1} MiB (JVM {}): {:.2} of it",
        rss(System::Causeway),
        rss(System::Streams),
        crate::streams::HEAP,
        ratio(rss(System::Causeway), rss(System::Streams))
    );
    for (system, measured) in &restarts {
        println!(
            "  {}: {} aggregates built in {:.2} s (peak RSS {:.1} MiB); restart after a clean stop {:.2} s; restore with local state lost {:.2} s",
            system.name(),
            args.restore_aggregates,
            measured.drain.elapsed.as_secs_f64(),
            measured.drain.rss_kib as f64 / 1024.0,
            measured.restart.as_secs_f64(),
            measured.restore.as_secs_f64()
        );
    }
    if let (Some(ours), Some(theirs)) = (
        restarts.get(&System::Causeway),
        restarts.get(&System::Streams),
    ) {
        let n = args.restore_aggregates;
        println!(
            "  {n} aggregates built at {:.0}/s vs {:.0}/s; peak RSS {:.1} MiB vs {:.1} MiB",
            n as f64 / ours.drain.elapsed.as_secs_f64(),
            n as f64 / theirs.drain.elapsed.as_secs_f64(),
            ours.drain.rss_kib as f64 / 1024.0,
            theirs.drain.rss_kib as f64 / 1024.0
        );
        println!(
            "  restore of {n} aggregates (local state lost): {:.2} s vs {:.2} s ({:.2}x faster)",
            ours.restore.as_secs_f64(),
            theirs.restore.as_secs_f64(),
            ratio(theirs.restore.as_secs_f64(), ours.restore.as_secs_f64())
        );
        println!(
            "  restart after a clean stop, {n} aggregates: {:.2} s vs {:.2} s",
            ours.restart.as_secs_f64(),
            theirs.restart.as_secs_f64()
        );
    }
    Ok(())
}

//! Sagas end to end: the aggregate processor (every aggregate of the orders domain) and the saga
//! orchestrator, release builds, on topics of their own. Measured:
//! - sagas completed per second: a burst of PlaceOrder commands (stock and money for all), from the
//!   first sent until the orchestrator counts every instance completed;
//! - latency from OrderPlaced (its event's `occurred_at`) to the saga's terminal state (its last
//!   changelog record's `updated_at`), at half the burst's rate;
//! - beside them, in the same run: the processor's command throughput alone (AddStock commands
//!   preloaded, one instance, as `causeway-bench processor` measures it), and the commands per second
//!   the processor handled inside the saga run (each saga sends one command per line, then three).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use causeway_contracts::upcast::Upcasters;
use causeway_kafka::client;
use causeway_kafka::client::ReadsToEnd;
use causeway_kafka::config::OffsetMode;
use causeway_orders::contracts::OrderLine;
use causeway_orders::contracts::inventory::AddStock;
use causeway_orders::contracts::order::PlaceOrder;
use causeway_orders::contracts::payment::{Deposit, OpenAccount};
use causeway_testcontainers::process::ServiceProcess;
use causeway_testcontainers::{native, unique};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::processor::World;
use crate::stats::{Samples, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The processor binary (build it with --release).
    #[arg(long, default_value = "target/release/aggregate-processor")]
    processor_bin: PathBuf,
    /// The orchestrator binary (build it with --release).
    #[arg(long, default_value = "target/release/saga-orchestrator")]
    orchestrator_bin: PathBuf,
    /// Orders in the burst.
    #[arg(long, default_value_t = 5_000)]
    orders: usize,
    /// Orders in the latency run (sent at half the burst's rate).
    #[arg(long, default_value_t = 2_000)]
    latency_orders: usize,
    /// Lines per order (each a SKU of its own).
    #[arg(long, default_value_t = 2)]
    lines: usize,
    /// SKUs and accounts the orders are spread over.
    #[arg(long, default_value_t = 500)]
    aggregates: usize,
    /// Commands preloaded for the processor's own throughput.
    #[arg(long, default_value_t = 50_000)]
    commands: usize,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
}

/// The saga run's helpers on the processor bench's world.
impl World {
    fn env(&self, group: &str, instance: &str) -> Vec<(&'static str, String)> {
        vec![
            (
                "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
                self.stack.kafka_bootstrap.clone(),
            ),
            ("CAUSEWAY__PROCESSOR__CONTEXT", self.context.clone()),
            ("CAUSEWAY__PROCESSOR__GROUP_ID", group.to_string()),
            (
                "CAUSEWAY__PROCESSOR__TRANSACTIONAL_ID",
                format!("{group}-{instance}"),
            ),
            (
                "CAUSEWAY__PROCESSOR__RESULTS_TOPIC",
                format!("{}.command-results", self.context),
            ),
            (
                "CAUSEWAY__PROCESSOR__REGISTRY_URL",
                self.stack.registry_url.clone(),
            ),
            ("RUST_LOG", "warn".into()),
        ]
    }

    fn start(
        &self,
        bin: &Path,
        service: &str,
        env: Vec<(&'static str, String)>,
    ) -> anyhow::Result<ServiceProcess> {
        let config = native::repo_root().join(format!("services/{service}/{service}.toml"));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut p = ServiceProcess::start(bin, &config, &env).map_err(anyhow::Error::msg)?;
        p.wait_ready(Duration::from_secs(60))
            .map_err(anyhow::Error::msg)?;
        Ok(p)
    }

    /// Encode and send `records` (record name, key, value) to `aggregate`'s commands.
    async fn send<T: Serialize>(
        &self,
        producer: &rdkafka::producer::FutureProducer,
        aggregate: &str,
        records: &[(&str, String, T)],
    ) -> anyhow::Result<()> {
        let topic = format!("{}.{aggregate}.commands", self.context);
        let mut encoded = Vec::with_capacity(records.len());
        for (name, key, value) in records {
            let full_name = format!("causeway.orders.{aggregate}.{name}");
            encoded.push((
                key.clone(),
                self.codec.encode(&topic, &full_name, value).await?,
            ));
        }
        client::send_all(producer, &topic, &encoded)
            .await
            .map_err(|e| anyhow::anyhow!("send to {topic}: {e}"))
    }

    /// Every record of `topic` read to its end (read_committed): (key, decoded value), the latest per
    /// key when `latest`.
    async fn read(
        &self,
        topic: &str,
        latest: bool,
    ) -> anyhow::Result<Vec<(String, apache_avro::types::Value)>> {
        let mut config = self.kafka.consumer_config(
            "bench-read",
            &unique("bench-read"),
            OffsetMode::Transactional,
        );
        config.set("enable.partition.eof", "true");
        let consumer: BaseConsumer<ReadsToEnd> = config.create_with_context(ReadsToEnd)?;
        let ends = causeway_kafka::lag::partition_ends(&consumer, topic, Duration::from_secs(10))?;
        let mut list = TopicPartitionList::new();
        let mut remaining = std::collections::HashSet::new();
        for (p, low, end) in ends {
            if end > low {
                list.add_partition_offset(topic, p, Offset::Beginning)?;
                remaining.insert(p);
            }
        }
        let mut raw: Vec<(String, Vec<u8>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        if !remaining.is_empty() {
            consumer.assign(&list)?;
        }
        while !remaining.is_empty() {
            match consumer.poll(Duration::from_millis(500)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    remaining.remove(&p);
                }
                Some(Err(e)) => anyhow::bail!("{topic}: {e}"),
                Some(Ok(m)) => {
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    let payload = m.payload().unwrap_or_default().to_vec();
                    match index.get(&key) {
                        Some(&i) if latest => raw[i] = (key, payload),
                        _ => {
                            index.insert(key.clone(), raw.len());
                            raw.push((key, payload));
                        }
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(raw.len());
        for (key, bytes) in raw {
            let decoded = self
                .codec
                .decode_value(&bytes, &Upcasters::default())
                .await?;
            out.push((key, decoded.value));
        }
        Ok(out)
    }
}

/// The value of field `name` of a record value.
fn field<'a>(
    value: &'a apache_avro::types::Value,
    name: &str,
) -> Option<&'a apache_avro::types::Value> {
    match value {
        apache_avro::types::Value::Record(fields) => {
            fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
        }
        _ => None,
    }
}

fn long(value: Option<&apache_avro::types::Value>) -> Option<i64> {
    use apache_avro::types::Value as V;
    match value? {
        V::Long(n) | V::TimestampMillis(n) => Some(*n),
        V::Int(n) => Some(i64::from(*n)),
        _ => None,
    }
}

/// (completed, not completed) instances the orchestrator counts, from its metrics.
fn finished(orchestrator: &ServiceProcess) -> (u64, u64) {
    let Ok((_, text)) = orchestrator.get("/metrics") else {
        return (0, 0);
    };
    let (mut completed, mut other) = (0, 0);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("causeway_saga_finished_total{") else {
            continue;
        };
        let n = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        if rest.contains("status=\"completed\"") {
            completed += n;
        } else {
            other += n;
        }
    }
    (completed, other)
}

/// The processor's commands handled so far, from its metrics.
fn commands(processor: &ServiceProcess) -> u64 {
    let Ok((_, text)) = processor.get("/metrics") else {
        return 0;
    };
    text.lines()
        .filter(|l| l.starts_with("causeway_processor_commands_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `n` orders numbered from `first`, each of `lines` lines over `aggregates` SKUs and accounts.
fn orders(
    first: usize,
    n: usize,
    lines: usize,
    aggregates: usize,
) -> Vec<(&'static str, String, PlaceOrder)> {
    (first..first + n)
        .map(|i| {
            let order = format!("o-{i}");
            let place = PlaceOrder {
                command_id: format!("place-{order}"),
                order_id: order.clone(),
                customer_id: "bench".into(),
                lines: (0..lines)
                    .map(|l| OrderLine {
                        sku: format!("sku-{}", (i * 7 + l * 13) % aggregates),
                        quantity: 1,
                        unit_price_cents: 100,
                    })
                    .collect(),
                currency: "EUR".into(),
                payment_account_id: format!("acc-{}", i % aggregates),
                ..PlaceOrder::default()
            };
            ("PlaceOrder", order, place)
        })
        .collect()
}

/// Wait until the orchestrator has finished `n` instances in all; how many completed.
async fn wait_finished(orchestrator: &ServiceProcess, n: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let (completed, other) = finished(orchestrator);
        if completed + other >= n {
            return Ok(completed);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {n} sagas finished in 15 minutes",
            completed + other
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let stack = native::endpoints()
        .map_err(|e| anyhow::anyhow!("the stack is not running (make up): {e}"))?;

    eprintln!(
        "sagas bench: the processor alone, {} commands",
        args.commands
    );
    let alone = World::new(&stack, args.partitions).await?;
    let load = alone.load(args.commands, args.aggregates).await?;
    let launch = crate::compare::Launch {
        processor_bin: &args.processor_bin,
        classpath: "",
        state_root: PathBuf::new(),
    };
    let elapsed_alone =
        crate::compare::drain(&launch, crate::compare::System::Causeway, &alone, 1, &load)
            .await?
            .elapsed;

    let world = World::of(
        &stack,
        args.partitions,
        &["order", "inventory", "payment"],
        &["order-fulfilment"],
    )
    .await?;
    let processor_group = format!("{}-processor", world.context);
    let processor = world.start(
        &args.processor_bin,
        "aggregate-processor",
        world.env(&processor_group, "a"),
    )?;
    let mut saga_env = world.env(&format!("{}-sagas", world.context), "a");
    // Neither a deadline nor a resend inside the measured runs: a backlog is not a silence.
    saga_env.push(("CAUSEWAY__SAGAS__DEADLINES_MS__fulfilment", "600000".into()));
    saga_env.push(("CAUSEWAY__SAGAS__RETRY_INITIAL_MS", "600000".into()));
    saga_env.push(("CAUSEWAY__SAGAS__RETRY_MAX_MS", "600000".into()));
    let orchestrator = world.start(&args.orchestrator_bin, "saga-orchestrator", saga_env)?;
    let producer = client::producer(&world.kafka, "bench")?;

    eprintln!("sagas bench: stock and money for every order");
    let stock: Vec<(&str, String, AddStock)> = (0..args.aggregates)
        .map(|s| {
            let sku = format!("sku-{s}");
            let add = AddStock {
                command_id: format!("add-{sku}"),
                sku: sku.clone(),
                quantity: 1_000_000,
                ..AddStock::default()
            };
            ("AddStock", sku, add)
        })
        .collect();
    world.send(&producer, "inventory", &stock).await?;
    let opens: Vec<(&str, String, OpenAccount)> = (0..args.aggregates)
        .map(|a| {
            let id = format!("acc-{a}");
            let open = OpenAccount {
                command_id: format!("open-{id}"),
                account_id: id.clone(),
                currency: "EUR".into(),
                ..OpenAccount::default()
            };
            ("OpenAccount", id, open)
        })
        .collect();
    world.send(&producer, "payment", &opens).await?;
    let deposits: Vec<(&str, String, Deposit)> = (0..args.aggregates)
        .map(|a| {
            let id = format!("acc-{a}");
            let deposit = Deposit {
                command_id: format!("deposit-{id}"),
                account_id: id.clone(),
                amount_cents: 1_000_000_000,
                ..Deposit::default()
            };
            ("Deposit", id, deposit)
        })
        .collect();
    world.send(&producer, "payment", &deposits).await?;

    // The set-up processed before the burst is measured.
    let setup = 3 * args.aggregates as u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while commands(&processor) < setup {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the set-up was not processed in 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("sagas bench: a burst of {} orders", args.orders);
    let burst = orders(0, args.orders, args.lines, args.aggregates);
    let commands_before = commands(&processor);
    let started = Instant::now();
    world.send(&producer, "order", &burst).await?;
    let completed = wait_finished(&orchestrator, args.orders as u64).await?;
    let elapsed_burst = started.elapsed();
    let commands_in_burst = commands(&processor).saturating_sub(commands_before);
    anyhow::ensure!(
        completed == args.orders as u64,
        "only {completed} of {} sagas completed (stock and money were there for all)",
        args.orders
    );
    let burst_rate = args.orders as f64 / elapsed_burst.as_secs_f64();

    let paced = (burst_rate / 2.0).max(1.0);
    eprintln!(
        "sagas bench: {} orders at {paced:.0}/s (half the burst's rate)",
        args.latency_orders
    );
    let latency = orders(
        args.orders,
        args.latency_orders,
        args.lines,
        args.aggregates,
    );
    let per_tick = (paced / 100.0).ceil() as usize;
    let tick = Duration::from_secs_f64(per_tick as f64 / paced);
    let started = Instant::now();
    for (i, chunk) in latency.chunks(per_tick.max(1)).enumerate() {
        world.send(&producer, "order", chunk).await?;
        let next = started + tick * u32::try_from(i + 1).unwrap_or(u32::MAX);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
    wait_finished(&orchestrator, (args.orders + args.latency_orders) as u64).await?;

    // OrderPlaced to terminal, per order of the paced run.
    let placed_at: HashMap<String, i64> = world
        .read(&format!("{}.order.events", world.context), false)
        .await?
        .into_iter()
        .filter_map(|(key, value)| {
            let at = long(field(field(&value, "metadata")?, "occurred_at"))?;
            field(&value, "total_cents")?;
            Some((key, at))
        })
        .collect();
    let ids: std::collections::HashSet<String> =
        latency.iter().map(|(_, id, _)| id.clone()).collect();
    let mut latencies = Vec::with_capacity(ids.len());
    for (key, value) in world
        .read(
            &format!("{}.order-fulfilment.changelog", world.context),
            true,
        )
        .await?
    {
        if !ids.contains(&key) {
            continue;
        }
        let (Some(placed), Some(done)) = (placed_at.get(&key), long(field(&value, "updated_at")))
        else {
            continue;
        };
        latencies.push(Duration::from_millis(
            u64::try_from(done - placed).unwrap_or(0),
        ));
    }
    let paced_samples = Samples::new(latencies, started.elapsed());
    let _ = orchestrator.terminate(Duration::from_secs(30));
    let _ = processor.terminate(Duration::from_secs(30));

    let per_saga = commands_in_burst as f64 / args.orders as f64;
    table(
        &format!(
            "sagas (release builds; OrderFulfilment, {} line(s) per order over {} SKUs and accounts, {} \
             partitions; processor and orchestrator one instance each; loopback; 2 cores shared by \
             client, services and Kafka)",
            args.lines, args.aggregates, args.partitions
        ),
        &[
            (
                "sagas completed, burst (PlaceOrder -> done)",
                &Samples::throughput(args.orders, elapsed_burst),
            ),
            (
                "  processor commands during the burst",
                &Samples::throughput(
                    usize::try_from(commands_in_burst).unwrap_or(0),
                    elapsed_burst,
                ),
            ),
            ("OrderPlaced -> terminal, at half that rate", &paced_samples),
            (
                "  baseline: processor alone (AddStock, 1 instance)",
                &Samples::throughput(args.commands, elapsed_alone),
            ),
        ],
    );
    println!(
        "commands per saga through the processor: {per_saga:.1} (PlaceOrder, {} reserve(s), authorize, \
         confirm, capture)",
        args.lines
    );
    Ok(())
}

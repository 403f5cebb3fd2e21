//! The Kafka Streams baseline (bench/streams, Java): built from Maven Central jars by
//! `bench/streams/build.sh`, started as a JVM per instance, followed through what it prints (`STATE`,
//! `RESTORED`), stopped with SIGTERM. And the check that it writes what the aggregate processor writes:
//! the same events and results, on the same fixed input (`causeway-bench baseline-check`, run by
//! `make test` and before every `make bench` comparison).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_contracts::upcast::Upcasters;
use causeway_kafka::config::OffsetMode;
use causeway_kafka::{Topology, client};
use causeway_orders::contracts::inventory::{
    AddStock, CommitReservation, ReleaseReservation, ReserveStock,
};
use causeway_testcontainers::{native, unique};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::processor::World;

/// The baseline's heap: enough for a million aggregates in RocksDB's block cache and the record
/// caches, as a production deployment would size it.
pub(crate) const HEAP: &str = "-Xmx1g";

/// Build the baseline (a no-op when up to date); its classpath.
pub(crate) fn build() -> anyhow::Result<String> {
    let script = native::repo_root().join("bench/streams/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed ({})",
        script.display(),
        out.status
    );
    let classpath = String::from_utf8(out.stdout)?.trim().to_string();
    anyhow::ensure!(
        !classpath.is_empty(),
        "{} printed no classpath",
        script.display()
    );
    Ok(classpath)
}

/// What an instance has printed so far.
#[derive(Debug, Default)]
struct Seen {
    /// The last `STATE`.
    state: String,
    /// `RESTORED <records> <ms>`.
    restored: Option<(u64, u64)>,
}

/// One instance of the baseline: a JVM.
pub(crate) struct Streams {
    child: Option<Child>,
    seen: Arc<Mutex<Seen>>,
    log: PathBuf,
    name: String,
}

impl Streams {
    /// Start instance `instance` of application `app` on `world`'s commands, writing to its
    /// [`World::streams_topics`], keeping its state under `state_dir`.
    pub(crate) fn start(
        world: &World,
        classpath: &str,
        app: &str,
        instance: &str,
        state_dir: &Path,
    ) -> anyhow::Result<Self> {
        let (events, results) = world.streams_topics();
        let name = format!("{app}-{instance}");
        let log = std::env::temp_dir().join(format!("{}.log", unique("streams")));
        let err = std::fs::File::create(&log)?;
        let mut child = Command::new("java")
            .arg(HEAP)
            .arg("-cp")
            .arg(classpath)
            .arg("dev.causeway.bench.InventoryStreams")
            .args(["--bootstrap", &world.stack.kafka_bootstrap])
            .args(["--registry", &world.stack.registry_url])
            .args(["--context", &world.context])
            .args(["--events", &events, "--results", &results])
            .args(["--application-id", app, "--instance", &name])
            .arg("--state-dir")
            .arg(state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start java (Kafka Streams baseline): {e}"))?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        if let Some(stdout) = child.stdout.take() {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(state) = line.strip_prefix("STATE ") {
                        seen.state = state.to_string();
                    } else if let Some(rest) = line.strip_prefix("RESTORED ") {
                        let mut n = rest.split_whitespace().map(|v| v.parse().unwrap_or(0));
                        seen.restored = Some((n.next().unwrap_or(0), n.next().unwrap_or(0)));
                    }
                }
            });
        }
        Ok(Self {
            child: Some(child),
            seen,
            log,
            name,
        })
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Wait until the instance is RUNNING (its tasks restored and processing). Fails with its log if it
    /// exits first.
    pub(crate) fn wait_running(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.seen(|s| s.state == "RUNNING") {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                anyhow::bail!(
                    "{} exited ({status}) before it was running; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} not running within {timeout:?} (state {:?}); its log:\n{}",
                self.name,
                self.seen(|s| s.state.clone()),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it is RUNNING now; fails with its log if it exited.
    pub(crate) fn is_running(&mut self) -> anyhow::Result<bool> {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            anyhow::bail!("{} exited ({status}); its log:\n{}", self.name, self.log());
        }
        Ok(self.seen(|s| s.state == "RUNNING"))
    }

    /// Records restored into its store and how long that took, once restoration ended.
    pub(crate) fn restored(&self) -> Option<(u64, Duration)> {
        self.seen(|s| s.restored)
            .map(|(n, ms)| (n, Duration::from_millis(ms)))
    }

    /// The JVM's process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM (Kafka Streams closes cleanly, writing its checkpoints), SIGKILL after 60 s.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!("{} still running 60 s after SIGTERM; killed", self.name)
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The processor binary.
    #[arg(long, default_value = "target/release/aggregate-processor")]
    processor_bin: PathBuf,
    /// Commands in the fixed input.
    #[arg(long, default_value_t = 600)]
    commands: usize,
    /// SKUs they are spread over.
    #[arg(long, default_value_t = 16)]
    aggregates: usize,
}

/// A small generator with a fixed seed (xorshift64*), so the input is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The fixed input: every command type, accepted and rejected for each rule (invalid quantity,
/// insufficient stock, a second reservation, no reservation, a version conflict), correlation ids,
/// and earlier commands sent again (answered from the dedup window). Keyed by SKU, encoded.
async fn fixed_input(
    world: &World,
    n: usize,
    aggregates: usize,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let topic = format!("{}.inventory.commands", world.context);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut records: Vec<(String, Vec<u8>)> = Vec::with_capacity(n);
    let ns = "causeway.orders.inventory";
    for i in 0..n {
        let roll = rng.below(20);
        if roll == 19 && !records.is_empty() {
            let again = records[rng.below(records.len() as u64) as usize].clone();
            records.push(again);
            continue;
        }
        let sku = format!("sku-{}", rng.below(aggregates as u64));
        let order = format!("order-{}", rng.below(12));
        let command_id = format!("{}-{i}", world.context);
        let expected_version = match rng.below(16) {
            0 => Some(0),
            1 => Some(7),
            _ => None,
        };
        let correlation_id = (rng.below(4) == 0).then(|| format!("flow-{}", rng.below(5)));
        let bytes = match roll {
            0..=6 => {
                let command = AddStock {
                    command_id,
                    expected_version,
                    correlation_id,
                    sku: sku.clone(),
                    quantity: i32::try_from(rng.below(6)).unwrap_or(1),
                    ..AddStock::default()
                };
                world
                    .codec
                    .encode(&topic, &format!("{ns}.AddStock"), &command)
                    .await?
            }
            7..=12 => {
                let command = ReserveStock {
                    command_id,
                    expected_version,
                    correlation_id,
                    sku: sku.clone(),
                    order_id: order,
                    quantity: i32::try_from(rng.below(9)).unwrap_or(1),
                    ..ReserveStock::default()
                };
                world
                    .codec
                    .encode(&topic, &format!("{ns}.ReserveStock"), &command)
                    .await?
            }
            13..=15 => {
                let command = ReleaseReservation {
                    command_id,
                    expected_version,
                    correlation_id,
                    sku: sku.clone(),
                    order_id: order,
                    ..ReleaseReservation::default()
                };
                world
                    .codec
                    .encode(&topic, &format!("{ns}.ReleaseReservation"), &command)
                    .await?
            }
            _ => {
                let command = CommitReservation {
                    command_id,
                    expected_version,
                    correlation_id,
                    sku: sku.clone(),
                    order_id: order,
                    ..CommitReservation::default()
                };
                world
                    .codec
                    .encode(&topic, &format!("{ns}.CommitReservation"), &command)
                    .await?
            }
        };
        records.push((sku, bytes));
    }
    Ok(records)
}

/// Every committed record of `topic` until `done` says the values read are enough, or, when `done`
/// is `None`, until each partition's end as it stands now.
fn read_topic(
    world: &World,
    topic: &str,
    done: Option<&dyn Fn(usize) -> bool>,
    timeout: Duration,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let consumer: BaseConsumer = world
        .kafka
        .consumer_config(
            "bench-check",
            &unique("bench-check"),
            OffsetMode::Transactional,
        )
        .create()?;
    let mut list = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..world.partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)?;
        if done.is_none() {
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            ends.insert(p, high);
        }
    }
    consumer.assign(&list)?;
    let deadline = Instant::now() + timeout;
    let mut values = Vec::new();
    loop {
        let finished = match done {
            Some(done) => done(values.len()),
            None => {
                let positions = consumer.position()?;
                positions.elements().iter().all(|e| match e.offset() {
                    Offset::Offset(at) => at >= ends.get(&e.partition()).copied().unwrap_or(0),
                    _ => ends.get(&e.partition()).copied().unwrap_or(0) == 0,
                })
            }
        };
        if finished {
            return Ok(values);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{topic}: {} records read within {timeout:?}, more expected",
            values.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            values.push(m?.payload().unwrap_or_default().to_vec());
        }
    }
}

/// `value` as JSON with its keys sorted and the fields that differ by nature (event ids, clocks) left
/// out.
fn canonical(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .filter(|(k, _)| !matches!(k.as_str(), "event_id" | "occurred_at" | "processed_at"))
                .map(|(k, v)| (k, canonical(v)))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// The values decoded, named and made canonical, sorted.
async fn decoded(world: &World, values: &[Vec<u8>]) -> anyhow::Result<Vec<String>> {
    let upcasters = Upcasters::default();
    let mut out = Vec::with_capacity(values.len());
    for bytes in values {
        let d = world.codec.decode_value(bytes, &upcasters).await?;
        let json = serde_json::Value::try_from(d.value)
            .map_err(|e| anyhow::anyhow!("{}: {e}", d.full_name))?;
        out.push(format!("{} {}", d.full_name, canonical(json)));
    }
    out.sort();
    Ok(out)
}

/// The first lines where two sorted lists differ, for the failure message.
fn differences(ours: &[String], theirs: &[String]) -> String {
    let mut shown = Vec::new();
    for line in ours {
        if theirs.binary_search(line).is_err() {
            shown.push(format!("  only the processor's: {line}"));
        }
    }
    for line in theirs {
        if ours.binary_search(line).is_err() {
            shown.push(format!("  only Kafka Streams':  {line}"));
        }
    }
    shown.truncate(12);
    shown.join("\n")
}

/// Run the processor and the baseline on one fixed input; fail unless they write the same events
/// and results (event ids and clocks aside), and unless the input exercised every rule.
pub async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let stack = native::endpoints()
        .map_err(|e| anyhow::anyhow!("the stack is not running (make up): {e}"))?;
    let classpath = tokio::task::spawn_blocking(build).await??;
    let world = World::new(&stack, 3).await?;
    world.create_streams_topics().await?;
    let input = fixed_input(&world, args.commands, args.aggregates).await?;
    let producer = client::producer(&world.kafka, "bench")?;
    client::send_all(&producer, &world.commands_topic(), &input)
        .await
        .map_err(|e| anyhow::anyhow!("producing the input: {e}"))?;
    let n = input.len();
    eprintln!("baseline check: {n} commands on {}", world.commands_topic());

    let state_dir = std::env::temp_dir().join(unique("streams-state"));
    let mut streams = Streams::start(
        &world,
        &classpath,
        &format!("{}-streams", world.context),
        "i0",
        &state_dir,
    )?;
    let mut processor = world.processor(&args.processor_bin, "i0")?;
    processor
        .wait_ready(Duration::from_secs(120))
        .map_err(anyhow::Error::msg)?;
    streams.wait_running(Duration::from_secs(120))?;

    let (ks_events, ks_results) = world.streams_topics();
    let enough = |count: usize| count >= n;
    let timeout = Duration::from_secs(180);
    let ours_results = read_topic(&world, &world.results_topic(), Some(&enough), timeout)?;
    let theirs_results = read_topic(&world, &ks_results, Some(&enough), timeout)?;
    let ours_events = read_topic(&world, &world.events_topic(), None, timeout)?;
    let theirs_events = read_topic(&world, &ks_events, None, timeout)?;
    let _ = processor.terminate(Duration::from_secs(30));
    let stopped = streams.stop();
    let _ = std::fs::remove_dir_all(&state_dir);
    stopped?;

    let ours_results = decoded(&world, &ours_results).await?;
    let theirs_results = decoded(&world, &theirs_results).await?;
    let ours_events = decoded(&world, &ours_events).await?;
    let theirs_events = decoded(&world, &theirs_events).await?;

    // The input must exercise every rule, or equality proves little.
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for line in &ours_results {
        let json: serde_json::Value =
            serde_json::from_str(line.split_once(' ').map_or("", |s| s.1))?;
        let label = match json["rejection_code"].as_str() {
            Some(code) => code.to_string(),
            None => json["outcome"].as_str().unwrap_or("?").to_lowercase(),
        };
        *outcomes.entry(label).or_default() += 1;
    }
    let resent = n - input
        .iter()
        .map(|(_, bytes)| bytes)
        .collect::<std::collections::HashSet<_>>()
        .len();
    eprintln!(
        "baseline check: results {outcomes:?}; {} events; {resent} commands sent twice",
        ours_events.len()
    );
    for code in [
        "accepted",
        "invalid_quantity",
        "insufficient_stock",
        "duplicate_reservation",
        "no_reservation",
        "conflict",
    ] {
        anyhow::ensure!(
            outcomes.get(code).copied().unwrap_or(0) > 0,
            "the fixed input produced no {code} result: widen it ({outcomes:?})"
        );
    }
    anyhow::ensure!(resent > 0, "the fixed input sends no command twice");
    anyhow::ensure!(
        ours_results.len() == n && theirs_results.len() == n,
        "results: the processor wrote {}, Kafka Streams {}, for {n} commands",
        ours_results.len(),
        theirs_results.len()
    );
    anyhow::ensure!(
        ours_results == theirs_results,
        "the results differ:\n{}",
        differences(&ours_results, &theirs_results)
    );
    anyhow::ensure!(
        ours_events == theirs_events,
        "the events differ ({} vs {}):\n{}",
        ours_events.len(),
        theirs_events.len(),
        differences(&ours_events, &theirs_events)
    );
    println!(
        "baseline check: the processor and Kafka Streams wrote the same {} results and {} events",
        n,
        ours_events.len()
    );
    Ok(())
}

/// The baseline's output topics in `world`: events and results.
pub(crate) fn output_topics(context: &str) -> (String, String) {
    (
        format!("{context}.streams.events"),
        format!("{context}.streams.results"),
    )
}

/// Create the baseline's output topics of `world` (as many partitions as its commands).
pub(crate) async fn create_output_topics(world: &World) -> anyhow::Result<()> {
    let (events, results) = output_topics(&world.context);
    let declared = format!(
        "[defaults]\npartitions = {}\nreplication_factor = 1\n[[topic]]\nname = \"{events}\"\n\
         [[topic]]\nname = \"{results}\"\n",
        world.partitions
    );
    let topology = Topology::parse(&declared, "bench")?;
    causeway_kafka::topology::apply(&world.kafka, &topology, false, Duration::from_secs(30))
        .await?;
    Ok(())
}

//! The Kafka Streams baseline (bench/streams, Java): built from Maven Central jars by
//! `bench/streams/build.sh`, started as a JVM per instance, followed through what it prints (`STATE`,
//! `RESTORED`), stopped with SIGTERM. And the check that it writes what the aggregate processor writes:
//! the same events, results and final states on the same fixed input (`causeway-bench
//! baseline-check`, run by `make test` and by `make bench` before the comparison).

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
            // Its stdin stays open while this handle lives: the JVM exits when it closes, even when
            // the bench is killed.
            .stdin(Stdio::piped())
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

/// One command of the fixed input.
struct Input {
    key: String,
    bytes: Vec<u8>,
    /// The record's timestamp (ms); `None`: the producer's clock.
    timestamp: Option<i64>,
}

/// A command of the fixed input, before encoding.
enum Cmd {
    Add(AddStock),
    Reserve(ReserveStock),
    Release(ReleaseReservation),
    Commit(CommitReservation),
}

impl Cmd {
    async fn encode(&self, world: &World) -> anyhow::Result<(String, Vec<u8>)> {
        let topic = world.commands_topic();
        let ns = "causeway.orders.inventory";
        Ok(match self {
            Cmd::Add(c) => (
                c.sku.clone(),
                world
                    .codec
                    .encode(&topic, &format!("{ns}.AddStock"), c)
                    .await?,
            ),
            Cmd::Reserve(c) => (
                c.sku.clone(),
                world
                    .codec
                    .encode(&topic, &format!("{ns}.ReserveStock"), c)
                    .await?,
            ),
            Cmd::Release(c) => (
                c.sku.clone(),
                world
                    .codec
                    .encode(&topic, &format!("{ns}.ReleaseReservation"), c)
                    .await?,
            ),
            Cmd::Commit(c) => (
                c.sku.clone(),
                world
                    .codec
                    .encode(&topic, &format!("{ns}.CommitReservation"), c)
                    .await?,
            ),
        })
    }
}

fn add(id: String, sku: &str, quantity: i32) -> Cmd {
    Cmd::Add(AddStock {
        command_id: id,
        sku: sku.to_string(),
        quantity,
        ..AddStock::default()
    })
}

fn release(id: String, sku: &str, order: &str) -> Cmd {
    Cmd::Release(ReleaseReservation {
        command_id: id,
        sku: sku.to_string(),
        order_id: order.to_string(),
        ..ReleaseReservation::default()
    })
}

fn reserve(id: String, sku: &str, order: &str, quantity: i32) -> Cmd {
    Cmd::Reserve(ReserveStock {
        command_id: id,
        sku: sku.to_string(),
        order_id: order.to_string(),
        quantity,
        ..ReserveStock::default()
    })
}

/// The fixed input: random commands of every type over `aggregates` SKUs (each rule accepted and
/// rejected, version conflicts, correlation ids, earlier commands sent again), then scenarios for the
/// edges: more commands on one SKU than the dedup window remembers and early ones sent again;
/// reasons longer than their limit, in multibyte characters, filling the window's byte bound; records
/// stamped 8 days ago (the window's clock and age bound); a stock that would pass the most units a SKU
/// holds.
async fn fixed_input(world: &World, n: usize, aggregates: usize) -> anyhow::Result<Vec<Input>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut inputs: Vec<Input> = Vec::with_capacity(n + 400);
    let ctx = &world.context;
    for i in 0..n {
        let roll = rng.below(20);
        if roll == 19 && !inputs.is_empty() {
            let again = &inputs[rng.below(inputs.len() as u64) as usize];
            inputs.push(Input {
                key: again.key.clone(),
                bytes: again.bytes.clone(),
                timestamp: None,
            });
            continue;
        }
        let sku = format!("sku-{}", rng.below(aggregates as u64));
        let order = format!("order-{}", rng.below(12));
        let command_id = format!("{ctx}-{i}");
        let expected_version = match rng.below(16) {
            0 => Some(0),
            1 => Some(7),
            _ => None,
        };
        let correlation_id = (rng.below(4) == 0).then(|| format!("flow-{}", rng.below(5)));
        let command = match roll {
            0..=6 => Cmd::Add(AddStock {
                command_id,
                expected_version,
                correlation_id,
                sku,
                quantity: i32::try_from(rng.below(6)).unwrap_or(1),
                ..AddStock::default()
            }),
            7..=12 => Cmd::Reserve(ReserveStock {
                command_id,
                expected_version,
                correlation_id,
                sku,
                order_id: order,
                quantity: i32::try_from(rng.below(9)).unwrap_or(1),
                ..ReserveStock::default()
            }),
            13..=15 => Cmd::Release(ReleaseReservation {
                command_id,
                expected_version,
                correlation_id,
                sku,
                order_id: order,
                ..ReleaseReservation::default()
            }),
            _ => Cmd::Commit(CommitReservation {
                command_id,
                expected_version,
                correlation_id,
                sku,
                order_id: order,
                ..CommitReservation::default()
            }),
        };
        let (key, bytes) = command.encode(world).await?;
        inputs.push(Input {
            key,
            bytes,
            timestamp: None,
        });
    }

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(0))
        .unwrap_or(0);
    let day = 86_400_000;
    let mut scenario: Vec<(Cmd, Option<i64>)> = Vec::new();
    // The count bound: 130 commands on one SKU, then the 6th (forgotten: processed again) and the
    // 121st (remembered: answered again) sent again.
    for i in 0..130 {
        scenario.push((add(format!("{ctx}-w-{i}"), "sku-window", 1), None));
    }
    for i in [5, 120] {
        scenario.push((add(format!("{ctx}-w-{i}"), "sku-window", 1), None));
    }
    // Long reasons: order ids of 600 two-byte characters make every `no_reservation` reason longer
    // than 1,024 bytes (cut at a character boundary), and 70 of them pass the window's 64 KiB: the
    // first is forgotten and decided again, the last answered again.
    scenario.push((add(format!("{ctx}-l-add"), "sku-long", 1), None));
    let long = |i: usize| format!("{i}-{}", "é".repeat(600));
    scenario.push((reserve(format!("{ctx}-l-r"), "sku-long", &long(0), 1), None));
    for i in 1..=70 {
        scenario.push((release(format!("{ctx}-l-{i}"), "sku-long", &long(i)), None));
    }
    scenario.push((release(format!("{ctx}-l-1"), "sku-long", &long(1)), None));
    scenario.push((release(format!("{ctx}-l-70"), "sku-long", &long(70)), None));
    scenario.push((
        reserve(format!("{ctx}-l-dup"), "sku-long", &long(0), 1),
        None,
    ));
    // The age bound and the window's clock: stamped 8 days ago, then now (the first leaves the
    // window), the first sent again (decided again). (A record stamped ahead counts as now, the
    // processing clock: not comparable between two runs, so not here.)
    scenario.push((add(format!("{ctx}-a-1"), "sku-old", 2), Some(now - 8 * day)));
    scenario.push((add(format!("{ctx}-a-2"), "sku-old", 3), Some(now)));
    scenario.push((add(format!("{ctx}-a-1"), "sku-old", 2), Some(now)));
    scenario.push((add(format!("{ctx}-a-2"), "sku-old", 3), Some(now)));
    // The most units a SKU holds.
    scenario.push((add(format!("{ctx}-m-1"), "sku-max", 999_999_999), None));
    scenario.push((add(format!("{ctx}-m-2"), "sku-max", 2), None));
    scenario.push((add(format!("{ctx}-m-3"), "sku-max", 1), None));
    for (command, timestamp) in scenario {
        let (key, bytes) = command.encode(world).await?;
        inputs.push(Input {
            key,
            bytes,
            timestamp,
        });
    }
    Ok(inputs)
}

/// A record read back: partition, key, value.
type Read = (i32, Vec<u8>, Vec<u8>);

/// Every committed record of `topic`, in offset order per partition: until at least `at_least`
/// values are read, then on to each partition's end as it stands.
fn read_topic(
    world: &World,
    topic: &str,
    partitions: i32,
    at_least: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Read>> {
    let consumer: BaseConsumer = world
        .kafka
        .consumer_config(
            "bench-check",
            &unique("bench-check"),
            OffsetMode::Transactional,
        )
        .create()?;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let deadline = Instant::now() + timeout;
    let mut values = Vec::new();
    let mut ends: Option<BTreeMap<i32, i64>> = None;
    loop {
        if ends.is_none() && values.len() >= at_least {
            let mut known = BTreeMap::new();
            for p in 0..partitions {
                let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
                known.insert(p, high);
            }
            ends = Some(known);
        }
        if let Some(ends) = &ends {
            let positions = consumer.position()?;
            let done = positions.elements().iter().all(|e| {
                let end = ends.get(&e.partition()).copied().unwrap_or(0);
                match e.offset() {
                    Offset::Offset(at) => at >= end,
                    _ => end == 0,
                }
            });
            if done {
                return Ok(values);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{topic}: {} records read within {timeout:?}, at least {at_least} expected",
            values.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            values.push((
                m.partition(),
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
}

/// `value` as JSON with its keys sorted and the fields named in `drop` left out.
fn canonical(value: serde_json::Value, drop: &[&str]) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .filter(|(k, _)| !drop.contains(&k.as_str()))
                .map(|(k, v)| (k, canonical(v, drop)))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| canonical(v, drop)).collect())
        }
        other => other,
    }
}

/// A record as a line: its key, record name and canonical value (without `drop`).
async fn line(world: &World, key: &[u8], bytes: &[u8], drop: &[&str]) -> anyhow::Result<String> {
    let d = world
        .codec
        .decode_value(bytes, &Upcasters::default())
        .await?;
    let json = serde_json::Value::try_from(d.value)
        .map_err(|e| anyhow::anyhow!("{}: {e}", d.full_name))?;
    Ok(format!(
        "{} {} {}",
        String::from_utf8_lossy(key),
        d.full_name,
        canonical(json, drop)
    ))
}

/// Fields that differ by nature between two runs: event ids and the processing clock.
const CLOCKS: &[&str] = &["event_id", "occurred_at", "processed_at"];

/// Results: every one as a line, sorted (the two write them to different partitions).
async fn result_lines(world: &World, records: &[Read]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::with_capacity(records.len());
    for (_, key, value) in records {
        out.push(line(world, key, value, CLOCKS).await?);
    }
    out.sort();
    Ok(out)
}

/// Events: per partition, in offset order (the order of each aggregate's history).
async fn event_lines(world: &World, records: &[Read]) -> anyhow::Result<Vec<String>> {
    let mut by_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (p, key, value) in records {
        by_partition
            .entry(*p)
            .or_default()
            .push(format!("p{p} {}", line(world, key, value, CLOCKS).await?));
    }
    Ok(by_partition.into_values().flatten().collect())
}

/// Changelogs: the last state of each aggregate (`updated_at` aside; the remembered commands' times
/// are the window's clock, the same in both), sorted.
async fn state_lines(world: &World, records: &[Read]) -> anyhow::Result<Vec<String>> {
    let mut last: BTreeMap<Vec<u8>, &Vec<u8>> = BTreeMap::new();
    for (_, key, value) in records {
        last.insert(key.clone(), value);
    }
    let mut out = Vec::with_capacity(last.len());
    for (key, value) in last {
        if !value.is_empty() {
            out.push(line(world, &key, value, &["updated_at"]).await?);
        }
    }
    Ok(out)
}

/// The first lines where two lists differ, for the failure message.
fn differences(ours: &[String], theirs: &[String]) -> String {
    let mut shown = Vec::new();
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        if a != b {
            shown.push(format!(
                "  #{i}\n    the processor: {a}\n    Kafka Streams: {b}"
            ));
        }
    }
    if ours.len() != theirs.len() {
        shown.push(format!(
            "  the processor wrote {}, Kafka Streams {}",
            ours.len(),
            theirs.len()
        ));
    }
    shown.truncate(6);
    shown.join("\n")
}

/// Run the processor and the baseline on one fixed input; fail unless they write the same events
/// (per partition, in order, with their keys), the same results and the same final states, event ids
/// and clocks aside, and unless the input exercised every rule.
pub async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let stack = native::endpoints()
        .map_err(|e| anyhow::anyhow!("the stack is not running (make up): {e}"))?;
    let classpath = tokio::task::spawn_blocking(build).await??;
    let world = World::new(&stack, 3).await?;
    world.create_streams_topics().await?;
    let input = fixed_input(&world, args.commands, args.aggregates).await?;
    let producer = client::producer(&world.kafka, "bench")?;
    let topic = world.commands_topic();
    let mut pending = Vec::with_capacity(input.len());
    for i in &input {
        let mut record = rdkafka::producer::FutureRecord::to(&topic)
            .key(i.key.as_str())
            .payload(i.bytes.as_slice());
        if let Some(ts) = i.timestamp {
            record = record.timestamp(ts);
        }
        match producer.send_result(record) {
            Ok(f) => pending.push(f),
            Err((e, _)) => anyhow::bail!("producing the input: {e}"),
        }
    }
    for f in pending {
        f.await
            .map_err(|_| anyhow::anyhow!("producing the input: cancelled"))?
            .map_err(|(e, _)| anyhow::anyhow!("producing the input: {e}"))?;
    }
    let n = input.len();
    eprintln!("baseline check: {n} commands on {topic}");

    let state_dir = std::env::temp_dir().join(unique("streams-state"));
    let app = format!("{}-streams", world.context);
    let mut streams = Streams::start(&world, &classpath, &app, "i0", &state_dir)?;
    let mut processor = world.processor(&args.processor_bin, "i0")?;
    processor
        .wait_ready(Duration::from_secs(120))
        .map_err(anyhow::Error::msg)?;
    streams.wait_running(Duration::from_secs(120))?;

    let (ks_events, ks_results) = world.streams_topics();
    let timeout = Duration::from_secs(180);
    let p = world.partitions;
    let ours_results = read_topic(&world, &world.results_topic(), p, n, timeout)?;
    let theirs_results = read_topic(&world, &ks_results, p, n, timeout)?;
    let ours_events = read_topic(&world, &world.events_topic(), p, 0, timeout)?;
    let theirs_events = read_topic(&world, &ks_events, p, 0, timeout)?;
    let ours_states = read_topic(
        &world,
        &format!("{}.inventory.changelog", world.context),
        p,
        0,
        timeout,
    )?;
    let theirs_states = read_topic(&world, &format!("{app}-inventory-changelog"), p, 0, timeout)?;
    let _ = processor.terminate(Duration::from_secs(30));
    let stopped = streams.stop();
    let _ = std::fs::remove_dir_all(&state_dir);
    let _ = std::fs::remove_dir_all(world.state_dir());
    stopped?;

    let ours_results = result_lines(&world, &ours_results).await?;
    let theirs_results = result_lines(&world, &theirs_results).await?;
    let ours_events = event_lines(&world, &ours_events).await?;
    let theirs_events = event_lines(&world, &theirs_events).await?;
    let ours_states = state_lines(&world, &ours_states).await?;
    let theirs_states = state_lines(&world, &theirs_states).await?;

    // The input must exercise every rule and record, or equality proves little.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in &ours_results {
        let json: serde_json::Value =
            serde_json::from_str(line.splitn(3, ' ').nth(2).unwrap_or(""))?;
        let label = match json["rejection_code"].as_str() {
            Some(code) => code.to_string(),
            None => json["outcome"].as_str().unwrap_or("?").to_lowercase(),
        };
        *seen.entry(label).or_default() += 1;
    }
    for line in &ours_events {
        let name = line.split(' ').nth(2).unwrap_or("?");
        *seen
            .entry(name.rsplit('.').next().unwrap_or(name).to_string())
            .or_default() += 1;
    }
    let cut = ours_results
        .iter()
        .filter(|l| l.contains("\"reason\":") && l.len() > 1024 && !l.contains("holds at most"))
        .count();
    let distinct = input
        .iter()
        .map(|i| &i.bytes)
        .collect::<std::collections::HashSet<_>>()
        .len();
    eprintln!(
        "baseline check: {seen:?}; {} commands sent again; {cut} long reasons; {} states",
        n - distinct,
        ours_states.len()
    );
    for what in [
        "accepted",
        "invalid_quantity",
        "insufficient_stock",
        "duplicate_reservation",
        "no_reservation",
        "conflict",
        "StockAdded",
        "StockReserved",
        "ReservationReleased",
        "ReservationCommitted",
    ] {
        anyhow::ensure!(
            seen.get(what).copied().unwrap_or(0) > 0,
            "the fixed input produced no {what}: widen it ({seen:?})"
        );
    }
    anyhow::ensure!(n > distinct, "the fixed input sends no command twice");
    anyhow::ensure!(
        cut >= 70,
        "the fixed input has {cut} reasons to cut, 70 expected"
    );
    anyhow::ensure!(
        ours_results.len() == n && theirs_results.len() == n,
        "results: the processor wrote {}, Kafka Streams {}, for {n} commands",
        ours_results.len(),
        theirs_results.len()
    );
    for (what, ours, theirs) in [
        ("results", &ours_results, &theirs_results),
        ("events", &ours_events, &theirs_events),
        ("final states", &ours_states, &theirs_states),
    ] {
        anyhow::ensure!(
            ours == theirs,
            "the {what} differ:\n{}",
            differences(ours, theirs)
        );
    }
    println!(
        "baseline check: the processor and Kafka Streams wrote the same {n} results, {} events and \
         {} final states",
        ours_events.len(),
        ours_states.len()
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

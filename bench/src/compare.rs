//! Causeway's aggregate processor and the Kafka Streams baseline (bench/streams) side by side, on the
//! same machine, broker and workload: throughput with 1 and 2 instances (commands preloaded, from the
//! first instance ready until the group has committed them all), peak RSS under that load, p50/p99
//! from a command produced until its result is readable at half of each one's own 1-instance
//! throughput, and the time to come back after a restart with many aggregates (a clean stop, and a
//! restore with the local state lost).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_kafka::client;
use causeway_kafka::config::OffsetMode;
use causeway_orders::contracts::inventory::AddStock;
use causeway_testcontainers::process::ServiceProcess;
use causeway_testcontainers::unique;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::processor::World;
use crate::stats::Samples;
use crate::streams::Streams;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub(crate) enum System {
    /// The aggregate processor (release build).
    Causeway,
    /// The Kafka Streams baseline.
    Streams,
}

impl System {
    pub(crate) fn name(self) -> &'static str {
        match self {
            System::Causeway => "causeway processor",
            System::Streams => "kafka streams",
        }
    }
}

/// How to start either system.
pub(crate) struct Launch<'a> {
    pub(crate) processor_bin: &'a Path,
    pub(crate) classpath: &'a str,
    /// Where the baseline's instances keep their state (RocksDB), one folder per world.
    pub(crate) state_root: PathBuf,
}

/// One running instance.
pub(crate) enum Instance {
    Causeway(ServiceProcess),
    Streams(Streams),
}

impl Instance {
    fn pid(&self) -> Option<u32> {
        match self {
            Instance::Causeway(p) => p.pid(),
            Instance::Streams(s) => s.pid(),
        }
    }

    /// Ready: restored and processing (the processor's `/readyz`, Kafka Streams' RUNNING).
    fn is_ready(&mut self) -> anyhow::Result<bool> {
        match self {
            Instance::Causeway(p) => {
                if let Ok(Some(status)) = p.try_exit() {
                    anyhow::bail!("the processor exited ({status}): {}", p.log());
                }
                Ok(matches!(p.get("/readyz"), Ok((200, _))))
            }
            Instance::Streams(s) => s.is_running(),
        }
    }

    fn stop(self) -> anyhow::Result<()> {
        match self {
            Instance::Causeway(p) => p
                .terminate(Duration::from_secs(60))
                .map(|_| ())
                .map_err(anyhow::Error::msg),
            Instance::Streams(s) => s.stop(),
        }
    }
}

impl Launch<'_> {
    /// Start instance `instance` of `system` on `world`.
    pub(crate) fn start(
        &self,
        system: System,
        world: &World,
        instance: &str,
    ) -> anyhow::Result<Instance> {
        Ok(match system {
            System::Causeway => Instance::Causeway(world.processor(self.processor_bin, instance)?),
            System::Streams => Instance::Streams(Streams::start(
                world,
                self.classpath,
                &streams_app(world),
                instance,
                &self.state_dir(world, instance),
            )?),
        })
    }

    /// Where instance `instance` of the baseline keeps its state in `world`.
    pub(crate) fn state_dir(&self, world: &World, instance: &str) -> PathBuf {
        self.state_root.join(&world.context).join(instance)
    }
}

/// The baseline's application id (its consumer group) in `world`.
fn streams_app(world: &World) -> String {
    format!("{}-streams", world.context)
}

/// The consumer group of `system` in `world`.
fn group(system: System, world: &World) -> String {
    match system {
        System::Causeway => format!("{}-processor", world.context),
        System::Streams => streams_app(world),
    }
}

/// The results topic of `system` in `world`.
fn results_topic(system: System, world: &World) -> String {
    match system {
        System::Causeway => world.results_topic(),
        System::Streams => world.streams_topics().1,
    }
}

/// Wait until every one of `instances` is ready.
fn wait_all_ready(instances: &mut [Instance], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for i in instances.iter_mut() {
        while !i.is_ready()? {
            anyhow::ensure!(
                Instant::now() < deadline,
                "not every instance ready within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// VmHWM (peak resident set) of `pid`, in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A drain of a load of commands.
pub(crate) struct Drain {
    /// From the first command sent until the group committed every one.
    pub(crate) elapsed: Duration,
    /// Peak RSS of the first instance, KiB.
    pub(crate) rss_kib: u64,
}

/// Start `instances` of `system` on `world`, wait until every one is ready and the group has
/// settled, then send `load` and time it from the first command sent until the group has committed
/// them all; and the first instance's peak RSS. The instances are stopped (cleanly) afterwards.
pub(crate) async fn drain(
    launch: &Launch<'_>,
    system: System,
    world: &World,
    instances: usize,
    load: &[(String, Vec<u8>)],
) -> anyhow::Result<Drain> {
    let mut running = Vec::new();
    for i in 0..instances {
        running.push(launch.start(system, world, &format!("i{i}"))?);
    }
    // Every instance ready, and still ready once the rebalances of its joining are over.
    tokio::task::block_in_place(|| -> anyhow::Result<()> {
        wait_all_ready(&mut running, Duration::from_secs(300))?;
        std::thread::sleep(SETTLE);
        wait_all_ready(&mut running, Duration::from_secs(300))
    })?;
    let consumer: BaseConsumer = world
        .kafka
        .consumer_config(
            "bench-lag",
            &group(system, world),
            OffsetMode::Transactional,
        )
        .create()?;
    let started = Instant::now();
    world.send_load(load).await?;
    let deadline = started + Duration::from_secs(1800);
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} did not drain in 30 minutes",
            system.name()
        );
        match world.lag(&consumer, world.partitions) {
            Ok(0) => break,
            Ok(_) => {}
            // A busy broker may answer a metadata request late; ask again.
            Err(e) => eprintln!("  (lag not known yet: {e})"),
        }
        for i in &mut running {
            // Fails when an instance has exited.
            i.is_ready()?;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    for (i, instance) in running.iter().enumerate() {
        if let Instance::Causeway(p) = instance {
            eprintln!(
                "  instance {i}: {}",
                crate::processor::transaction_profile(p)
            );
        }
    }
    let rss_kib = running
        .first()
        .and_then(Instance::pid)
        .map(peak_rss_kib)
        .unwrap_or(0);
    for i in running {
        i.stop()?;
    }
    Ok(Drain { elapsed, rss_kib })
}

/// How long a group is given to settle after its instances are ready (the rebalances of joining).
const SETTLE: Duration = Duration::from_secs(3);

/// p50/p99 from a command produced until its result is readable (read_committed), at `rate`
/// commands/s for `seconds`, one instance of `system` on `world`; the first [`WARM_UP`] is not
/// counted (the JVM's JIT, the processor's caches).
pub(crate) async fn latency(
    launch: &Launch<'_>,
    system: System,
    world: &World,
    rate: f64,
    seconds: u64,
    aggregates: usize,
) -> anyhow::Result<Samples> {
    let mut instance = launch.start(system, world, "lat")?;
    wait_all_ready(
        std::slice::from_mut(&mut instance),
        Duration::from_secs(300),
    )?;
    let n = ((rate * seconds as f64) as usize).max(1);
    let topic = world.commands_topic();
    let prefix = unique("lat");
    let mut records = Vec::with_capacity(n);
    for i in 0..n {
        let sku = format!("sku-{}", i % aggregates.max(1));
        let command = AddStock {
            command_id: format!("{prefix}-{i}"),
            sku: sku.clone(),
            quantity: 1,
            ..AddStock::default()
        };
        let bytes = world
            .codec
            .encode(&topic, "causeway.orders.inventory.AddStock", &command)
            .await?;
        records.push((sku, bytes));
    }

    // The results reader, positioned at the results topic's end before the first command is sent.
    let results = results_topic(system, world);
    let consumer: BaseConsumer = world
        .kafka
        .consumer_config(
            "bench-latency",
            &unique("bench-latency"),
            OffsetMode::Transactional,
        )
        .create()?;
    let mut list = TopicPartitionList::new();
    for p in 0..world.partitions {
        let (_, high) = consumer.fetch_watermarks(&results, p, Duration::from_secs(10))?;
        list.add_partition_offset(&results, p, Offset::Offset(high))?;
    }
    consumer.assign(&list)?;
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; n]));
    let reader = {
        let sent = Arc::clone(&sent);
        let prefix = format!("{prefix}-");
        std::thread::spawn(move || -> anyhow::Result<Vec<(usize, Duration)>> {
            let mut seen: HashMap<usize, Duration> = HashMap::with_capacity(n);
            let deadline = Instant::now() + Duration::from_secs(seconds + 120);
            while seen.len() < n && Instant::now() < deadline {
                let Some(m) = consumer.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let m = m?;
                let at = Instant::now();
                let index = m
                    .key()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .and_then(|k| k.strip_prefix(&prefix))
                    .and_then(|i| i.parse::<usize>().ok());
                if let Some(i) = index
                    && let Some(Some(t)) = sent.lock().unwrap_or_else(|p| p.into_inner()).get(i)
                {
                    seen.entry(i).or_insert(at - *t);
                }
            }
            Ok(seen.into_iter().collect())
        })
    };

    let producer = client::producer(&world.kafka, "bench-latency")?;
    let began = Instant::now();
    let mut pending = Vec::with_capacity(n);
    let mut next = 0usize;
    while next < n {
        let due = ((began.elapsed().as_secs_f64() * rate) as usize + 1).min(n);
        while next < due {
            let (key, value) = &records[next];
            let record = rdkafka::producer::FutureRecord::to(&topic)
                .key(key.as_str())
                .payload(value.as_slice());
            sent.lock().unwrap_or_else(|p| p.into_inner())[next] = Some(Instant::now());
            match producer.send_result(record) {
                Ok(f) => pending.push(f),
                Err((e, _)) => anyhow::bail!("sending a command: {e}"),
            }
            next += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for f in pending {
        f.await
            .map_err(|_| anyhow::anyhow!("a send was cancelled"))?
            .map_err(|(e, _)| anyhow::anyhow!("a send failed: {e}"))?;
    }
    let seen = tokio::task::spawn_blocking(move || reader.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the results reader panicked"))??;
    instance.stop()?;
    anyhow::ensure!(
        seen.len() == n,
        "{}: {} of {n} results read",
        system.name(),
        seen.len()
    );
    let warm_up = (rate * WARM_UP.as_secs_f64()) as usize;
    let latencies: Vec<Duration> = seen
        .into_iter()
        .filter(|(i, _)| *i >= warm_up)
        .map(|(_, d)| d)
        .collect();
    let measured = Duration::from_secs(seconds).saturating_sub(WARM_UP);
    Ok(Samples::new(
        latencies,
        measured.max(Duration::from_secs(1)),
    ))
}

/// The start of a latency run that is not counted.
const WARM_UP: Duration = Duration::from_secs(5);

/// Coming back with many aggregates.
pub(crate) struct Restart {
    /// The drain that built the state (one instance).
    pub(crate) drain: Drain,
    /// Started again after a clean stop, local state kept: from start until ready.
    pub(crate) restart: Duration,
    /// Started again with the local state lost: from start until ready (the whole changelog read).
    pub(crate) restore: Duration,
}

/// Preload one AddStock for each of `aggregates` SKUs on `world`, drain them with one instance of
/// `system`, then time its restart after a clean stop and its restore without local state.
pub(crate) async fn restart(
    launch: &Launch<'_>,
    system: System,
    world: &World,
    aggregates: usize,
) -> anyhow::Result<Restart> {
    let load = world.load(aggregates, aggregates).await?;
    let drain = drain(launch, system, world, 1, &load).await?;
    drop(load);
    let timed = |wipe: bool| -> anyhow::Result<Duration> {
        if wipe {
            let dir = match system {
                System::Causeway => world.state_dir(),
                System::Streams => launch.state_dir(world, "i0"),
            };
            std::fs::remove_dir_all(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        }
        let started = Instant::now();
        let mut instance = launch.start(system, world, "i0")?;
        wait_all_ready(
            std::slice::from_mut(&mut instance),
            Duration::from_secs(1800),
        )?;
        let elapsed = started.elapsed();
        if let (true, Instance::Causeway(p)) = (wipe, &instance) {
            let restored = p
                .get("/metrics")
                .ok()
                .and_then(|(_, text)| {
                    text.lines()
                        .find(|l| l.starts_with("causeway_processor_restored_records_total"))
                        .and_then(|l| l.rsplit(' ').next())
                        .and_then(|v| v.parse::<f64>().ok())
                })
                .unwrap_or(0.0);
            anyhow::ensure!(
                restored >= aggregates as f64,
                "the processor restored {restored} records, fewer than the {aggregates} aggregates"
            );
        }
        if let (true, Instance::Streams(streams)) = (wipe, &instance) {
            // Its store was rebuilt from the changelog, not found on disk.
            let restored = streams.restored().map_or(0, |(n, _)| n);
            anyhow::ensure!(
                restored >= aggregates as u64,
                "kafka streams restored {restored} records, fewer than the {aggregates} aggregates"
            );
        }
        instance.stop()?;
        Ok(elapsed)
    };
    let restart = timed(false)?;
    let restore = timed(true)?;
    Ok(Restart {
        drain,
        restart,
        restore,
    })
}

/// Kafka's own exactly-once read-process-write tool (`TransactionalMessageCopier`, kafka-tools): every
/// record of `world`'s commands topic copied to a topic of its own in transactions of
/// `transaction_size` records, offsets committed with the group metadata (EOS v2): a copy with no
/// decoding, state or logic, as a reference (the tool is built for system tests, not speed: its
/// producer's `batch.size` is 512 bytes and it logs every poll). Measured from its group's
/// assignment to its shutdown, as the tool reports them; it must copy `n` records.
pub(crate) fn eos_ceiling(
    world: &World,
    transaction_size: usize,
    n: usize,
) -> anyhow::Result<Samples> {
    let output = unique("bench-eos-copy");
    let declared = format!(
        "[defaults]\npartitions = {}\nreplication_factor = 1\n[[topic]]\nname = \"{output}\"\n",
        world.partitions
    );
    let topology = causeway_kafka::Topology::parse(&declared, "bench")?;
    tokio::runtime::Handle::current().block_on(causeway_kafka::topology::apply(
        &world.kafka,
        &topology,
        false,
        Duration::from_secs(30),
    ))?;
    let libs = causeway_testcontainers::native::stack_dir().join("kafka/libs/*");
    let child = std::process::Command::new("java")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .arg("-cp")
        .arg(&libs)
        .arg("org.apache.kafka.tools.TransactionalMessageCopier")
        .args([
            "--input-topic",
            &world.commands_topic(),
            "--input-partition",
            "0",
        ])
        .args(["--output-topic", &output])
        .args(["--broker-list", &world.stack.kafka_bootstrap])
        .args(["--transactional-id", &output, "--consumer-group", &output])
        .args(["--group-mode", "--use-group-metadata"])
        .args(["--transaction-size", &transaction_size.to_string()])
        .spawn()?;
    // Stopped if it runs for ten minutes (it copies what was there when it started, then exits); the
    // watchdog ends with it, so that it never signals a later process given the same pid.
    let pid = child.id();
    let exited = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let exited = Arc::clone(&exited);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            while Instant::now() < deadline {
                if exited.load(std::sync::atomic::Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        })
    };
    let out = child.wait_with_output();
    exited.store(true, std::sync::atomic::Ordering::Release);
    let _ = watchdog.join();
    let out = out?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "TransactionalMessageCopier failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One JSON line per stage: {"stage":"RebalanceComplete","time":"2026/12/01 03:45:21:345",...}.
    let stage = |name: &str| -> Option<(f64, u64)> {
        let line: serde_json::Value = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .rfind(|v| v["stage"] == name)?;
        let time = line["time"].as_str()?;
        let clock = time.split_whitespace().nth(1)?;
        let mut parts = clock.split(':').map(|p| p.parse::<f64>().ok());
        let (h, m, s, ms) = (
            parts.next()??,
            parts.next()??,
            parts.next()??,
            parts.next()??,
        );
        Some((
            h * 3600.0 + m * 60.0 + s + ms / 1000.0,
            line["totalProcessed"].as_u64()?,
        ))
    };
    let (Some((from, _)), Some((to, copied))) =
        (stage("RebalanceComplete"), stage("ShutdownComplete"))
    else {
        anyhow::bail!("no timings in TransactionalMessageCopier's output: {text}");
    };
    anyhow::ensure!(
        usize::try_from(copied).unwrap_or(0) == n,
        "TransactionalMessageCopier copied {copied} of {n} records"
    );
    let seconds = if to >= from {
        to - from
    } else {
        to + 86_400.0 - from
    };
    Ok(Samples::throughput(
        usize::try_from(copied).unwrap_or(0),
        Duration::from_secs_f64(seconds.max(0.001)),
    ))
}

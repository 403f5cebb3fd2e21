//! A world of its own for each test: the domain's topics and contracts under a unique context (so no
//! two tests, and no two runs, share a topic or a group), the processor as a process, and readers that
//! take a topic to its end.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use causeway_contracts::catalog::Catalog;
use causeway_contracts::registry::RegistryClient;
use causeway_contracts::upcast::Upcasters;
use causeway_contracts::wire::Codec;
use causeway_kafka::config::OffsetMode;
use causeway_kafka::topology::{self, Topology};
use causeway_kafka::{KafkaConfig, client};
use causeway_testcontainers::process::{ServiceProcess, free_port, http_request_with};
use causeway_testcontainers::{stack, unique};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::Value as Json;

/// The processor binary: cargo's own in this package's tests; in another package's (which include this
/// module), the workspace's ([`processor_binary`]).
pub const BIN: &str = match option_env!("CARGO_BIN_EXE_aggregate-processor") {
    Some(bin) => bin,
    None => "",
};
pub const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../aggregate-processor/aggregate-processor.toml"
);

/// The processor binary to start.
pub fn processor_binary() -> PathBuf {
    if BIN.is_empty() {
        workspace_binary("aggregate-processor")
    } else {
        PathBuf::from(BIN)
    }
}

/// One test's topics, contracts and names.
pub struct World {
    /// The stack it lives on.
    pub stack: causeway_testcontainers::Stack,
    /// The domain's name (as the processor's config names it) and its aggregate types.
    pub domain: &'static str,
    pub aggregates: Vec<&'static str>,
    pub context: String,
    pub kafka: KafkaConfig,
    pub codec: Codec,
    pub group: String,
    pub results_topic: String,
    pub dlq_topic: String,
    pub partitions: i32,
    producer: FutureProducer,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.state_dir());
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

impl World {
    /// The orders domain's topics `<ctx>.<aggregate>.{commands,events,changelog}` with `partitions`
    /// each, a results topic, a DLQ, and every contract registered under those topics.
    pub async fn new(partitions: i32) -> Self {
        Self::of(causeway_orders::hosting::domain(), partitions, ("", "")).await
    }

    /// [`World::new`] for `domain`, with `topic_config` = (kind, TOML such as `config = { ... }`) added to
    /// each topic of that kind (`events`, `changelog`).
    pub async fn of(
        domain: causeway_contracts::domain::Domain,
        partitions: i32,
        topic_config: (&str, &str),
    ) -> Self {
        Self::on(stack(), domain, partitions, 1, topic_config).await
    }

    /// [`World::of`] on the stack `s` (a stack of the test's own, to break), its topics replicated
    /// `replication` times.
    pub async fn on(
        s: &causeway_testcontainers::Stack,
        domain: causeway_contracts::domain::Domain,
        partitions: i32,
        replication: i32,
        topic_config: (&str, &str),
    ) -> Self {
        let context = unique("p");
        let group = format!("{context}-processor");
        let results_topic = format!("{context}.command-results");
        let dlq_topic = format!("{group}.dlq");
        let mut toml =
            format!("[defaults]\npartitions = {partitions}\nreplication_factor = {replication}\n");
        let aggregates = domain.aggregate_names();
        for aggregate in &aggregates {
            let (kind, config) = topic_config;
            let extra = |k: &str| if k == kind { config } else { "" };
            toml += &format!("[[topic]]\nname = \"{context}.{aggregate}.commands\"\n");
            toml += &format!(
                "[[topic]]\nname = \"{context}.{aggregate}.events\"\n{}\n",
                extra("events")
            );
            toml += &format!(
                "[[topic]]\nname = \"{context}.{aggregate}.changelog\"\ncleanup_policy = \"compact\"\n{}\n",
                extra("changelog")
            );
        }
        for saga in domain.saga_names() {
            toml += &format!("[[topic]]\nname = \"{context}.{saga}.inbox\"\n");
            toml += &format!(
                "[[topic]]\nname = \"{context}.{saga}.changelog\"\ncleanup_policy = \"compact\"\n"
            );
        }
        toml += &format!(
            "[[topic]]\nname = \"{results_topic}\"\n[[topic]]\nname = \"{dlq_topic}\"\n\
             [[topic]]\nname = \"{context}-sagas.dlq\"\n"
        );
        let topology = Topology::parse(&toml, "test").unwrap_or_else(|e| panic!("{e}"));
        let kafka = KafkaConfig::for_servers(s.kafka_bootstrap.clone());
        topology::apply(&kafka, &topology, false, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut catalog = Catalog::load(&repo("avro")).unwrap_or_else(|e| panic!("{e}"));
        for record in &mut catalog.records {
            if let Some(topic) = &mut record.topic {
                *topic = if topic == "causeway.command-results" {
                    results_topic.clone()
                } else {
                    topic.replacen(&format!("{}.", domain.name), &format!("{context}."), 1)
                };
            }
        }
        RegistryClient::new(&s.registry_url)
            .register_catalog(&catalog, |_| {})
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let producer = client::producer(&kafka, "test").unwrap_or_else(|e| panic!("{e}"));
        Self {
            codec: Codec::new(&s.registry_url),
            stack: s.clone(),
            domain: domain.name,
            aggregates,
            context,
            kafka,
            group,
            results_topic,
            dlq_topic,
            partitions,
            producer,
        }
    }

    pub fn topic(&self, aggregate: &str, kind: &str) -> String {
        format!("{}.{aggregate}.{kind}", self.context)
    }

    /// The environment that points the sample config at this world, with `instance` in the
    /// transactional id.
    /// Where this world's processor instances keep their on-disk stores (one file per instance);
    /// removed with the world.
    pub fn state_dir(&self) -> PathBuf {
        std::env::temp_dir()
            .join("causeway-processor-state")
            .join(&self.group)
    }

    pub fn env(&self, instance: &str) -> Vec<(&'static str, String)> {
        let s = &self.stack;
        vec![
            (
                "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
                s.kafka_bootstrap.clone(),
            ),
            ("CAUSEWAY__PROCESSOR__DOMAIN", self.domain.to_string()),
            ("CAUSEWAY__PROCESSOR__AGGREGATES", "[]".to_string()),
            ("CAUSEWAY__PROCESSOR__CONTEXT", self.context.clone()),
            ("CAUSEWAY__PROCESSOR__GROUP_ID", self.group.clone()),
            (
                "CAUSEWAY__PROCESSOR__RESULTS_TOPIC",
                self.results_topic.clone(),
            ),
            ("CAUSEWAY__PROCESSOR__REGISTRY_URL", s.registry_url.clone()),
            (
                "CAUSEWAY__PROCESSOR__TRANSACTIONAL_ID",
                format!("{}-{instance}", self.group),
            ),
            // A crashed instance's open transaction blocks readers until this passes.
            (
                "CAUSEWAY__PROCESSOR__TRANSACTION_TIMEOUT_MS",
                "10000".into(),
            ),
            // An instance that leaves for good hands its partitions over after this.
            (
                "CAUSEWAY__KAFKA__PROPERTIES__session.timeout.ms",
                "6000".into(),
            ),
            // Every processor test runs with the on-disk store and a cache smaller than its
            // aggregates: states leave memory and are read back, restores read from checkpoints.
            (
                "CAUSEWAY__PROCESSOR__STATE_DIR",
                self.state_dir().display().to_string(),
            ),
            ("CAUSEWAY__PROCESSOR__STATE_CACHE_STATES", "50".into()),
        ]
    }

    /// The processor as a process, hosting every aggregate, with `instance` in its transactional id.
    pub fn start_processor(&self, instance: &str) -> ServiceProcess {
        self.start_processor_with(instance, &[])
    }

    /// [`World::start_processor`] with more environment (e.g. a smaller batch).
    pub fn start_processor_with(
        &self,
        instance: &str,
        extra: &[(&'static str, &str)],
    ) -> ServiceProcess {
        let mut env = self.env(instance);
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut p = ServiceProcess::start(&processor_binary(), Path::new(SAMPLE), &env)
            .unwrap_or_else(|e| panic!("{e}"));
        p.wait_ready(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
        p
    }

    /// Send a command (a contract type) keyed by `key` to `aggregate`'s command topic.
    pub async fn send<T: Serialize>(&self, aggregate: &str, record: &str, key: &str, value: &T) {
        let topic = self.topic(aggregate, "commands");
        let full_name = format!("causeway.{}.{aggregate}.{record}", self.domain);
        let bytes = self
            .codec
            .encode(&topic, &full_name, value)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        self.send_raw(&topic, Some(key.as_bytes()), &bytes, None)
            .await;
    }

    /// Send many commands to `aggregate`'s topic: (record name, key, value), in order per key. Enqueues
    /// them all, then waits for every acknowledgement.
    pub async fn send_many<T: Serialize>(&self, aggregate: &str, commands: &[(&str, String, T)]) {
        let topic = self.topic(aggregate, "commands");
        let mut encoded = Vec::with_capacity(commands.len());
        for (record, key, value) in commands {
            let full_name = format!("causeway.{}.{aggregate}.{record}", self.domain);
            let bytes = self
                .codec
                .encode(&topic, &full_name, value)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            encoded.push((key.as_str(), bytes));
        }
        client::send_all(&self.producer, &topic, &encoded)
            .await
            .unwrap_or_else(|e| panic!("produce to {topic}: {e}"));
    }

    /// Send bytes as they are.
    pub async fn send_raw(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
    }

    /// Every committed record of `topic`, decoded, per partition in offset order.
    pub async fn read_all(&self, topic: &str) -> Vec<Read> {
        let raw = self.read_raw(topic);
        let mut out = Vec::with_capacity(raw.len());
        for r in raw {
            let decoded = match &r.payload {
                Some(p) => Some(
                    self.codec
                        .decode_value(p, &Upcasters::default())
                        .await
                        .unwrap_or_else(|e| panic!("{topic}: {e}")),
                ),
                None => None,
            };
            out.push(Read {
                partition: r.partition,
                offset: r.offset,
                key: r.key,
                record: decoded.map(|d| (d.full_name, d.value)),
                headers: r.headers,
            });
        }
        out
    }

    /// Every committed record of `topic`, undecoded.
    pub fn read_raw(&self, topic: &str) -> Vec<Raw> {
        let mut config =
            self.kafka
                .consumer_config("test-reader", &unique("reader"), OffsetMode::Transactional);
        config.set("enable.partition.eof", "true");
        let consumer: BaseConsumer = config.create().unwrap_or_else(|e| panic!("{e}"));
        let mut list = TopicPartitionList::new();
        let partitions = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"))
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        for p in 0..partitions {
            list.add_partition_offset(topic, i32::try_from(p).unwrap_or(0), Offset::Beginning)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        // Stable first, then read: a reader assigned while a transaction is still open reports each
        // partition's end at its last stable offset, and those early ends, queued before the records
        // that follow, would end the read before them.
        self.wait_stable(topic, partitions);
        consumer.assign(&list).unwrap_or_else(|e| panic!("{e}"));
        let mut ended = std::collections::HashSet::new();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while ended.len() < partitions {
            assert!(
                Instant::now() < deadline,
                "reading {topic} did not reach its end"
            );
            match consumer.poll(Duration::from_millis(500)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    ended.insert(p);
                }
                // A broker of the cluster may be gone (a test killed it): the reader goes on.
                Some(Err(e)) => eprintln!("reading {topic}: {e}"),
                Some(Ok(m)) => out.push(Raw {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|h| {
                            use rdkafka::message::Headers;
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_string(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
            }
        }
        out
    }

    /// Wait until no transaction is open on any partition of `topic`: its last stable offset (the end
    /// a read-committed reader sees) equals its high watermark. An instance killed mid-transaction
    /// leaves one open until the transaction timeout aborts it, and while it is open the transactions
    /// other instances commit after it are not readable yet.
    fn wait_stable(&self, topic: &str, partitions: usize) {
        let committed: BaseConsumer = self
            .kafka
            .consumer_config("test-lso", &unique("lso"), OffsetMode::Transactional)
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut uncommitted_config =
            self.kafka
                .consumer_config("test-hwm", &unique("hwm"), OffsetMode::Transactional);
        uncommitted_config.set("isolation.level", "read_uncommitted");
        let uncommitted: BaseConsumer = uncommitted_config
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        let deadline = Instant::now() + Duration::from_secs(120);
        for p in 0..partitions {
            let p = i32::try_from(p).unwrap_or(0);
            loop {
                let watermarks = committed
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .and_then(|(_, lso)| {
                        uncommitted
                            .fetch_watermarks(topic, p, Duration::from_secs(10))
                            .map(|(_, high)| (lso, high))
                    });
                match watermarks {
                    Ok((lso, high)) if lso >= high => break,
                    Ok((lso, high)) => assert!(
                        Instant::now() < deadline,
                        "{topic} [{p}]: a transaction stays open (last stable offset {lso}, high watermark {high})"
                    ),
                    Err(e) => assert!(Instant::now() < deadline, "{topic} [{p}]: {e}"),
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }

    /// Wait until the processor group has committed every command record sent so far.
    pub fn wait_caught_up(&self, timeout: Duration) {
        self.wait_lag_at_most(0, timeout);
    }

    /// Wait until the processor group's lag over every command topic is at most `lag`.
    pub fn wait_lag_at_most(&self, at_most: i64, timeout: Duration) {
        let consumer = self.lag_consumer();
        let deadline = Instant::now() + timeout;
        loop {
            let lag = self.lag_seen_by(&consumer);
            if lag <= at_most {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the processor did not catch up: lag {lag}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Wait until the processor group has committed every command record sent so far, restarting the
    /// processor `instance` whenever it exits, as an orchestrator would (it stops, saying why, when its
    /// Kafka client is stuck). The running processor and the number of restarts.
    pub fn supervise_until_caught_up(
        &self,
        mut processor: ServiceProcess,
        instance: &str,
        extra: &[(&'static str, &str)],
        timeout: Duration,
    ) -> (ServiceProcess, usize) {
        let deadline = Instant::now() + timeout;
        let mut restarts = 0;
        loop {
            let lag = self.lag();
            if lag == 0 {
                return (processor, restarts);
            }
            assert!(
                Instant::now() < deadline,
                "the processor did not catch up: lag {lag}"
            );
            if let Some(status) = processor.try_exit().unwrap_or_else(|e| panic!("{e}")) {
                let log = processor.log();
                let tail = &log[log.len().saturating_sub(2000)..];
                assert!(
                    !status.success() && tail.contains("\"level\":\"ERROR\""),
                    "the processor exited ({status}) without saying why:\n{tail}"
                );
                eprintln!(
                    "the processor stopped ({status}); restarting it. Its last words:\n{tail}"
                );
                restarts += 1;
                processor = self.start_processor_with(instance, extra);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Wait until the results topic holds at least `n` results. For runs whose command topics get
    /// transaction markers of the processor's own (forwarded commands): the offset committed after a
    /// partition's last record stays one short of its end there, so the lag never reads 0.
    pub fn wait_results(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let have = self.read_raw(&self.results_topic).len();
            if have >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {have} of {n} results arrived"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Command records not yet committed by the processor group, over every command topic.
    pub fn lag(&self) -> i64 {
        self.lag_seen_by(&self.lag_consumer())
    }

    /// A consumer that reads the processor group's committed offsets (it never joins the group).
    fn lag_consumer(&self) -> BaseConsumer {
        self.kafka
            .consumer_config("test-lag", &self.group, OffsetMode::Transactional)
            .create()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The lag, asking again while the broker does not answer (a test that stops it).
    fn lag_seen_by(&self, consumer: &BaseConsumer) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self.try_lag(consumer) {
                Ok(lag) => return lag,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("reading the lag: {e}; asking again");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("reading the lag: {e}"),
            }
        }
    }

    fn try_lag(&self, consumer: &BaseConsumer) -> Result<i64, KafkaError> {
        let mut list = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for aggregate in &self.aggregates {
            let topic = self.topic(aggregate, "commands");
            for p in 0..self.partitions {
                let (_, high) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10))?;
                ends.insert((topic.clone(), p), high);
                list.add_partition(&topic, p);
            }
        }
        let committed = consumer.committed_offsets(list, Duration::from_secs(10))?;
        let mut lag = 0;
        for e in committed.elements() {
            let at = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            let end = ends
                .get(&(e.topic().to_string(), e.partition()))
                .copied()
                .unwrap_or(0);
            // A producer's own transaction markers follow each batch, so "caught up" allows them.
            lag += (end - at).max(0);
        }
        Ok(lag)
    }
}

/// A binary of the workspace beside this test's own (target/<profile>/), built by `make build`.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("no target directory above {}", exe.display()));
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (make build)",
        bin.display()
    );
    bin
}

pub fn call(
    api: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Json>,
) -> (u16, Json) {
    let body = body.map(Json::to_string);
    let r = http_request_with(api, method, path, headers, body.as_deref())
        .unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    (r.status, json)
}

/// A gateway process for `world` on a port of its own, ready (its results follower caught up).
pub fn start_gateway(world: &World) -> (ServiceProcess, SocketAddr) {
    let s = &world.stack;
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let api_text = api.to_string();
    let sample =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../command-gateway/command-gateway.toml");
    let mut gateway = ServiceProcess::start(
        &workspace_binary("command-gateway"),
        &sample,
        &[
            (
                "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
                s.kafka_bootstrap.as_str(),
            ),
            ("CAUSEWAY__HTTP__LISTEN", api_text.as_str()),
            ("CAUSEWAY__GATEWAY__REGISTRY_URL", s.registry_url.as_str()),
            ("CAUSEWAY__GATEWAY__CONTEXT", world.context.as_str()),
            (
                "CAUSEWAY__GATEWAY__RESULTS_TOPIC",
                world.results_topic.as_str(),
            ),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    gateway
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    (gateway, api)
}

/// A record as read back.
pub struct Raw {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

/// A record as read back, decoded: its full name and value.
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub record: Option<(String, Value)>,
    pub headers: Vec<(String, String)>,
}

/// Inventory commands for a load: `per_sku` commands on each of `skus` SKUs (adds, and reservations
/// that are rejected when the stock is short), command ids unique in the world.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum StockCommand {
    Add(causeway_orders::contracts::inventory::AddStock),
    Reserve(causeway_orders::contracts::inventory::ReserveStock),
    Release(causeway_orders::contracts::inventory::ReleaseReservation),
    Commit(causeway_orders::contracts::inventory::CommitReservation),
}

pub fn stock_load(skus: usize, per_sku: usize) -> Vec<(&'static str, String, StockCommand)> {
    use causeway_orders::contracts::inventory::{AddStock, ReserveStock};
    let mut out = Vec::with_capacity(skus * per_sku);
    // Round-robin over the SKUs, so every partition has work throughout the run.
    for i in 0..per_sku {
        for s in 0..skus {
            let sku = format!("sku-{s}");
            let command_id = format!("cmd-{s}-{i}");
            let command = if i % 3 == 2 {
                (
                    "ReserveStock",
                    StockCommand::Reserve(ReserveStock {
                        command_id,
                        sku: sku.clone(),
                        order_id: format!("order-{s}-{i}"),
                        quantity: i32::try_from(1 + (i + s) % 4).unwrap_or(1),
                        ..ReserveStock::default()
                    }),
                )
            } else {
                (
                    "AddStock",
                    StockCommand::Add(AddStock {
                        command_id,
                        sku: sku.clone(),
                        quantity: i32::try_from(1 + (i * 7 + s) % 2).unwrap_or(1),
                        ..AddStock::default()
                    }),
                )
            };
            out.push((command.0, sku, command.1));
        }
    }
    out
}

/// The exactly-once invariants over everything `load` led to: each command has exactly one result;
/// each aggregate's events have versions 1..n with no gap and no duplicate; the state rebuilt from the
/// events equals the changelog's latest state, version included; accepted results match the events.
pub async fn verify_inventory(world: &World, load: &[(&'static str, String, StockCommand)]) {
    use causeway_contracts::aggregate::AggregateContract;
    use causeway_contracts::records::{CommandOutcome, CommandResult, StateRecord};
    use causeway_core::Aggregate;
    use causeway_orders::inventory::{Inventory, InventoryEvent};

    let results = world.read_all(&world.results_topic).await;
    let mut per_command: HashMap<String, usize> = HashMap::new();
    // Where each result is and what it says, to tell a second decision from a resend answered twice.
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let mut accepted = 0usize;
    // (aggregate id, version, command id) of every accepted result, to match with the events one by one.
    let mut accepted_set = std::collections::BTreeSet::new();
    for r in &results {
        let (_, value) = r.record.as_ref().unwrap_or_else(|| panic!("a null result"));
        let result: CommandResult =
            apache_avro::from_value(value).unwrap_or_else(|e| panic!("{e}"));
        if result.outcome == CommandOutcome::Accepted {
            accepted += 1;
            accepted_set.insert((
                result.aggregate_id.clone(),
                result.new_version.unwrap_or(-1),
                result.command_id.clone(),
            ));
        }
        seen.entry(result.command_id.clone())
            .or_default()
            .push(format!(
                "[{}]@{} {:?} v{:?}",
                r.partition, r.offset, result.outcome, result.new_version
            ));
        *per_command.entry(result.command_id).or_default() += 1;
    }
    let duplicated: Vec<_> = per_command
        .iter()
        .filter(|(_, n)| **n != 1)
        .take(5)
        .map(|(id, _)| (id, seen.get(id)))
        .collect();
    assert!(
        duplicated.is_empty(),
        "commands with more than one result: {duplicated:?}"
    );
    assert_eq!(
        per_command.len(),
        load.len(),
        "every command has a result ({} of {})",
        per_command.len(),
        load.len()
    );

    let events = world.read_all(&world.topic("inventory", "events")).await;
    assert_eq!(events.len(), accepted, "one event per accepted command");
    let mut event_set = std::collections::BTreeSet::new();
    let mut by_sku: HashMap<String, Vec<InventoryEvent>> = HashMap::new();
    let mut versions: HashMap<String, Vec<i64>> = HashMap::new();
    for e in &events {
        let (name, value) = e.record.as_ref().unwrap_or_else(|| panic!("a null event"));
        let event = Inventory::event(name, value).unwrap_or_else(|e| panic!("{e}"));
        let metadata = match &event {
            InventoryEvent::Added(x) => &x.metadata,
            InventoryEvent::Reserved(x) => &x.metadata,
            InventoryEvent::Released(x) => &x.metadata,
            InventoryEvent::Committed(x) => &x.metadata,
        };
        let key = e.key.clone().unwrap_or_default();
        assert_eq!(metadata.aggregate_id, key);
        versions
            .entry(key.clone())
            .or_default()
            .push(metadata.aggregate_version);
        event_set.insert((
            metadata.aggregate_id.clone(),
            metadata.aggregate_version,
            metadata.causation_id.clone(),
        ));
        by_sku.entry(key).or_default().push(event);
    }
    let unmatched: Vec<_> = accepted_set
        .symmetric_difference(&event_set)
        .take(5)
        .collect();
    assert!(
        unmatched.is_empty(),
        "accepted results and events differ (aggregate, version, command): {unmatched:?}"
    );
    for (sku, v) in &versions {
        let expected: Vec<i64> = (1..=i64::try_from(v.len()).unwrap_or(0)).collect();
        assert_eq!(v, &expected, "{sku}: event versions in log order");
    }

    let changelog = world.read_all(&world.topic("inventory", "changelog")).await;
    let mut latest: HashMap<String, StateRecord<Inventory>> = HashMap::new();
    for r in changelog {
        let key = r.key.clone().unwrap_or_default();
        let (_, value) = r.record.unwrap_or_else(|| panic!("a tombstone for {key}"));
        latest.insert(
            key,
            apache_avro::from_value(&value).unwrap_or_else(|e| panic!("{e}")),
        );
    }
    for (sku, events) in &by_sku {
        let state = latest
            .get(sku)
            .unwrap_or_else(|| panic!("{sku} has events but no changelog record"));
        assert_eq!(
            state.version,
            i64::try_from(events.len()).unwrap_or(0),
            "{sku}: version"
        );
        assert_eq!(
            state.state,
            Inventory::replay(events),
            "{sku}: state rebuilt from events"
        );
    }
}

//! What the projectors' tests share (projector-redis's and projector-clickhouse's, which includes this
//! file): a context of their own with the orders domain's event topics, events produced as the
//! processor writes them (Avro through the registry, keyed by aggregate id) with the documents the
//! reference [`Document`] semantics give for them, the group's dead letters, `causeway projections
//! status`, and a projector started as a process.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use causeway_contracts::catalog::Catalog;
use causeway_contracts::records::EventMetadata;
use causeway_contracts::registry::RegistryClient;
use causeway_contracts::wire::Codec;
use causeway_core::projection::{Document, EventInfo, Projection};
use causeway_kafka::config::OffsetMode;
use causeway_kafka::topology::{self, Topology};
use causeway_kafka::{KafkaConfig, client};
use causeway_orders::contracts::inventory::*;
use causeway_orders::inventory::InventoryEvent;
use causeway_orders::projections::StockBySku;
use causeway_testcontainers::process::ServiceProcess;
use causeway_testcontainers::{Stack, stack, unique};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

impl World {
    /// Start the projector `bin` with its sample `config`, pointed at this world (Kafka, registry,
    /// context, group, prefix, a stable instance id so that restarts get the partitions back at once),
    /// with `extra` environment; waits until it is ready.
    pub fn start_service(
        &self,
        bin: &Path,
        config: &Path,
        extra: &[(&str, &str)],
    ) -> ServiceProcess {
        let s = &self.stack;
        let mut env = vec![
            (
                "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
                s.kafka_bootstrap.as_str(),
            ),
            ("CAUSEWAY__PROJECTOR__REGISTRY_URL", s.registry_url.as_str()),
            ("CAUSEWAY__PROJECTOR__CONTEXT", self.context.as_str()),
            ("CAUSEWAY__PROJECTOR__GROUP_ID", self.group.as_str()),
            ("CAUSEWAY__PROJECTOR__PREFIX", self.prefix.as_str()),
            ("CAUSEWAY__CONSUMER__INSTANCE_ID", "instance-a"),
        ];
        env.extend_from_slice(extra);
        let mut service =
            ServiceProcess::start(bin, config, &env).unwrap_or_else(|e| panic!("{e}"));
        service
            .wait_ready(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
        service
    }
}

/// A context of its own: the orders domain's event topics under it, the contracts registered there.
pub struct World {
    pub stack: Stack,
    pub context: String,
    pub group: String,
    pub prefix: String,
    pub kafka: KafkaConfig,
    pub codec: Codec,
    producer: rdkafka::producer::FutureProducer,
}

impl World {
    pub async fn new(partitions: i32) -> Self {
        Self::on(stack(), partitions).await
    }

    pub async fn on(s: &Stack, partitions: i32) -> Self {
        let context = unique("pr");
        let group = format!("{context}-projector");
        let mut toml = format!("[defaults]\npartitions = {partitions}\nreplication_factor = 1\n");
        for aggregate in ["order", "inventory", "payment"] {
            toml += &format!("[[topic]]\nname = \"{context}.{aggregate}.events\"\n");
        }
        toml += &format!("[[topic]]\nname = \"{group}.dlq\"\n");
        let topology = Topology::parse(&toml, "test").unwrap_or_else(|e| panic!("{e}"));
        let kafka = KafkaConfig::for_servers(s.kafka_bootstrap.clone());
        topology::apply(&kafka, &topology, false, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut catalog = Catalog::load(&repo("avro")).unwrap_or_else(|e| panic!("{e}"));
        for record in &mut catalog.records {
            if let Some(topic) = &mut record.topic {
                *topic = topic.replacen("orders.", &format!("{context}."), 1);
            }
        }
        RegistryClient::new(&s.registry_url)
            .register_catalog(&catalog, |_| {})
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let producer = client::producer(&kafka, "test").unwrap_or_else(|e| panic!("{e}"));
        Self {
            stack: s.clone(),
            prefix: context.replace('.', "-"),
            context,
            group,
            kafka,
            codec: Codec::new(&s.registry_url),
            producer,
        }
    }

    pub fn topic(&self, aggregate: &str) -> String {
        format!("{}.{aggregate}.events", self.context)
    }

    /// Send already encoded records (key, bytes) to `topic`, waiting for every acknowledgement.
    pub async fn send(&self, topic: &str, records: &[(String, Vec<u8>)]) {
        send_with(&self.producer, topic, records).await;
    }

    /// The producer, for a task of its own.
    pub fn producer_handle(&self) -> rdkafka::producer::FutureProducer {
        self.producer.clone()
    }

    /// Every record of the group's DLQ: (key, headers).
    pub fn dead_letters(&self, at_least: usize) -> Vec<(Option<String>, HashMap<String, String>)> {
        self.dead_letters_of(&self.group, at_least)
    }

    /// Every record of `group`'s DLQ: (key, headers).
    pub fn dead_letters_of(
        &self,
        group: &str,
        at_least: usize,
    ) -> Vec<(Option<String>, HashMap<String, String>)> {
        let topic = format!("{group}.dlq");
        let consumer: BaseConsumer = self
            .kafka
            .consumer_config("test-dlq", &unique("dlq-reader"), OffsetMode::Transactional)
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        consumer
            .subscribe(&[topic.as_str()])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        // Past the wanted count, a little longer: a second dead letter would show up too.
        let mut quiet_until: Option<Instant> = None;
        while Instant::now() < deadline && quiet_until.is_none_or(|q| Instant::now() < q) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let headers = m
                    .headers()
                    .map(|h| {
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
                    .unwrap_or_default();
                out.push((
                    m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    headers,
                ));
            }
            if out.len() >= at_least && quiet_until.is_none() {
                quiet_until = Some(Instant::now() + Duration::from_secs(3));
            }
        }
        out
    }
}

pub fn metadata(id: &str, version: i64) -> EventMetadata {
    EventMetadata {
        event_id: format!("{id}-{version}"),
        aggregate_id: id.to_string(),
        aggregate_version: version,
        causation_id: format!("cmd-{id}-{version}"),
        correlation_id: format!("cmd-{id}-{version}"),
        occurred_at: 1_700_000_000_000 + version * 1000,
        schema_version: 1,
    }
}

/// `per_sku` inventory events for each of `skus` SKUs: the encoded records in log order, and the
/// reference document of each SKU.
pub async fn inventory_events(
    world: &World,
    skus: usize,
    per_sku: i64,
) -> (Vec<(String, Vec<u8>)>, BTreeMap<String, Document>) {
    let topic = world.topic("inventory");
    let projection = StockBySku;
    let mut records = Vec::new();
    let mut expected = BTreeMap::new();
    for v in 1..=per_sku {
        for s in 0..skus {
            let sku = format!("sku-{s}");
            let meta = metadata(&sku, v);
            let (name, event, bytes) = match v % 4 {
                1 => {
                    let e = StockAdded {
                        metadata: meta.clone(),
                        sku: sku.clone(),
                        quantity: 5,
                        available: i32::try_from(v).unwrap_or(0) + 4,
                    };
                    let b = encode(world, &topic, "StockAdded", &e).await;
                    ("StockAdded", InventoryEvent::Added(e), b)
                }
                2 | 3 => {
                    let e = StockReserved {
                        metadata: meta.clone(),
                        sku: sku.clone(),
                        order_id: format!("o-{v}"),
                        quantity: 2,
                        available: i32::try_from(v).unwrap_or(0),
                    };
                    let b = encode(world, &topic, "StockReserved", &e).await;
                    ("StockReserved", InventoryEvent::Reserved(e), b)
                }
                _ => {
                    let e = ReservationCommitted {
                        metadata: meta.clone(),
                        sku: sku.clone(),
                        order_id: format!("o-{v}"),
                        quantity: 3,
                    };
                    let b = encode(world, &topic, "ReservationCommitted", &e).await;
                    ("ReservationCommitted", InventoryEvent::Committed(e), b)
                }
            };
            let _ = name;
            let info = EventInfo {
                aggregate_id: &sku,
                version: v,
                occurred_at_ms: meta.occurred_at,
            };
            let change = projection
                .project(&event, &info)
                .unwrap_or_else(|e| panic!("{e}"));
            expected
                .entry(sku.clone())
                .or_insert_with(Document::default)
                .apply(&info, &change);
            records.push((sku, bytes));
        }
    }
    (records, expected)
}

pub async fn encode<T: serde::Serialize>(
    world: &World,
    topic: &str,
    record: &str,
    value: &T,
) -> Vec<u8> {
    let namespace = if topic.ends_with(".inventory.events") {
        "inventory"
    } else {
        "order"
    };
    world
        .codec
        .encode(
            topic,
            &format!("causeway.orders.{namespace}.{record}"),
            value,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

impl World {
    /// `causeway projections status` for this world's projector group: per projection, (lag in
    /// records, seconds behind), as the CLI prints them. The CLI is a binary of the workspace, built
    /// beside this test's own (`make build`).
    pub fn status(&self) -> HashMap<String, (i64, f64)> {
        let cli = cli();
        let (status, stdout, stderr) = causeway_testcontainers::process::run_to_exit(
            std::process::Command::new(&cli)
                .args(["projections", "status", "--context", &self.context])
                .args(["--group", &self.group])
                .args(["--bootstrap-servers", &self.stack.kafka_bootstrap]),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{} (build it: make build): {e}", cli.display()));
        assert!(status.success(), "{status}: {stderr}");
        stdout
            .lines()
            .skip(2)
            .filter_map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                match cols.as_slice() {
                    [name, _, records, behind] => Some((
                        (*name).to_string(),
                        (records.parse().ok()?, behind.parse().ok()?),
                    )),
                    _ => None,
                }
            })
            .collect()
    }
}

/// The `causeway` CLI, a binary of the workspace built beside this test's own (`make build`).
pub fn cli() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("causeway"))
        .unwrap_or_else(|| panic!("no target directory above {}", exe.display()))
}

/// Send already encoded records (key, bytes) to `topic` with `producer`, waiting for every
/// acknowledgement.
pub async fn send_with(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    records: &[(String, Vec<u8>)],
) {
    client::send_all(producer, topic, records)
        .await
        .unwrap_or_else(|e| panic!("produce to {topic}: {e}"));
}

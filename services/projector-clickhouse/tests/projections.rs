//! projector-clickhouse as a process against the test stack's Kafka, registry and ClickHouse: every
//! event is one row of the events table (read with FINAL) however often it was delivered, each document
//! equals the reference semantics applied to its events, the daily sales rollup sums the orders that
//! were not cancelled, and a poison event is dead-lettered; SIGKILLs mid-stream change none of that.

#[path = "../../projector-redis/tests/common/events.rs"]
mod events;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use causeway_core::projection::{Document, EventInfo, Projection};
use causeway_orders::contracts::order::{OrderCancelled, OrderPlaced};
use causeway_orders::order::OrderEvent;
use causeway_orders::projections::OrderById;
use causeway_testcontainers::process::ServiceProcess;
use events::{World, encode, inventory_events, metadata};
use projector_clickhouse::config::ClickHouseConfig;
use projector_clickhouse::{sink, tables};
use serde_json::Value;

impl World {
    fn start_clickhouse(&self, extra: &[(&str, &str)]) -> ServiceProcess {
        let mut env = vec![(
            "CAUSEWAY__CLICKHOUSE__URL",
            self.stack.clickhouse_url.as_str(),
        )];
        env.extend_from_slice(extra);
        self.start_service(
            Path::new(env!("CARGO_BIN_EXE_projector-clickhouse")),
            Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/projector-clickhouse.toml"
            )),
            &env,
        )
    }

    fn table(&self, name: &str) -> String {
        format!("{}_{name}", self.prefix.replace('-', "_"))
    }

    async fn rows(&self, sql: &str) -> Vec<serde_json::Map<String, Value>> {
        let client = sink::client(&ClickHouseConfig {
            url: self.stack.clickhouse_url.clone(),
            ..ClickHouseConfig::default()
        });
        tables::fetch_json_rows(&client, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Wait until the events table holds `events` distinct events and every document of `projection`
    /// equals `expected` (version, event time, fields; a field not set is '' in ClickHouse).
    async fn wait_clickhouse(
        &self,
        events: usize,
        projection: &str,
        expected: &BTreeMap<String, Document>,
    ) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let table = self.table(&format!("{}_g1", projection.replace('-', "_")));
        loop {
            let counted = self
                .rows(&format!(
                    "SELECT count() AS n FROM {} FINAL",
                    self.table("events")
                ))
                .await;
            let n = counted
                .first()
                .and_then(|r| r.get("n"))
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                .unwrap_or(0);
            let rows = self.rows(&format!("SELECT * FROM {table} FINAL")).await;
            let stored: BTreeMap<String, &serde_json::Map<String, Value>> = rows
                .iter()
                .filter_map(|r| Some((r.get("id")?.as_str()?.to_string(), r)))
                .collect();
            let mut differ = Vec::new();
            for (id, doc) in expected {
                let Some(row) = stored.get(id) else {
                    differ.push(format!("{id}: missing"));
                    continue;
                };
                let number = |k: &str| {
                    row.get(k)
                        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
                        .unwrap_or(-1)
                };
                let fields_match = doc
                    .fields
                    .iter()
                    .all(|(k, v)| row.get(*k).and_then(Value::as_str) == Some(v.as_str()));
                if number("version") != doc.version
                    || number("event_time_ms") != doc.event_time_ms
                    || !fields_match
                {
                    differ.push(format!("{id}: {row:?} vs {doc:?}"));
                }
            }
            if usize::try_from(n).unwrap_or(0) == events && differ.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "events {n} of {events}; {} of {} documents differ, e.g. {:?}",
                differ.len(),
                expected.len(),
                differ.first()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_twice_and_a_poison_event_give_one_row_each_exact_documents_and_a_rollup() {
    let world = World::new(3).await;
    let (records, expected) = inventory_events(&world, 40, 12).await;
    let topic = world.topic("inventory");
    world.send(&topic, &records[..records.len() / 2]).await;
    world
        .send(&topic, &[("poison-key".to_string(), b"not avro".to_vec())])
        .await;
    world.send(&topic, &records).await;

    // Six orders; two of them cancelled.
    let order_topic = world.topic("order");
    let mut order_records = Vec::new();
    let mut orders = BTreeMap::new();
    let mut sold = 0i64;
    for n in 0..6i64 {
        let id = format!("o-{n}");
        let placed = OrderPlaced {
            metadata: metadata(&id, 1),
            order_id: id.clone(),
            customer_id: "c".into(),
            lines: Vec::new(),
            currency: "EUR".into(),
            payment_account_id: "acc".into(),
            total_cents: 100 + n,
        };
        let mut events = vec![OrderEvent::Placed(placed.clone())];
        order_records.push((
            id.clone(),
            encode(&world, &order_topic, "OrderPlaced", &placed).await,
        ));
        if n % 3 == 0 {
            let cancelled = OrderCancelled {
                metadata: metadata(&id, 2),
                order_id: id.clone(),
                reason: "changed mind".into(),
            };
            events.push(OrderEvent::Cancelled(cancelled.clone()));
            order_records.push((
                id.clone(),
                encode(&world, &order_topic, "OrderCancelled", &cancelled).await,
            ));
        } else {
            sold += 100 + n;
        }
        let doc = orders.entry(id.clone()).or_insert_with(Document::default);
        for (v, e) in events.iter().enumerate() {
            let version = i64::try_from(v).unwrap_or(0) + 1;
            let info = EventInfo {
                aggregate_id: &id,
                version,
                occurred_at_ms: metadata(&id, version).occurred_at,
            };
            let change = OrderById
                .project(e, &info)
                .unwrap_or_else(|e| panic!("{e}"));
            doc.apply(&info, &change);
        }
    }
    world.send(&order_topic, &order_records).await;
    let distinct_events = records.len() + order_records.len();

    let service = world.start_clickhouse(&[]);
    world
        .wait_clickhouse(distinct_events, "stock-by-sku", &expected)
        .await;
    world
        .wait_clickhouse(distinct_events, "order-by-id", &orders)
        .await;
    let rollup = world
        .rows(&format!(
            "SELECT toString(day) AS day, currency, orders, total_cents FROM {}",
            world.table("daily_sales")
        ))
        .await;
    assert_eq!(rollup.len(), 1, "{rollup:?}");
    let number = |k: &str| {
        rollup[0]
            .get(k)
            .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
    };
    assert_eq!(
        rollup[0].get("day").and_then(Value::as_str),
        Some("2023-11-14")
    );
    assert_eq!(number("orders"), Some(4));
    assert_eq!(number("total_cents"), Some(sold));
    // The payload of an event, as JSON.
    let payload = world
        .rows(&format!(
            "SELECT payload FROM {} FINAL WHERE aggregate_id = 'o-1'",
            world.table("events")
        ))
        .await;
    let payload: Value = serde_json::from_str(
        payload
            .first()
            .and_then(|r| r.get("payload"))
            .and_then(Value::as_str)
            .unwrap_or("null"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(payload["total_cents"], 101, "{payload}");

    let dead = world.dead_letters(1);
    assert_eq!(dead.len(), 1, "one dead letter: {dead:?}");
    assert_eq!(dead[0].0.as_deref(), Some("poison-key"));
    let exit = service
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(exit.success(), "{exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_stream_again_and_again_it_writes_every_event_once() {
    let world = World::new(3).await;
    let (records, expected) = inventory_events(&world, 300, 40).await;
    let topic = world.topic("inventory");
    world.send(&topic, &records).await;
    let small = [("CAUSEWAY__CONSUMER__MAX_BATCH_RECORDS", "200")];
    let mut service = world.start_clickhouse(&small);
    for kill in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let status = service.kill().unwrap_or_else(|e| panic!("{e}"));
        assert!(!status.success(), "killed, not exited: {status:?}");
        let written = world
            .rows(&format!(
                "SELECT count() AS n FROM {} FINAL",
                world.table("events")
            ))
            .await;
        let n = written
            .first()
            .and_then(|r| r.get("n"))
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .unwrap_or(0);
        eprintln!("kill {kill}: {n} of {} events written", records.len());
        if kill == 0 {
            assert!(
                usize::try_from(n).unwrap_or(0) < records.len(),
                "the first kill came after the last event: the test proves nothing"
            );
        }
        service = world.start_clickhouse(&small);
    }
    world
        .wait_clickhouse(records.len(), "stock-by-sku", &expected)
        .await;
    assert!(
        world.dead_letters(0).is_empty(),
        "no dead letter after kills"
    );
    let exit = service
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(exit.success(), "{exit}");
}

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
use causeway_kafka::dead_letter::dlq_headers;
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

    /// The live generation of `projection`, as the generations table says.
    async fn live(&self, projection: &str) -> i64 {
        let rows = self
            .rows(&format!(
                "SELECT live FROM {} FINAL WHERE projection = '{projection}'",
                self.table("generations")
            ))
            .await;
        number(rows.first(), "live")
    }

    /// The documents table of `projection`'s live generation.
    async fn documents(&self, projection: &str) -> String {
        let live = self.live(projection).await;
        self.table(&format!("{}_g{live}", projection.replace('-', "_")))
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
        loop {
            let table = self.documents(projection).await;
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
                let number = |k: &str| number(Some(*row), k);
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
            if stored.len() != expected.len() {
                differ.push(format!(
                    "{} documents stored, {} expected",
                    stored.len(),
                    expected.len()
                ));
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
    let (order_records, orders, sold) = order_events(&world, 0..6, |n| n % 3 == 0).await;
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
    let number = |k: &str| tables::json_i64(&rollup[0], k);
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
    // Its headers: where it came from, why, by whom, when.
    let headers = &dead[0].1;
    let header = |name: &str| headers.get(name).map(String::as_str);
    assert_eq!(
        header(dlq_headers::TOPIC),
        Some(topic.as_str()),
        "{headers:?}"
    );
    assert_eq!(header(dlq_headers::CLASS), Some("poison"));
    assert_eq!(header(dlq_headers::GROUP), Some(world.group.as_str()));
    assert_eq!(header(dlq_headers::ATTEMPTS), Some("1"));
    assert!(
        header(dlq_headers::REASON).is_some_and(|r| r.contains("undecodable")),
        "{headers:?}"
    );
    let number = |name: &str| {
        header(name)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("{name} in {headers:?}"))
    };
    assert!(
        (0..3).contains(&number(dlq_headers::PARTITION)),
        "{headers:?}"
    );
    assert!(number(dlq_headers::OFFSET) >= 0, "{headers:?}");
    assert!(number(dlq_headers::TIMESTAMP) > 0, "{headers:?}");
    assert!(
        number(dlq_headers::FIRST_FAILURE) <= number(dlq_headers::AT),
        "{headers:?}"
    );
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

/// Column `k` of `row` as a number (ClickHouse writes 64-bit numbers as strings), -1 if absent.
fn number(row: Option<&serde_json::Map<String, Value>>, k: &str) -> i64 {
    row.and_then(|r| tables::json_i64(r, k)).unwrap_or(-1)
}

/// Orders `range` placed (total 100 + n cents), those `cancel` picks cancelled after: their records,
/// the documents of order-by-id they give, and the cents sold (not cancelled).
async fn order_events(
    world: &World,
    range: std::ops::Range<i64>,
    cancel: impl Fn(i64) -> bool,
) -> (Vec<(String, Vec<u8>)>, BTreeMap<String, Document>, i64) {
    let order_topic = world.topic("order");
    let mut records = Vec::new();
    let mut orders = BTreeMap::new();
    let mut sold = 0i64;
    for n in range {
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
        records.push((
            id.clone(),
            encode(world, &order_topic, "OrderPlaced", &placed).await,
        ));
        if cancel(n) {
            let cancelled = OrderCancelled {
                metadata: metadata(&id, 2),
                order_id: id.clone(),
                reason: "changed mind".into(),
            };
            events.push(OrderEvent::Cancelled(cancelled.clone()));
            records.push((
                id.clone(),
                encode(world, &order_topic, "OrderCancelled", &cancelled).await,
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
    (records, orders, sold)
}

/// `causeway projections rebuild <projection> --store clickhouse` on the world's stack, run to its
/// end on a thread of its own: (succeeded, stdout, stderr).
fn rebuild(world: &World, projection: &str) -> tokio::task::JoinHandle<(bool, String, String)> {
    let s = world.stack.clone();
    let context = world.context.clone();
    let prefix = world.prefix.clone();
    let projection = projection.to_string();
    tokio::task::spawn_blocking(move || {
        let (status, stdout, stderr) = causeway_testcontainers::process::run_to_exit(
            std::process::Command::new(events::cli())
                .args(["projections", "rebuild", &projection, "--store"])
                .args(["clickhouse", "--context", &context, "--prefix", &prefix])
                .args(["--clickhouse", &s.clickhouse_url])
                .args(["--registry", &s.registry_url])
                .args(["--bootstrap-servers", &s.kafka_bootstrap]),
            Duration::from_secs(180),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        (status.success(), stdout, stderr)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_traffic_ends_equal_and_the_views_switch_with_it() {
    let world = World::new(3).await;
    // 200 orders (every third cancelled) and versions 1..=30 of 20 SKUs (reservation counters) before
    // the projector starts; 1,300 more orders and versions 31..=60 as traffic, fast enough that the
    // projector writes batches while the rebuilds switch, for about 8 s (longer than the rebuilds).
    let order_topic = world.topic("order");
    let stock_topic = world.topic("inventory");
    let (before, mut orders, mut sold) = order_events(&world, 0..200, |n| n % 3 == 0).await;
    let (traffic, later, later_sold) = order_events(&world, 200..1500, |_| false).await;
    orders.extend(later);
    sold += later_sold;
    let (stock, stock_expected) = inventory_events(&world, 20, 60).await;
    let (stock_before, stock_traffic) = stock.split_at(stock.len() / 2);
    world.send(&order_topic, &before).await;
    world.send(&stock_topic, stock_before).await;
    let service = world.start_clickhouse(&[("CAUSEWAY__CONSUMER__MAX_BATCH_RECORDS", "100")]);
    let view = world.table("daily_sales");
    // Readers of the rollup: orders are only placed from here on, so the count never goes down; a
    // half-built generation would show fewer. Between the two renames of a view's swap, a reader may
    // find no view (ClickHouse without Atomic databases): counted, never a wrong answer.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = std::sync::Arc::clone(&stop);
        let client = sink::client(&ClickHouseConfig {
            url: world.stack.clickhouse_url.clone(),
            ..ClickHouseConfig::default()
        });
        let sql = format!("SELECT sum(orders) AS n FROM {view}");
        let view_name = view.clone();
        tokio::spawn(async move {
            let mut last = -1i64;
            let (mut reads, mut missing) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match tables::fetch_json_rows(&client, &sql).await {
                    Ok(rows) => {
                        let n = number(rows.first(), "n");
                        assert!(
                            n >= last,
                            "{n} orders after {last}: a half-built generation"
                        );
                        last = n;
                        reads += 1;
                    }
                    // The view itself, between the two renames of a swap; never a table under it.
                    Err(e)
                        if e.to_string().contains("Code: 60")
                            && e.to_string().contains(&view_name)
                            && !e.to_string().contains("order_by_id_g") =>
                    {
                        missing += 1
                    }
                    Err(e) => panic!("{sql}: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (reads, missing)
        })
    };
    // Traffic while the rebuilds run.
    let traffic_task = {
        let chunks: Vec<Vec<(String, Vec<u8>)>> = traffic.chunks(40).map(<[_]>::to_vec).collect();
        let stock_chunks: Vec<Vec<(String, Vec<u8>)>> = stock_traffic
            .chunks(stock_traffic.len().div_ceil(chunks.len()))
            .map(<[_]>::to_vec)
            .collect();
        let (orders_topic, stock_topic) = (order_topic.clone(), stock_topic.clone());
        let producer = world.producer_handle();
        tokio::spawn(async move {
            for (n, chunk) in chunks.iter().enumerate() {
                events::send_with(&producer, &orders_topic, chunk).await;
                if let Some(more) = stock_chunks.get(n) {
                    events::send_with(&producer, &stock_topic, more).await;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Two projections at once, and a second rebuild of one of them, which must be refused.
    let orders_rebuild = rebuild(&world, "order-by-id");
    let stock_rebuilds = [
        rebuild(&world, "stock-by-sku"),
        rebuild(&world, "stock-by-sku"),
    ];
    let (ok, stdout, stderr) = orders_rebuild.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(ok, "{stderr}\n{stdout}");
    assert!(
        stdout.contains("reads switched from generation 1 to 2"),
        "{stdout}"
    );
    let mut outcomes = Vec::new();
    for r in stock_rebuilds {
        outcomes.push(r.await.unwrap_or_else(|e| panic!("{e}")));
    }
    let won: Vec<_> = outcomes.iter().filter(|(ok, _, _)| *ok).collect();
    let lost: Vec<_> = outcomes.iter().filter(|(ok, _, _)| !*ok).collect();
    assert_eq!(
        won.len(),
        1,
        "one rebuild of stock-by-sku wins: {outcomes:?}"
    );
    assert!(
        lost.iter()
            .all(|(_, _, err)| err.contains("another rebuild of stock-by-sku")),
        "the other is refused: {outcomes:?}"
    );
    assert!(
        !traffic_task.is_finished(),
        "the traffic ended before the rebuilds: the test proves nothing"
    );
    traffic_task.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(world.live("order-by-id").await, 2);
    assert_eq!(world.live("stock-by-sku").await, 2);
    let events = before.len() + traffic.len() + stock.len();
    world.wait_clickhouse(events, "order-by-id", &orders).await;
    world
        .wait_clickhouse(events, "stock-by-sku", &stock_expected)
        .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (reads, missing) = reader.await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("rollup reads: {reads} answered, {missing} found no view");
    assert!(reads > 0);
    // The rollup reads the new generation, and the old ones are gone.
    let rollup = world
        .rows(&format!(
            "SELECT sum(orders) AS n, sum(total_cents) AS c FROM {view}"
        ))
        .await;
    assert_eq!(number(rollup.first(), "n"), 1500 - 67, "{rollup:?}");
    assert_eq!(number(rollup.first(), "c"), sold, "{rollup:?}");
    // So does the view of the documents, under the name that outlives generations.
    let documents = world
        .rows(&format!(
            "SELECT count() AS n, sum(version) AS v FROM {}",
            world.table("order_by_id")
        ))
        .await;
    assert_eq!(number(documents.first(), "n"), 1500, "{documents:?}");
    assert_eq!(number(documents.first(), "v"), 1500 + 67, "{documents:?}");
    let tables = world
        .rows(&format!(
            "SELECT name, create_table_query FROM system.tables \
             WHERE database = currentDatabase() AND name LIKE '{}%'",
            world.table("")
        ))
        .await;
    let names: Vec<&str> = tables
        .iter()
        .filter_map(|r| r.get("name")?.as_str())
        .collect();
    for old in [
        "order_by_id_g1",
        "stock_by_sku_g1",
        "order_by_id_g3",
        "stock_by_sku_g3",
    ] {
        let old = world.table(old);
        assert!(!names.contains(&old.as_str()), "{old} left: {names:?}");
    }
    let definition = tables
        .iter()
        .find(|r| r.get("name").and_then(Value::as_str) == Some(view.as_str()))
        .and_then(|r| r.get("create_table_query")?.as_str())
        .unwrap_or_default();
    assert!(
        definition.contains(&world.table("order_by_id_g2")),
        "{definition}"
    );
    assert!(world.dead_letters(0).is_empty(), "no dead letter");
    let exit = service
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(exit.success(), "{exit}");
}

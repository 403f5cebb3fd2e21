//! The projector as a process against the test stack's Kafka, registry and Redis: the read models in
//! Redis equal the reference semantics applied to the events, whatever duplicated deliveries, a poison
//! record and SIGKILLs mid-batch happen on the way.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use causeway_core::projection::{Document, EventInfo, Projection};
use causeway_kafka::dead_letter::dlq_headers;
use causeway_orders::contracts::inventory::StockAdded;
use causeway_orders::contracts::order::OrderPlaced;
use causeway_orders::order::OrderEvent;
use causeway_orders::projections::{ORDERS_BY_CUSTOMER, OrderById};
use common::{World, encode, events, inventory_events, metadata};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_change_nothing_and_a_poison_event_is_dead_lettered_with_its_headers() {
    let world = World::new(3).await;
    let (records, expected) = inventory_events(&world, 40, 12).await;
    let topic = world.topic("inventory");
    // Half of the stream, then all of it again: every event of the first half arrives twice.
    world.send(&topic, &records[..records.len() / 2]).await;
    // A poison record in a trace, with a timestamp of its own: its dead letter must say where it was.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let delivered = world
        .producer_handle()
        .send(
            rdkafka::producer::FutureRecord::to(&topic)
                .key("poison-key")
                .payload(&b"not avro at all"[..])
                .timestamp(1_700_000_000_123)
                .headers(
                    rdkafka::message::OwnedHeaders::new()
                        .insert(rdkafka::message::Header {
                            key: "traceparent",
                            value: Some(traceparent),
                        })
                        .insert(rdkafka::message::Header {
                            key: "tracestate",
                            value: Some("vendor=1"),
                        }),
                ),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("{e}"));
    let (poison_partition, poison_offset) = (delivered.partition, delivered.offset);
    let sent_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(0))
        .unwrap_or(0);
    world.send(&topic, &records).await;

    // Orders, filed under their customer.
    let order_topic = world.topic("order");
    let mut order_records = Vec::new();
    let mut orders_expected = BTreeMap::new();
    for n in 0..6i64 {
        let id = format!("o-{n}");
        let e = OrderPlaced {
            metadata: metadata(&id, 1),
            order_id: id.clone(),
            customer_id: format!("c-{}", n % 2),
            lines: Vec::new(),
            currency: "EUR".into(),
            payment_account_id: "acc".into(),
            total_cents: 100 * n,
        };
        let info = EventInfo {
            aggregate_id: &id,
            version: 1,
            occurred_at_ms: e.metadata.occurred_at + n,
        };
        let mut e = e;
        e.metadata.occurred_at = info.occurred_at_ms;
        let change = OrderById
            .project(&OrderEvent::Placed(e.clone()), &info)
            .unwrap_or_else(|e| panic!("{e}"));
        orders_expected
            .entry(id.clone())
            .or_insert_with(Document::default)
            .apply(&info, &change);
        order_records.push((id, encode(&world, &order_topic, "OrderPlaced", &e).await));
    }
    world.send(&order_topic, &order_records).await;

    // Two more poison events: one whose record key is not its aggregate id, and one whose document
    // key holds something that is not a document (Redis refuses that one write with WRONGTYPE).
    let stray = StockAdded {
        metadata: metadata("sku-stray", 1),
        sku: "sku-stray".into(),
        quantity: 1,
        available: 1,
    };
    let stray = encode(&world, &topic, "StockAdded", &stray).await;
    let clash = StockAdded {
        metadata: metadata("sku-clash", 1),
        sku: "sku-clash".into(),
        quantity: 1,
        available: 1,
    };
    let clash = encode(&world, &topic, "StockAdded", &clash).await;
    let mut redis = world.redis().await;
    let _: () = redis::cmd("SET")
        .arg(world.doc_key("stock-by-sku", "sku-clash"))
        .arg("not a hash")
        .query_async(&mut redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    world
        .send(
            &topic,
            &[
                ("another-key".to_string(), stray),
                ("sku-clash".to_string(), clash),
            ],
        )
        .await;

    let service = world.start();
    world.wait_documents("stock-by-sku", &expected).await;
    world.wait_documents("order-by-id", &orders_expected).await;
    let newest_first: Vec<String> = redis::cmd("ZREVRANGE")
        .arg(format!(
            "{}:order-by-id:g1:index:{ORDERS_BY_CUSTOMER}:c-0",
            world.prefix
        ))
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(newest_first, ["o-4", "o-2", "o-0"]);

    let dead = world.dead_letters(3);
    assert_eq!(dead.len(), 3, "three dead letters: {dead:?}");
    let reason_of = |key: &str| {
        dead.iter()
            .find(|(k, _)| k.as_deref() == Some(key))
            .and_then(|(_, h)| h.get(dlq_headers::REASON).cloned())
            .unwrap_or_default()
    };
    assert!(
        reason_of("another-key").contains("aggregate id"),
        "{dead:?}"
    );
    assert!(reason_of("sku-clash").contains("WRONGTYPE"), "{dead:?}");
    // The metrics say so too, and that nothing waits any more.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, metrics) = service.get("/metrics").unwrap_or_else(|e| panic!("{e}"));
        let dead_counted = metrics.lines().any(|l| {
            l.starts_with("causeway_consumer_records_total")
                && l.contains(&format!("group=\"{}\"", world.group))
                && l.contains("outcome=\"dead_lettered\"")
                && l.ends_with(" 3")
        });
        let lag: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("causeway_consumer_lag_records{") && l.contains(&topic))
            .collect();
        let caught_up = lag.len() == 3 && lag.iter().all(|l| l.ends_with(" 0"));
        let behind: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("causeway_consumer_lag_seconds{") && l.contains(&topic))
            .collect();
        let in_time = behind.len() == 3 && behind.iter().all(|l| l.ends_with(" 0"));
        // Every applied change counted in the freshness of its projection.
        let fresh = metrics.lines().any(|l| {
            l.starts_with(
                "causeway_projection_freshness_seconds_count{projection=\"stock-by-sku\"}",
            ) && !l.ends_with(" 0")
        });
        if dead_counted && caught_up && in_time && fresh {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics: dead letter counted {dead_counted}, lag 0 on 3 partitions {caught_up} ({lag:?}), 0 s behind {in_time} ({behind:?}), freshness counted {fresh}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, headers) = dead
        .iter()
        .find(|(k, _)| k.as_deref() == Some("poison-key"))
        .unwrap_or_else(|| panic!("no dead letter for poison-key: {dead:?}"));
    let header = |name: &str| headers.get(name).map(String::as_str);
    assert_eq!(header(dlq_headers::TOPIC), Some(topic.as_str()));
    assert_eq!(header(dlq_headers::CLASS), Some("poison"));
    assert_eq!(header(dlq_headers::GROUP), Some(world.group.as_str()));
    assert_eq!(header(dlq_headers::ATTEMPTS), Some("1"));
    assert!(
        header(dlq_headers::REASON).is_some_and(|r| r.contains("undecodable")),
        "{headers:?}"
    );
    let partition = poison_partition.to_string();
    let offset = poison_offset.to_string();
    assert_eq!(header(dlq_headers::PARTITION), Some(partition.as_str()));
    assert_eq!(header(dlq_headers::OFFSET), Some(offset.as_str()));
    assert_eq!(header(dlq_headers::TIMESTAMP), Some("1700000000123"));
    assert_eq!(header("traceparent"), Some(traceparent), "{headers:?}");
    assert_eq!(header("tracestate"), Some("vendor=1"), "{headers:?}");
    let time = |name: &str| {
        header(name)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("{name} in {headers:?}"))
    };
    let (first, at) = (time(dlq_headers::FIRST_FAILURE), time(dlq_headers::AT));
    assert!(
        sent_at - 60_000 <= first && first <= at && at <= sent_at + 120_000,
        "first failure {first}, dead-lettered {at}, sent about {sent_at}"
    );
    let exit = service
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(exit.success(), "{exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_batch_again_and_again_it_applies_every_event_once() {
    let world = World::new(3).await;
    let (records, expected) = inventory_events(&world, 300, 60).await;
    let topic = world.topic("inventory");
    world.send(&topic, &records).await;
    // Nothing applied yet: `causeway projections status` counts every event as waiting.
    let before = world.status();
    let waiting = before.get("stock-by-sku").copied().unwrap_or((-1, 0.0));
    assert_eq!(
        waiting.0,
        i64::try_from(records.len()).unwrap_or(0),
        "{before:?}"
    );
    assert!(waiting.1 >= 0.0, "{before:?}");
    // Small batches, so that each kill lands between many of them.
    let small = [("CAUSEWAY__CONSUMER__MAX_BATCH_RECORDS", "50")];
    let mut service = world.start_with(&small);
    let mut redis = world.redis().await;
    for kill in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let status = service.kill().unwrap_or_else(|e| panic!("{e}"));
        assert!(!status.success(), "killed, not exited: {status:?}");
        // How far it got: SKUs whose document is complete.
        let mut complete = 0;
        for (id, doc) in &expected {
            let version: Option<i64> = redis::cmd("HGET")
                .arg(world.doc_key("stock-by-sku", id))
                .arg("_version")
                .query_async(&mut redis)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            complete += usize::from(version == Some(doc.version));
        }
        eprintln!(
            "kill {kill}: {complete} of {} documents complete",
            expected.len()
        );
        if kill == 0 {
            assert!(
                complete < expected.len(),
                "the first kill came after the last event: the test proves nothing"
            );
        }
        service = world.start_with(&small);
    }
    world.wait_documents("stock-by-sku", &expected).await;
    assert!(
        world.dead_letters(0).is_empty(),
        "no dead letter after kills"
    );
    // Applied and committed (librdkafka commits stored offsets every 5 s): nothing waits.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let after = world.status();
        if after.get("stock-by-sku") == Some(&(0, 0.0)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{after:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let exit = service
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(exit.success(), "{exit}");
}

/// GET `path` of the read API: status and JSON body.
async fn read(api: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let path = path.to_string();
    let (status, body) = tokio::task::spawn_blocking(move || {
        causeway_testcontainers::process::http_get(api, &path).unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_api_waits_for_a_version_pages_an_index_and_names_bad_parameters() {
    use causeway_orders::contracts::order::OrderConfirmed;
    let world = World::new(1).await;
    let topic = world.topic("order");
    let placed = |n: i64| OrderPlaced {
        metadata: metadata(&format!("o-{n}"), 1),
        order_id: format!("o-{n}"),
        customer_id: "c-9".into(),
        lines: Vec::new(),
        currency: "EUR".into(),
        payment_account_id: "acc".into(),
        total_cents: 250 * n,
    };
    let mut records = Vec::new();
    for n in 1..=3i64 {
        let mut e = placed(n);
        e.metadata.occurred_at += n;
        records.push((
            format!("o-{n}"),
            encode(&world, &topic, "OrderPlaced", &e).await,
        ));
    }
    world.send(&topic, &records).await;
    let (service, api) = world.start_serving(&[]);

    let (status, doc) = read(api, "/v1/read/order-by-id/o-1?min_version=1&wait_ms=10000").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["fields"]["status"], "PLACED");
    assert_eq!(doc["fields"]["total_cents"], "250");

    // Version 2 is not there: accepted, not yet applied.
    let (status, doc) = read(api, "/v1/read/order-by-id/o-1?min_version=2&wait_ms=200").await;
    assert_eq!(status, 202, "{doc}");
    assert_eq!(doc["applied"], false);
    assert_eq!(doc["version"], 1);

    // A read waiting for version 2 is answered once it lands.
    let waiting = tokio::spawn(read(
        api,
        "/v1/read/order-by-id/o-1?min_version=2&wait_ms=10000",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let confirmed = OrderConfirmed {
        metadata: metadata("o-1", 2),
        order_id: "o-1".into(),
    };
    let bytes = encode(&world, &topic, "OrderConfirmed", &confirmed).await;
    world.send(&topic, &[("o-1".to_string(), bytes)]).await;
    let (status, doc) = waiting.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["version"], 2);
    assert_eq!(doc["fields"]["status"], "CONFIRMED");

    let (status, page) = read(
        api,
        &format!("/v1/read/order-by-id/index/{ORDERS_BY_CUSTOMER}/c-9?limit=2"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["o-3", "o-2"], "newest first, one page: {page}");
    let (_, page) = read(
        api,
        &format!("/v1/read/order-by-id/index/{ORDERS_BY_CUSTOMER}/c-9?offset=2&limit=2"),
    )
    .await;
    assert_eq!(page["items"][0]["id"], "o-1", "{page}");

    for (path, want) in [
        ("/v1/read/order-by-id/no-such-order", 404),
        ("/v1/read/no-such-projection/o-1", 404),
        ("/v1/read/order-by-id/o-1?min_version=abc", 400),
        ("/v1/read/order-by-id/o-1?min_version=0", 400),
        ("/v1/read/order-by-id/o-1?wait_ms=999999", 400),
        (
            "/v1/read/order-by-id/index/orders-by-customer/c-9?limit=0",
            400,
        ),
        (
            "/v1/read/order-by-id/index/orders-by-customer/c-9?offset=-1",
            400,
        ),
    ] {
        let (status, body) = read(api, path).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }

    let (status, spec) = read(api, "/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(spec["openapi"], "3.0.3");
    assert!(
        spec["components"]["schemas"]["stock-by-sku"]["properties"]["fields"]["properties"]
            ["reserved"]
            .is_object(),
        "{spec}"
    );
    let exit = service
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(exit.success(), "{exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_traffic_ends_equal_and_reads_never_see_it_half_built() {
    let world = World::new(3).await;
    // Versions 1..=40 of 100 SKUs; the first half before the projector starts, the rest as traffic.
    let (records, expected) = inventory_events(&world, 100, 40).await;
    let topic = world.topic("inventory");
    let (before, traffic) = records.split_at(records.len() / 2);
    world.send(&topic, before).await;
    let (service, api) = world.start_serving(&[]);

    // Readers: a document's version never goes back and a document once seen never disappears.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            let mut seen: std::collections::HashMap<String, i64> = Default::default();
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for s in (0..100).step_by(7) {
                    let id = format!("sku-{s}");
                    let (status, doc) = read(api, &format!("/v1/read/stock-by-sku/{id}")).await;
                    reads += 1;
                    let last = seen.get(&id).copied();
                    match (status, last) {
                        (404, None) => continue,
                        (200, _) => {}
                        _ => panic!("{id}: {status} {doc} after version {last:?}"),
                    }
                    let version = doc["version"].as_i64().unwrap_or(-1);
                    assert!(
                        last.is_none_or(|l| version >= l),
                        "{id}: version {version} after {last:?}: a half-built generation"
                    );
                    seen.insert(id, version);
                }
            }
            reads
        })
    };
    // Traffic while the rebuild runs.
    let traffic_task = {
        let chunks: Vec<Vec<(String, Vec<u8>)>> = traffic.chunks(200).map(<[_]>::to_vec).collect();
        let world_topic = topic.clone();
        let producer = world.producer_handle();
        tokio::spawn(async move {
            for chunk in chunks {
                events::send_with(&producer, &world_topic, &chunk).await;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = world.stack.clone();
    let context = world.context.clone();
    let prefix = world.prefix.clone();
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || {
        causeway_testcontainers::process::run_to_exit(
            std::process::Command::new(events::cli())
                .args([
                    "projections",
                    "rebuild",
                    "stock-by-sku",
                    "--context",
                    &context,
                ])
                .args(["--prefix", &prefix, "--redis", &s.redis_url])
                .args(["--registry", &s.registry_url])
                .args(["--bootstrap-servers", &s.kafka_bootstrap]),
            Duration::from_secs(120),
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status}: {stderr}\n{stdout}");
    assert!(
        stdout.contains("reads switched from generation 1 to 2"),
        "{stdout}"
    );
    traffic_task.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(world.live("stock-by-sku").await, 2);
    world.wait_documents("stock-by-sku", &expected).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(reads > 0);
    // The old generation is gone.
    let mut redis = world.redis().await;
    let (_, left): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!("{}:stock-by-sku:g1:*", world.prefix))
        .arg("COUNT")
        .arg(100_000)
        .query_async(&mut redis)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(left.is_empty(), "generation 1 keys left: {left:?}");
    let exit = service
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(exit.success(), "{exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_partitions_and_one_leaving_loses_and_doubles_nothing() {
    let world = World::new(6).await;
    let (records, expected) = inventory_events(&world, 200, 30).await;
    let topic = world.topic("inventory");
    let (first, rest) = records.split_at(records.len() / 3);
    world.send(&topic, first).await;
    let small = |id: &'static str| {
        [
            ("CAUSEWAY__CONSUMER__MAX_BATCH_RECORDS", "100"),
            ("CAUSEWAY__CONSUMER__INSTANCE_ID", id),
            // The instance that leaves hands its partitions over this soon.
            ("CAUSEWAY__KAFKA__PROPERTIES__session.timeout.ms", "6000"),
        ]
    };
    let a = world.start_with(&small("instance-a"));
    let b = world.start_with(&small("instance-b"));
    // Events keep coming while one instance is killed: the other takes its partitions over.
    let traffic = {
        let producer = world.producer_handle();
        let topic = topic.clone();
        let chunks: Vec<Vec<(String, Vec<u8>)>> = rest.chunks(500).map(<[_]>::to_vec).collect();
        tokio::spawn(async move {
            for chunk in chunks {
                events::send_with(&producer, &topic, &chunk).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = a.kill().unwrap_or_else(|e| panic!("{e}"));
    assert!(!status.success(), "killed, not exited: {status:?}");
    traffic.await.unwrap_or_else(|e| panic!("{e}"));
    world.wait_documents("stock-by-sku", &expected).await;
    assert!(world.dead_letters(0).is_empty(), "no dead letter");
    let exit = b
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(exit.success(), "{exit}");
}

//! The projector as a process against the test stack's Kafka, registry and Redis: the read models in
//! Redis equal the reference semantics applied to the events, whatever duplicated deliveries, a poison
//! record and SIGKILLs mid-batch happen on the way.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use causeway_core::projection::{Document, EventInfo, Projection};
use causeway_kafka::dead_letter::dlq_headers;
use causeway_orders::contracts::order::OrderPlaced;
use causeway_orders::order::OrderEvent;
use causeway_orders::projections::{ORDERS_BY_CUSTOMER, OrderById};
use common::{World, encode, inventory_events, metadata};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_change_nothing_and_a_poison_event_is_dead_lettered_with_its_headers() {
    let world = World::new(3).await;
    let (records, expected) = inventory_events(&world, 40, 12).await;
    let topic = world.topic("inventory");
    // Half of the stream, then all of it again: every event of the first half arrives twice.
    world.send(&topic, &records[..records.len() / 2]).await;
    world
        .send(
            &topic,
            &[("poison-key".to_string(), b"not avro at all".to_vec())],
        )
        .await;
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

    let service = world.start();
    world.wait_documents("stock-by-sku", &expected).await;
    world.wait_documents("order-by-id", &orders_expected).await;
    let mut redis = world.redis().await;
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

    let dead = world.dead_letters(1);
    assert_eq!(dead.len(), 1, "one dead letter: {dead:?}");
    let (key, headers) = &dead[0];
    assert_eq!(key.as_deref(), Some("poison-key"));
    let header = |name: &str| headers.get(name).map(String::as_str);
    assert_eq!(header(dlq_headers::TOPIC), Some(topic.as_str()));
    assert_eq!(header(dlq_headers::CLASS), Some("poison"));
    assert_eq!(header(dlq_headers::GROUP), Some(world.group.as_str()));
    assert_eq!(header(dlq_headers::ATTEMPTS), Some("1"));
    assert!(
        header(dlq_headers::REASON).is_some_and(|r| r.contains("undecodable")),
        "{headers:?}"
    );
    for name in [
        dlq_headers::PARTITION,
        dlq_headers::OFFSET,
        dlq_headers::TIMESTAMP,
        dlq_headers::AT,
        dlq_headers::FIRST_FAILURE,
    ] {
        assert!(
            header(name).is_some_and(|v| v.parse::<i64>().is_ok()),
            "{name} in {headers:?}"
        );
    }
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
    let exit = service
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(exit.success(), "{exit}");
}

//! The processor as a process against the test stack: what a command leads to (events with their
//! metadata, results, state), resent command ids, stale expected versions, poison records in the DLQ
//! while the stream moves on, and the trace context carried from a command to everything it produced.

mod common;

use std::time::Duration;

use apache_avro::types::Value;
use causeway_contracts::records::{CommandOutcome, CommandResult, EventMetadata, StateRecord};
use causeway_orders::contracts::OrderLine;
use causeway_orders::contracts::inventory::AddStock;
use causeway_orders::contracts::order::{ConfirmOrder, PlaceOrder, ShipOrder};
use causeway_orders::order::{Order, OrderStatus};
use common::World;
use rdkafka::message::{Header, OwnedHeaders};

fn place(command_id: &str, order_id: &str) -> PlaceOrder {
    PlaceOrder {
        command_id: command_id.into(),
        order_id: order_id.into(),
        customer_id: "cust-1".into(),
        lines: vec![OrderLine {
            sku: "sku-1".into(),
            quantity: 2,
            unit_price_cents: 250,
        }],
        currency: "EUR".into(),
        payment_account_id: "acc-1".into(),
        ..PlaceOrder::default()
    }
}

fn confirm(command_id: &str, order_id: &str, expected: Option<i64>) -> ConfirmOrder {
    ConfirmOrder {
        command_id: command_id.into(),
        order_id: order_id.into(),
        expected_version: expected,
        ..ConfirmOrder::default()
    }
}

fn results(world: &World, reads: &[common::Read]) -> Vec<CommandResult> {
    let _ = world;
    reads
        .iter()
        .filter_map(|r| r.record.as_ref())
        .map(|(_, v)| apache_avro::from_value::<CommandResult>(v).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_become_events_results_and_state_exactly_as_decided() {
    let world = World::new(2).await;
    let order = "order-1";
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let topic = world.topic("order", "commands");

    // 1. placed, with a trace context on the record.
    let bytes = world
        .codec
        .encode(
            &topic,
            "causeway.orders.order.PlaceOrder",
            &place("c-1", order),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let traced = OwnedHeaders::new().insert(Header {
        key: "traceparent",
        value: Some(traceparent),
    });
    world
        .send_raw(&topic, Some(order.as_bytes()), &bytes, Some(traced))
        .await;
    // 2. the same command id again: its first answer, nothing emitted.
    world
        .send("order", "PlaceOrder", order, &place("c-1", order))
        .await;
    // 3. a stale expected version: a conflict.
    world
        .send(
            "order",
            "ConfirmOrder",
            order,
            &confirm("c-2", order, Some(0)),
        )
        .await;
    // 4. poison: not Avro at all; another aggregate's command; a key that is not the aggregate id.
    world
        .send_raw(&topic, Some(order.as_bytes()), b"not an avro record", None)
        .await;
    let stock = AddStock {
        command_id: "c-x".into(),
        sku: "sku-1".into(),
        quantity: 1,
        ..AddStock::default()
    };
    let foreign = world
        .codec
        .encode(
            &world.topic("inventory", "commands"),
            "causeway.orders.inventory.AddStock",
            &stock,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    world
        .send_raw(&topic, Some(order.as_bytes()), &foreign, None)
        .await;
    world
        .send(
            "order",
            "ConfirmOrder",
            "another-order",
            &confirm("c-k", order, None),
        )
        .await;
    // 5. the stream moved on: the current version is accepted, then shipping.
    world
        .send(
            "order",
            "ConfirmOrder",
            order,
            &confirm("c-3", order, Some(1)),
        )
        .await;
    let ship = ShipOrder {
        command_id: "c-4".into(),
        order_id: order.into(),
        carrier: "DHL".into(),
        tracking_number: "T1".into(),
        ..ShipOrder::default()
    };
    world.send("order", "ShipOrder", order, &ship).await;

    let processor = world.start_processor("a");
    world.wait_caught_up(Duration::from_secs(60));

    let reads = world.read_all(&world.results_topic).await;
    let results = results(&world, &reads);
    let summary: Vec<(String, CommandOutcome, Option<i64>, Option<String>)> = results
        .iter()
        .map(|r| {
            (
                r.command_id.clone(),
                r.outcome,
                r.new_version,
                r.rejection_code.clone(),
            )
        })
        .collect();
    use CommandOutcome::{Accepted, Rejected};
    assert_eq!(
        summary,
        vec![
            ("c-1".into(), Accepted, Some(1), None),
            ("c-1".into(), Accepted, Some(1), None),
            ("c-2".into(), Rejected, None, Some("conflict".into())),
            // Poison whose command id can be read gets a result too (the undecodable one cannot).
            ("c-x".into(), Rejected, None, Some("dead_lettered".into())),
            ("c-k".into(), Rejected, None, Some("dead_lettered".into())),
            ("c-3".into(), Accepted, Some(2), None),
            ("c-4".into(), Accepted, Some(3), None),
        ],
        "results in command order (one partition holds the order and, by murmur2, another-order)"
    );
    let first = &results[0];
    assert_eq!(
        (
            first.aggregate_type.as_str(),
            first.aggregate_id.as_str(),
            first.correlation_id.as_str()
        ),
        ("order", order, "c-1")
    );
    let result_trace = header(&reads[0].headers, "traceparent").unwrap_or_default();
    assert!(
        result_trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "the result continues the command's trace: {result_trace:?}"
    );

    // Events: versions 1..3, once each, on the command's partition, with their metadata.
    let events = world.read_all(&world.topic("order", "events")).await;
    let mut seen = Vec::new();
    for e in &events {
        let (name, value) = e.record.as_ref().unwrap_or_else(|| panic!("a null event"));
        let Value::Record(fields) = value else {
            panic!("{name} is not a record")
        };
        let metadata = fields
            .iter()
            .find(|(k, _)| k == "metadata")
            .map(|(_, v)| {
                apache_avro::from_value::<EventMetadata>(v).unwrap_or_else(|e| panic!("{e}"))
            })
            .unwrap_or_else(|| panic!("{name} has no metadata"));
        assert_eq!(e.key.as_deref(), Some(order));
        assert_eq!(
            e.partition, reads[0].partition,
            "events share the command's partition number"
        );
        assert_eq!(metadata.aggregate_id, order);
        assert!(!metadata.event_id.is_empty());
        if metadata.aggregate_version == 1 {
            assert_eq!(
                (
                    metadata.causation_id.as_str(),
                    metadata.correlation_id.as_str()
                ),
                ("c-1", "c-1")
            );
            assert!(
                header(&e.headers, "traceparent")
                    .is_some_and(|t| t.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")),
                "the event continues the command's trace"
            );
        }
        seen.push((
            name.rsplit('.').next().unwrap_or_default().to_string(),
            metadata.aggregate_version,
        ));
    }
    assert_eq!(
        seen,
        vec![
            ("OrderPlaced".to_string(), 1),
            ("OrderConfirmed".to_string(), 2),
            ("OrderShipped".to_string(), 3)
        ]
    );

    // The changelog's latest state is the shipped order at version 3, with its recent commands.
    let changelog = world.read_all(&world.topic("order", "changelog")).await;
    let last = changelog
        .iter()
        .rev()
        .find(|r| r.key.as_deref() == Some(order))
        .and_then(|r| r.record.as_ref())
        .unwrap_or_else(|| panic!("no changelog record for {order}"));
    assert_eq!(last.0, "causeway.orders.order.OrderState");
    let state: StateRecord<Order> =
        apache_avro::from_value(&last.1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (state.version, state.state.status),
        (3, OrderStatus::Shipped)
    );
    let ids: Vec<&str> = state
        .recent_commands
        .iter()
        .map(|c| c.command_id.as_str())
        .collect();
    assert_eq!(ids, vec!["c-1", "c-2", "c-3", "c-4"]);

    // Dead letters: the three poison records, unchanged, with why and where from.
    let dead = world.read_raw(&world.dlq_topic);
    assert_eq!(dead.len(), 3, "three poison records");
    let reasons: Vec<&str> = dead
        .iter()
        .map(|d| header(&d.headers, "causeway.dlq.reason").unwrap_or_default())
        .collect();
    assert!(reasons[0].contains("undecodable"), "{reasons:?}");
    assert!(
        reasons[1].contains("AddStock is not a command of this aggregate"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("is not the command's aggregate id"),
        "{reasons:?}"
    );
    assert_eq!(dead[0].payload.as_deref(), Some(&b"not an avro record"[..]));
    for d in &dead {
        assert_eq!(
            header(&d.headers, "causeway.dlq.topic"),
            Some(topic.as_str())
        );
        assert_eq!(header(&d.headers, "causeway.dlq.class"), Some("poison"));
        assert_eq!(
            header(&d.headers, "causeway.dlq.group"),
            Some(world.group.as_str())
        );
        assert!(
            header(&d.headers, "causeway.dlq.offset").is_some_and(|o| o.parse::<i64>().is_ok())
        );
    }

    let status = processor
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");
}

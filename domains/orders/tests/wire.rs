//! Records in Confluent's wire format, both ways between our codec and Confluent's own Python client,
//! through the registry of the test stack: what we encode they decode, what they encode we decode.
//! OrderPlaced references two shared types (EventMetadata, OrderLine), so references are exercised too.

use causeway_contracts::catalog::Catalog;
use causeway_contracts::records::EventMetadata;
use causeway_contracts::registry::RegistryClient;
use causeway_contracts::wire::{Codec, WireError};
use causeway_core::{Classify, ErrorClass};
use causeway_orders::contracts::{OrderLine, order};
use causeway_testcontainers::native::run_python;
use causeway_testcontainers::stack;
use serde_json::{Value, json};

async fn registered() -> &'static str {
    let url = stack().registry_url.as_str();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../avro");
    let catalog = Catalog::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    RegistryClient::new(url)
        .register_catalog(&catalog, |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    url
}

async fn confluent(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || run_python("confluent_wire.py", &args))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn placed() -> order::OrderPlaced {
    order::OrderPlaced {
        metadata: EventMetadata {
            event_id: "0190e6a0-0000-7000-8000-000000000001".into(),
            aggregate_id: "o-42".into(),
            aggregate_version: 1,
            causation_id: "cmd-1".into(),
            correlation_id: "cmd-1".into(),
            occurred_at: 1_764_288_000_123,
            schema_version: 1,
        },
        order_id: "o-42".into(),
        customer_id: "zoë".into(),
        lines: vec![
            OrderLine {
                sku: "tea".into(),
                quantity: 2,
                unit_price_cents: 450,
            },
            OrderLine {
                sku: "mug".into(),
                quantity: 1,
                unit_price_cents: 1200,
            },
        ],
        currency: "EUR".into(),
        payment_account_id: "acc-1".into(),
        total_cents: 2100,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn what_we_encode_confluent_decodes() {
    let url = registered().await;
    let codec = Codec::new(url);
    let event = placed();
    let bytes = codec
        .encode(
            "orders.order.events",
            "causeway.orders.order.OrderPlaced",
            &event,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bytes[0], 0, "magic byte");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let theirs: Value =
        serde_json::from_str(&confluent(vec!["decode".into(), url.into(), hex]).await)
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(theirs, serde_json::to_value(&event).unwrap_or_default());

    // And back through our decoder.
    let ours = codec
        .decode::<order::OrderPlaced>(&bytes)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ours.full_name, "causeway.orders.order.OrderPlaced");
    assert_eq!(ours.value, event);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_confluent_encodes_we_decode() {
    let url = registered().await;
    // A command produced by hand: only the business fields and a command id.
    let request = json!({
        "full_name": "causeway.orders.order.PlaceOrder",
        "value": {
            "command_id": "cmd-7", "expected_version": null, "correlation_id": null, "issued_at": null,
            "order_id": "o-7", "customer_id": "bob",
            "lines": [{ "sku": "tea", "quantity": 3, "unit_price_cents": 450 }],
            "currency": "EUR", "payment_account_id": "acc-bob"
        }
    });
    let hex = confluent(vec![
        "encode".into(),
        url.into(),
        "orders.order.commands".into(),
        request.to_string(),
    ])
    .await;
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let decoded = Codec::new(url)
        .decode::<order::PlaceOrder>(&bytes)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decoded.full_name, "causeway.orders.order.PlaceOrder");
    assert_eq!(
        decoded.value,
        order::PlaceOrder {
            command_id: "cmd-7".into(),
            order_id: "o-7".into(),
            customer_id: "bob".into(),
            lines: vec![OrderLine {
                sku: "tea".into(),
                quantity: 3,
                unit_price_cents: 450
            }],
            currency: "EUR".into(),
            payment_account_id: "acc-bob".into(),
            ..order::PlaceOrder::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hand_written_json_command_encodes_and_decodes() {
    let url = registered().await;
    let codec = Codec::new(url);
    let topic = "orders.order.commands";
    let full_name = "causeway.orders.order.PlaceOrder";
    let subject = causeway_contracts::subject::topic_record_name(topic, full_name);
    let latest: Value =
        reqwest_free_get(&format!("{url}/subjects/{subject}/versions/latest")).await;
    let schema =
        causeway_contracts::schema::parse(latest["schema"].as_str().unwrap_or_default(), &[])
            .unwrap_or_else(|e| panic!("{e}"));
    let json = json!({
        "command_id": "cmd-9", "order_id": "o-9", "customer_id": "eve",
        "lines": [{ "sku": "tea", "quantity": 1, "unit_price_cents": 450 }],
        "currency": "EUR", "payment_account_id": "acc-eve"
    });
    let value =
        causeway_contracts::json::to_avro(&schema, &json).unwrap_or_else(|e| panic!("{e:?}"));
    let bytes = codec
        .encode_value(topic, full_name, value)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let decoded = codec
        .decode::<order::PlaceOrder>(&bytes)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decoded.value.customer_id, "eve");
    assert_eq!(decoded.value.expected_version, None);
}

/// A GET through the stack's Python-free path: the HTTP helper of the test stack.
async fn reqwest_free_get(url: &str) -> Value {
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr: std::net::SocketAddr = host.parse().unwrap_or_else(|e| panic!("{host}: {e}"));
    let path = format!("/{path}");
    let response = tokio::task::spawn_blocking(move || {
        causeway_testcontainers::process::http_request(addr, "GET", &path, None)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&response.body).unwrap_or_else(|e| panic!("{e}: {}", response.body))
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bytes_are_poison_and_an_absent_registry_transient() {
    let url = registered().await;
    let codec = Codec::new(url);
    for junk in [&b"not avro"[..], &[0, 0, 0, 0x7f, 0x7f, 1, 2][..], &[][..]] {
        let err = codec.decode::<order::PlaceOrder>(junk).await.err();
        assert!(
            matches!(&err, Some(e) if e.class() == ErrorClass::Poison),
            "{junk:?}: {err:?}"
        );
    }
    let away = Codec::new(&format!(
        "http://127.0.0.1:{}",
        causeway_testcontainers::process::free_port()
    ));
    let err = away
        .encode(
            "orders.order.events",
            "causeway.orders.order.OrderPlaced",
            &placed(),
        )
        .await
        .err();
    assert!(matches!(err, Some(WireError::Registry(_))), "{err:?}");
}

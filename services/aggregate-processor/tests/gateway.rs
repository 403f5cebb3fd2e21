//! End to end through the product: commands POSTed to the command gateway are processed by the
//! aggregate processor, and the status API answers with the result: accepted with its version, the same
//! answer for a resend under the same Idempotency-Key (with one event, not two), a conflict for a stale
//! expected version. The caller's trace continues from the HTTP request to the events.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_testcontainers::process::{ServiceProcess, free_port, http_request_with};
use causeway_testcontainers::stack;
use common::World;
use serde_json::{Value, json};

/// A binary of the workspace beside this test's own (target/<profile>/), built by `make build`.
fn workspace_binary(name: &str) -> PathBuf {
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

fn call(
    api: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Value) {
    let body = body.map(Value::to_string);
    let r = http_request_with(api, method, path, headers, body.as_deref())
        .unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    (r.status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_posted_to_the_gateway_are_processed_and_answered() {
    let world = World::new(2).await;
    let _processor = world.start_processor("a");
    let s = stack();
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let api_text = api.to_string();
    let gateway_bin = workspace_binary("command-gateway");
    let sample =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../command-gateway/command-gateway.toml");
    let mut gateway = ServiceProcess::start(
        &gateway_bin,
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

    let place = json!({
        "order_id": "o-1", "customer_id": "c-1", "currency": "EUR", "payment_account_id": "acc-1",
        "lines": [{ "sku": "sku-1", "quantity": 2, "unit_price_cents": 500 }]
    });
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let headers = [
        ("Idempotency-Key", "place-o-1"),
        ("traceparent", traceparent),
    ];
    let (code, body) = call(
        api,
        "POST",
        "/v1/commands/order/PlaceOrder",
        &headers,
        Some(&place),
    );
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["command_id"], "place-o-1");
    let (code, body) = call(
        api,
        "GET",
        "/v1/commands/place-o-1?wait_ms=20000",
        &[],
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(
        (body["status"].as_str(), body["version"].as_i64()),
        (Some("accepted"), Some(1)),
        "{body}"
    );

    // The same Idempotency-Key again: the first answer, no second event.
    let (code, _) = call(
        api,
        "POST",
        "/v1/commands/order/PlaceOrder",
        &headers,
        Some(&place),
    );
    assert_eq!(code, 202);
    // A stale expected version.
    let confirm = json!({ "order_id": "o-1", "expected_version": 0 });
    let (code, body) = call(
        api,
        "POST",
        "/v1/commands/order/ConfirmOrder",
        &[("Idempotency-Key", "confirm-o-1")],
        Some(&confirm),
    );
    assert_eq!(code, 202, "{body}");
    let (_, body) = call(
        api,
        "GET",
        "/v1/commands/confirm-o-1?wait_ms=20000",
        &[],
        None,
    );
    assert_eq!(
        (body["status"].as_str(), body["code"].as_str()),
        (Some("rejected"), Some("conflict")),
        "{body}"
    );

    world.wait_caught_up(Duration::from_secs(60));
    let results = world.read_raw(&world.results_topic);
    assert_eq!(results.len(), 3, "the resend is answered again");
    let events = world.read_all(&world.topic("order", "events")).await;
    assert_eq!(
        events.len(),
        1,
        "one OrderPlaced for two sends of one command"
    );
    let trace = events[0]
        .headers
        .iter()
        .find(|(k, _)| k == "traceparent")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(
        trace.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "the HTTP caller's trace reaches the event: {trace:?}"
    );
}

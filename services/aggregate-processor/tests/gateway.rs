//! End to end through the product: commands POSTed to the command gateway are processed by the
//! aggregate processor, and the status API answers with the result: accepted with its version, the same
//! answer for a resend under the same Idempotency-Key (with one event, not two), a conflict for a stale
//! expected version. The caller's trace continues from the HTTP request to the events.

mod common;

use std::time::Duration;

use common::{World, call, start_gateway};
use serde_json::json;

/// Any gateway instance answers for any command: one started after a command was processed knows its
/// result (it reads the results since its lookback before it reports ready), and two running
/// instances answer for each other's commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_gateway_instance_answers_for_any_command() {
    let world = World::new(2).await;
    let _processor = world.start_processor("a");
    let (_a, api_a) = start_gateway(&world);
    let place = |order: &str| {
        json!({
            "order_id": order, "customer_id": "c-1", "currency": "EUR", "payment_account_id": "acc-1",
            "lines": [{ "sku": "sku-1", "quantity": 1, "unit_price_cents": 500 }]
        })
    };
    let (code, body) = call(
        api_a,
        "POST",
        "/v1/commands/order/PlaceOrder",
        &[],
        Some(&place("o-1")),
    );
    assert_eq!(code, 202, "{body}");
    let first = body["status_url"].as_str().unwrap_or_default().to_string();
    let (_, status) = call(api_a, "GET", &format!("{first}?wait_ms=20000"), &[], None);
    assert_eq!(status["status"], json!("accepted"), "{status}");

    // B starts after that result was written, and knows it without waiting.
    let (_b, api_b) = start_gateway(&world);
    let (_, status) = call(api_b, "GET", &first, &[], None);
    assert_eq!(
        (status["status"].clone(), status["version"].clone()),
        (json!("accepted"), json!(1)),
        "{status}"
    );
    // A command sent through B is answered by A.
    let (code, body) = call(
        api_b,
        "POST",
        "/v1/commands/order/PlaceOrder",
        &[],
        Some(&place("o-2")),
    );
    assert_eq!(code, 202, "{body}");
    let second = body["status_url"].as_str().unwrap_or_default().to_string();
    let (_, status) = call(api_a, "GET", &format!("{second}?wait_ms=20000"), &[], None);
    assert_eq!(status["status"], json!("accepted"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_posted_to_the_gateway_are_processed_and_answered() {
    let world = World::new(2).await;
    let _processor = world.start_processor("a");
    let (_gateway, api) = start_gateway(&world);

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
    let placed = body["command_id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        body["status_url"],
        serde_json::json!(format!("/v1/commands/{placed}"))
    );
    let (code, body) = call(
        api,
        "GET",
        &format!("/v1/commands/{placed}?wait_ms=20000"),
        &[],
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(
        (body["status"].as_str(), body["version"].as_i64()),
        (Some("accepted"), Some(1)),
        "{body}"
    );

    // The same Idempotency-Key again: the same command, the first answer, no second event.
    let (code, again) = call(
        api,
        "POST",
        "/v1/commands/order/PlaceOrder",
        &headers,
        Some(&place),
    );
    assert_eq!(code, 202);
    assert_eq!(again["command_id"].as_str(), Some(placed.as_str()));
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
    let confirmed = body["command_id"].as_str().unwrap_or_default().to_string();
    let (_, body) = call(
        api,
        "GET",
        &format!("/v1/commands/{confirmed}?wait_ms=20000"),
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

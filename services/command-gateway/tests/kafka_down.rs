//! When Kafka stops answering, the gateway says so (503 with Retry-After) instead of hanging or
//! pretending. It runs against a stack of its own (own folder and ports), whose Kafka the test kills.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use causeway_testcontainers::native::TempStack;
use causeway_testcontainers::process::{ServiceProcess, free_port, http_request_with};

#[tokio::test(flavor = "multi_thread")]
async fn kafka_gone_means_503_with_retry_after() {
    // Dropped last: stops the stack and deletes its folder even when an assertion fails.
    let own = std::sync::Arc::new(TempStack::new());
    let endpoints = {
        let own = std::sync::Arc::clone(&own);
        tokio::task::spawn_blocking(move || own.up())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let bootstrap = endpoints.kafka_bootstrap.clone();
    let registry = endpoints.registry_url.clone();
    common::provision(&bootstrap, &registry).await;

    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let api_text = api.to_string();
    let mut gateway = ServiceProcess::start(
        Path::new(env!("CARGO_BIN_EXE_command-gateway")),
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/command-gateway.toml")),
        &[
            ("CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS", bootstrap.as_str()),
            ("CAUSEWAY__HTTP__LISTEN", api_text.as_str()),
            ("CAUSEWAY__GATEWAY__REGISTRY_URL", registry.as_str()),
            ("CAUSEWAY__GATEWAY__PRODUCE_TIMEOUT_MS", "2000"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    gateway
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let body = serde_json::json!({
        "order_id": "o-1", "customer_id": "c", "currency": "EUR", "payment_account_id": "a",
        "lines": [{ "sku": "tea", "quantity": 1, "unit_price_cents": 1 }]
    })
    .to_string();
    let post = |body: String| {
        tokio::task::spawn_blocking(move || {
            http_request_with(
                api,
                "POST",
                "/v1/commands/order/PlaceOrder",
                &[],
                Some(&body),
            )
        })
    };
    let ok = post(body.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.status, 202, "{}", ok.body);

    // Kafka dies.
    let pid = std::fs::read_to_string(own.dir.join("kafka/kafka.pid")).unwrap_or_default();
    let killed = Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(killed.success());
    let answer = post(body)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer.body.contains("Kafka did not acknowledge"),
        "{}",
        answer.body
    );
    let retry_after: u64 = answer
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        retry_after > 0,
        "a 503 says when to retry: {:?}",
        answer.headers
    );
    let refused: serde_json::Value =
        serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}: {}", answer.body));
    assert!(
        refused["command_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "a 503 names the command, so the client can retry it idempotently: {refused}"
    );

    drop(gateway);
    tokio::task::spawn_blocking(move || drop(own))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

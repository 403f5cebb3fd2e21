//! The command API end to end: the gateway as a process, the registry and Kafka of the test stack.
//! What it accepts lands on the command topic, decodable with the contract; what it refuses is answered
//! with the field that is wrong; results on the results topic show up in the status API.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use causeway_contracts::records::{CommandOutcome, CommandResult};
use causeway_contracts::wire::Codec;
use causeway_kafka::config::OffsetMode;
use causeway_kafka::{KafkaConfig, client};
use causeway_testcontainers::process::{ServiceProcess, free_port, http_request_with};
use causeway_testcontainers::{stack, unique};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_command-gateway");
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/command-gateway.toml");

/// Topics of the domain and the contracts, as `make demo` provisions them.
async fn prepared() -> KafkaConfig {
    let s = stack();
    common::provision(&s.kafka_bootstrap, &s.registry_url).await
}

struct Gateway {
    process: ServiceProcess,
    api: SocketAddr,
}

impl Gateway {
    fn start() -> Self {
        let s = stack();
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let api_text = api.to_string();
        let mut process = ServiceProcess::start(
            Path::new(BIN),
            Path::new(SAMPLE),
            &[
                (
                    "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
                    s.kafka_bootstrap.as_str(),
                ),
                ("CAUSEWAY__HTTP__LISTEN", api_text.as_str()),
                ("CAUSEWAY__GATEWAY__REGISTRY_URL", s.registry_url.as_str()),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        process
            .wait_ready(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
        Self { process, api }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, Value) {
        let r = http_request_with(self.api, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{e}"));
        (
            r.status,
            serde_json::from_str(&r.body).unwrap_or(Value::String(r.body)),
        )
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, &[], Some(&body.to_string()))
    }
}

fn place_order(order_id: &str) -> Value {
    json!({
        "order_id": order_id, "customer_id": "alice",
        "lines": [{ "sku": "tea", "quantity": 2, "unit_price_cents": 450 }],
        "currency": "EUR", "payment_account_id": "acc-alice"
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_accepted_command_is_on_its_topic_keyed_by_aggregate_id() {
    let kafka = prepared().await;
    let gateway = tokio::task::spawn_blocking(Gateway::start)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let order_id = unique("o");
    let (status, body) = gateway.post("/v1/commands/order/PlaceOrder", &place_order(&order_id));
    assert_eq!(status, 202, "{body}");
    let command_id = body["command_id"].as_str().unwrap_or_default().to_string();
    assert!(!command_id.is_empty());
    assert_eq!(body["status_url"], format!("/v1/commands/{command_id}"));

    // Find it on the topic (any partition: murmur2 of the key decides), decode it with the contract.
    let consumer = client::consumer(&kafka, "test", &unique("g"), OffsetMode::StoreAfterEffect)
        .unwrap_or_else(|e| panic!("{e}"));
    consumer
        .subscribe(&["orders.order.commands"])
        .unwrap_or_else(|e| panic!("{e}"));
    let codec = Codec::new(&stack().registry_url);
    let deadline = Instant::now() + Duration::from_secs(30);
    let found = loop {
        assert!(
            Instant::now() < deadline,
            "the command never reached orders.order.commands"
        );
        let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await else {
            continue;
        };
        if m.key() == Some(order_id.as_bytes()) {
            let decoded = codec
                .decode::<causeway_orders_like::PlaceOrder>(m.payload().unwrap_or_default())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            break decoded;
        }
    };
    assert_eq!(found.full_name, "causeway.orders.order.PlaceOrder");
    assert_eq!(found.value.command_id, command_id);
    assert_eq!(found.value.order_id, order_id);
    assert_eq!(found.value.expected_version, None);

    // The Idempotency-Key header stands for the command id, scoped to the aggregate: a retried
    // request is one command; the same key for another aggregate is another command.
    let key = unique("key");
    let headers = [("Idempotency-Key", key.as_str())];
    let body = place_order(&unique("o")).to_string();
    let other_order = place_order(&unique("o")).to_string();
    let first = gateway.call(
        "POST",
        "/v1/commands/order/PlaceOrder",
        &headers,
        Some(&body),
    );
    let second = gateway.call(
        "POST",
        "/v1/commands/order/PlaceOrder",
        &headers,
        Some(&body),
    );
    let third = gateway.call(
        "POST",
        "/v1/commands/order/PlaceOrder",
        &headers,
        Some(&other_order),
    );
    assert_eq!((first.0, second.0, third.0), (202, 202, 202));
    let id = first.1["command_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(uuid_like(&id), "{id}");
    assert_eq!(
        second.1["command_id"],
        json!(id),
        "a retry is the same command"
    );
    assert_ne!(
        third.1["command_id"],
        json!(id),
        "the same key for another order is another command"
    );
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36 && id.chars().filter(|c| *c == '-').count() == 4
}

/// The fields of PlaceOrder this test reads (the gateway knows no Rust types; neither does this test).
mod causeway_orders_like {
    #[derive(Debug, serde::Deserialize)]
    pub struct PlaceOrder {
        pub command_id: String,
        pub expected_version: Option<i64>,
        pub order_id: String,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_commands_get_clear_answers() {
    prepared().await;
    let gateway = tokio::task::spawn_blocking(Gateway::start)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let path = "/v1/commands/order/PlaceOrder";

    let (status, body) = gateway.call("POST", path, &[], Some("{ not json"));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not JSON")),
        "{body}"
    );

    let mut wrong = place_order("o-1");
    wrong["lines"][0]["quantity"] = json!("two");
    wrong["colour"] = json!("red");
    if let Some(o) = wrong.as_object_mut() {
        o.remove("currency");
    }
    let (status, body) = gateway.post(path, &wrong);
    assert_eq!(status, 400, "{body}");
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .map(|f| f.iter().filter_map(|x| x["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        fields,
        vec!["lines[0].quantity", "currency", "colour"],
        "{body}"
    );

    let (status, body) = gateway.post(path, &json!(["not", "an", "object"]));
    assert_eq!(status, 400, "{body}");
    let (status, body) = gateway.post("/v1/commands/order/ExplodeOrder", &place_order("o-1"));
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("ExplodeOrder")),
        "{body}"
    );
    let (status, body) = gateway.post("/v1/commands/spaceship/Launch", &json!({}));
    assert_eq!(status, 404, "{body}");
    let mut empty_id = place_order("");
    empty_id["order_id"] = json!("");
    let (status, body) = gateway.post(path, &empty_id);
    assert_eq!(
        (status, body["fields"][0]["field"].clone()),
        (400, json!("order_id")),
        "{body}"
    );
    let mut conflicting = place_order("o-1");
    conflicting["command_id"] = json!("a");
    let (status, _) = gateway.call(
        "POST",
        path,
        &[("Idempotency-Key", "b")],
        Some(&conflicting.to_string()),
    );
    assert_eq!(status, 400);

    let mut long_id = place_order(&"o".repeat(300));
    long_id["correlation_id"] = json!("c".repeat(300));
    let (status, body) = gateway.post(path, &long_id);
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        (status, fields),
        (400, vec!["order_id", "correlation_id"]),
        "{body}"
    );

    let huge = json!({ "order_id": "x".repeat(200_000) }).to_string();
    let (status, _) = gateway.call("POST", path, &[], Some(&huge));
    assert_eq!(status, 413);
    let (status, body) = gateway.call("GET", "/v1/commands/x?wait_ms=soon", &[], None);
    assert_eq!(status, 400, "{body}");

    // The dashboards' request metrics: by route template (not by id), method and status.
    let (_, metrics) = gateway
        .process
        .get("/metrics")
        .unwrap_or_else(|e| panic!("{e}"));
    let count = |route: &str, method: &str, status: &str| -> f64 {
        let series = format!(
            "causeway_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let submit = "/v1/commands/{aggregate}/{command}";
    assert!(count(submit, "POST", "400") >= 2.0, "{metrics}");
    assert_eq!(count(submit, "POST", "413"), 1.0, "{metrics}");
    assert_eq!(
        count("/v1/commands/{command_id}", "GET", "400"),
        1.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("causeway_http_request_seconds_count{method=\"POST\",route=\"/v1/commands/{aggregate}/{command}\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("route=\"/v1/commands/x\""),
        "ids never make series"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn results_show_up_in_the_status_api() {
    let kafka = prepared().await;
    let gateway = tokio::task::spawn_blocking(Gateway::start)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let command_id = unique("cmd");
    let (status, body) = gateway.call("GET", &format!("/v1/commands/{command_id}"), &[], None);
    assert_eq!((status, body["status"].clone()), (200, json!("pending")));

    // A processor's result, as it would write it.
    let result = CommandResult {
        command_id: command_id.clone(),
        correlation_id: command_id.clone(),
        aggregate_type: "order".into(),
        aggregate_id: "o-1".into(),
        outcome: CommandOutcome::Rejected,
        rejection_code: Some("insufficient_stock".into()),
        reason: Some("2 units of tea requested, 1 available".into()),
        ..CommandResult::default()
    };
    let bytes = Codec::new(&stack().registry_url)
        .encode(
            "causeway.command-results",
            "causeway.CommandResult",
            &result,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let producer = client::producer(&kafka, "test").unwrap_or_else(|e| panic!("{e}"));
    let waiting = {
        let api = gateway.api;
        let path = format!("/v1/commands/{command_id}?wait_ms=20000");
        tokio::task::spawn_blocking(move || http_request_with(api, "GET", &path, &[], None))
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    producer
        .send(
            FutureRecord::to("causeway.command-results")
                .key(&command_id)
                .payload(&bytes),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("{e}"));
    let answered = waiting
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let body: Value = serde_json::from_str(&answered.body).unwrap_or_default();
    assert_eq!(body["status"], "rejected", "{body}");
    assert_eq!(body["code"], "insufficient_stock");
}

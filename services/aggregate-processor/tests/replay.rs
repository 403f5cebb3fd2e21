//! A command dead-lettered by the processor, replayed through the dlq-reprocessor once its cause is
//! fixed: applied exactly once (one event, one accepted result after the dead-lettered one), and a
//! second replay refused.

mod common;
#[path = "../../dlq-reprocessor/tests/common/mod.rs"]
mod reprocessor;

use std::time::{Duration, Instant};

use causeway_contracts::records::{CommandOutcome, CommandResult};
use causeway_orders::contracts::OrderLine;
use causeway_orders::contracts::order::PlaceOrder;
use common::{World, workspace_binary};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};

fn order(command_id: &str, order_id: &str, lines: usize) -> PlaceOrder {
    PlaceOrder {
        command_id: command_id.into(),
        order_id: order_id.into(),
        customer_id: "cust-1".into(),
        lines: (0..lines)
            .map(|i| OrderLine {
                sku: format!("a-rather-long-stock-keeping-unit-name-{i:04}"),
                quantity: 1,
                unit_price_cents: 100,
            })
            .collect(),
        currency: "EUR".into(),
        payment_account_id: "acc-1".into(),
        ..PlaceOrder::default()
    }
}

async fn results_of(world: &World, command_id: &str) -> Vec<(CommandOutcome, Option<String>)> {
    world
        .read_all(&world.results_topic)
        .await
        .iter()
        .filter_map(|r| r.record.as_ref())
        .map(|(_, v)| apache_avro::from_value::<CommandResult>(v).unwrap_or_else(|e| panic!("{e}")))
        .filter(|r| r.command_id == command_id)
        .map(|r| (r.outcome, r.rejection_code))
        .collect()
}

async fn placed(world: &World, order_id: &str) -> usize {
    world
        .read_all(&world.topic("order", "events"))
        .await
        .iter()
        .filter(|e| {
            e.key.as_deref() == Some(order_id)
                && e.record
                    .as_ref()
                    .is_some_and(|(name, _)| name.ends_with(".OrderPlaced"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_dead_lettered_for_a_cause_since_fixed_is_replayed_and_applied_exactly_once() {
    // The events topic takes records of 3000 bytes at most: an order of 60 lines does not fit.
    let world = World::of(
        causeway_orders::hosting::domain(),
        1,
        ("events", "config = { \"max.message.bytes\" = \"3000\" }"),
    )
    .await;
    let mut processor = world.start_processor("a");
    world
        .send("order", "PlaceOrder", "o-big", &order("c-big", "o-big", 60))
        .await;
    // The small one is traced: its history shows the trace id on its event and result.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let bytes = world
        .codec
        .encode(
            &world.topic("order", "commands"),
            "causeway.orders.order.PlaceOrder",
            &order("c-small", "o-small", 1),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    world
        .send_raw(
            &world.topic("order", "commands"),
            Some(b"o-small"),
            &bytes,
            Some(OwnedHeaders::new().insert(Header {
                key: "traceparent",
                value: Some(traceparent),
            })),
        )
        .await;
    // A record whose header name is not UTF-8 (rdkafka panics reading one): dead-lettered, the
    // processor goes on.
    reprocessor::produce_with_binary_header_name(
        &world.stack.kafka_bootstrap,
        &world.topic("order", "commands"),
        "o-odd",
        "not a command",
    );
    world.wait_results(2, Duration::from_secs(60));
    assert_eq!(
        results_of(&world, "c-big").await,
        [(CommandOutcome::Rejected, Some("dead_lettered".to_string()))]
    );
    reprocessor::provision(&world.kafka, &[]).await;
    let r = reprocessor::start(
        &workspace_binary("dlq-reprocessor"),
        &world.stack,
        &reprocessor::pattern_for(&world.context),
        3,
        &[
            (
                "CAUSEWAY__HISTORY__RESULTS_TOPIC",
                world.results_topic.as_str(),
            ),
            ("CAUSEWAY__HISTORY__CONTEXT", world.context.as_str()),
        ],
    );
    let odd = reprocessor::wait_letters(r.api, &format!("group={}&key=o-odd", world.group), 1);
    assert!(
        odd[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("undecodable")),
        "{odd:?}"
    );
    let letters = reprocessor::wait_letters(r.api, &format!("group={}&key=o-big", world.group), 1);
    let letter = &letters[0];
    assert_eq!(letter["key"], "o-big");
    assert_eq!(
        letter["source"]["topic"],
        world.topic("order", "commands").as_str()
    );
    assert!(
        letter["reason"]
            .as_str()
            .is_some_and(|r| r.contains("max.message.bytes")),
        "{letter}"
    );
    let id = letter["id"].as_str().unwrap_or_default().to_string();

    // The cause fixed: the topic takes larger records (the processor reads the limits as it starts).
    let admin: AdminClient<DefaultClientContext> = world
        .kafka
        .admin_config()
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let topic = world.topic("order", "events");
    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(&topic))
                .set("max.message.bytes", "1000000")],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(altered.iter().all(Result::is_ok), "{altered:?}");
    processor
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    processor = world.start_processor("a");

    let (status, done) = reprocessor::call(
        r.api,
        "POST",
        &format!("/v1/dead-letters/{id}/replay"),
        None,
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["letters"][0]["outcome"], "replayed", "{done}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while results_of(&world, "c-big").await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the replayed command got no result"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A second replay is refused; nothing more arrives.
    let (status, again) = reprocessor::call(
        r.api,
        "POST",
        &format!("/v1/dead-letters/{id}/replay"),
        None,
    );
    assert_eq!(status, 409, "{again}");
    world.wait_caught_up(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        results_of(&world, "c-big").await,
        [
            (CommandOutcome::Rejected, Some("dead_lettered".to_string())),
            (CommandOutcome::Accepted, None),
        ]
    );
    assert_eq!(
        placed(&world, "o-big").await,
        1,
        "one OrderPlaced for the replayed order"
    );
    assert_eq!(placed(&world, "o-small").await, 1);
    let (_, page) = reprocessor::call(
        r.api,
        "GET",
        &format!(
            "/v1/dead-letters?group={}&key=o-big&state=parked",
            world.group
        ),
        None,
    );
    assert_eq!(page["letters"].as_array().map(Vec::len), Some(0), "{page}");

    // The history of the replayed order: its one event with the command that made it and the accepted
    // result; both of its command's results; its dead letter, replayed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let history = loop {
        let (status, h) = reprocessor::call(r.api, "GET", "/v1/history/order/o-big", None);
        assert_eq!(status, 200, "{h}");
        if h["commands"].as_array().map(Vec::len) == Some(2) {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "the results never reached the history: {}\n{}",
            h["commands"],
            r.process.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let events = history["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "{history}");
    assert_eq!(events[0]["type"], "causeway.orders.order.OrderPlaced");
    assert_eq!(events[0]["version"], 1);
    assert_eq!(events[0]["command_id"], "c-big");
    assert_eq!(
        events[0]["command"]["type"], "causeway.orders.order.PlaceOrder",
        "{history}"
    );
    assert_eq!(events[0]["command"]["outcome"], "accepted");
    assert_eq!(
        events[0]["command"]["data"]["lines"]
            .as_array()
            .map(Vec::len),
        Some(60)
    );
    let outcomes: Vec<&str> = history["commands"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["rejected", "accepted"], "{history}");
    assert_eq!(history["dead_letters"][0]["id"], id.as_str(), "{history}");
    assert_eq!(history["dead_letters"][0]["state"], "replayed");
    // The traced order: the trace id on its event and on its result.
    let (_, small) = reprocessor::call(r.api, "GET", "/v1/history/order/o-small", None);
    assert_eq!(
        small["events"][0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{small}"
    );
    assert_eq!(
        small["events"][0]["command"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    // The flow of the big order (its correlation id is its command id): both results and the dead
    // letter side by side.
    let (status, flow) = reprocessor::call(r.api, "GET", "/v1/correlations/c-big", None);
    assert_eq!(status, 200, "{flow}");
    assert_eq!(flow["commands"].as_array().map(Vec::len), Some(2), "{flow}");
    assert_eq!(flow["dead_letters"][0]["id"], id.as_str(), "{flow}");
    // The CLI prints the same.
    let (status, stdout, stderr) = causeway_testcontainers::process::run_to_exit(
        std::process::Command::new(workspace_binary("causeway"))
            .args(["events", "order", "o-big"])
            .env("CAUSEWAY_DLQ_URL", format!("http://{}", r.api))
            .env("CAUSEWAY_DLQ_TOKEN", reprocessor::TOKEN),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("OrderPlaced")
            && stdout.contains("PlaceOrder c-big")
            && stdout.contains("accepted v1"),
        "{stdout}"
    );
    let (status, body) = reprocessor::call(r.api, "GET", "/v1/history/nope/o-big", None);
    assert_eq!(status, 404, "{body}");
    drop(processor);
}

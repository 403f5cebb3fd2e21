//! Commands produced straight onto a command topic by an outside Confluent-compatible client (Confluent's
//! own Python client, murmur2 partitioning as the contracts README asks) are processed exactly like the
//! suite's own: the same partition for the same aggregate, one version sequence across both producers.

mod common;

use std::time::Duration;

use causeway_contracts::records::{CommandOutcome, CommandResult};
use causeway_orders::contracts::inventory::AddStock;
use causeway_testcontainers::native::run_python;
use causeway_testcontainers::stack;
use common::World;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confluent_client_and_the_suite_feed_one_aggregate() {
    let world = World::new(4).await;
    let topic = world.topic("inventory", "commands");
    let request = json!({
        "full_name": "causeway.orders.inventory.AddStock",
        "value": { "command_id": "py-1", "expected_version": null, "correlation_id": null,
                   "issued_at": null, "sku": "sku-py", "quantity": 5 }
    });
    let args: Vec<String> = [
        "produce",
        stack().registry_url.as_str(),
        stack().kafka_bootstrap.as_str(),
        topic.as_str(),
        "sku-py",
        &request.to_string(),
    ]
    .map(str::to_string)
    .to_vec();
    let out = tokio::task::spawn_blocking(move || run_python("confluent_wire.py", &args))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let placed: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));

    let ours = AddStock {
        command_id: "rs-1".into(),
        sku: "sku-py".into(),
        quantity: 2,
        expected_version: Some(1),
        ..AddStock::default()
    };
    world.send("inventory", "AddStock", "sku-py", &ours).await;

    let processor = world.start_processor("a");
    world.wait_caught_up(Duration::from_secs(60));
    let raw = world.read_raw(&topic);
    assert!(
        raw.iter()
            .all(|r| i64::from(r.partition) == placed["partition"].as_i64().unwrap_or(-1)),
        "both producers put sku-py on one partition"
    );
    let results = world.read_all(&world.results_topic).await;
    let outcomes: Vec<(String, CommandOutcome, Option<i64>)> = results
        .iter()
        .filter_map(|r| r.record.as_ref())
        .map(|(_, v)| apache_avro::from_value::<CommandResult>(v).unwrap_or_else(|e| panic!("{e}")))
        .map(|r| (r.command_id, r.outcome, r.new_version))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("py-1".to_string(), CommandOutcome::Accepted, Some(1)),
            ("rs-1".to_string(), CommandOutcome::Accepted, Some(2)),
        ]
    );
    let status = processor
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");
}

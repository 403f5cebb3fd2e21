//! Durability on a cluster of three brokers (replication 3, `min.insync.replicas` 2): commands POSTed to
//! the gateway under load while the leader of a command partition is killed (SIGKILL). Every command the
//! gateway answered 202 is processed exactly once; a command answered 503 may or may not have landed
//! (the client retries it with its id), but never twice. The test restarts the processor when it exits,
//! as an orchestrator would: librdkafka can leave a transactional client stuck when a coordinator broker
//! is lost, and the processor then stops, saying so, for a restart with a new client.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_contracts::records::CommandResult;
use causeway_testcontainers::native::KafkaCluster;
use causeway_testcontainers::{Stack, stack};
use common::{World, call, start_gateway};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;

const CLIENTS: usize = 4;
const PER_CLIENT: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_command_partition_leader_under_load_loses_no_accepted_command() {
    let cluster = tokio::task::spawn_blocking(KafkaCluster::start)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let shared = stack();
    let endpoints = Stack {
        kafka_bootstrap: cluster.bootstrap.clone(),
        ..shared.clone()
    };
    let world = World::on(
        &endpoints,
        causeway_orders::hosting::domain(),
        3,
        3,
        ("", ""),
    )
    .await;
    let processor = world.start_processor("a");
    let (gateway, api) = start_gateway(&world);

    let answers: Arc<Mutex<Vec<(String, u16)>>> = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let answers = Arc::clone(&answers);
            std::thread::spawn(move || {
                for n in 0..PER_CLIENT {
                    let id = format!("cmd-{c}-{n}");
                    let body = json!({ "command_id": id, "sku": format!("sku-{}", n % 25), "quantity": 1 });
                    let (status, _) = call(
                        api,
                        "POST",
                        "/v1/commands/inventory/AddStock",
                        &[],
                        Some(&body),
                    );
                    answers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((id, status));
                }
            })
        })
        .collect();
    // A third of the way in, kill the leader of the first inventory command partition.
    let topic = world.topic("inventory", "commands");
    while answers.lock().unwrap_or_else(|p| p.into_inner()).len() < CLIENTS * PER_CLIENT / 3 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let metadata_reader: BaseConsumer = world
        .kafka
        .consumer_config(
            "test-metadata",
            "test-metadata",
            causeway_kafka::config::OffsetMode::Transactional,
        )
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let leader = metadata_reader
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"))
        .topics()
        .first()
        .and_then(|t| {
            t.partitions()
                .iter()
                .find(|p| p.id() == 0)
                .map(|p| p.leader())
        })
        .unwrap_or_else(|| panic!("no leader for {topic} partition 0"));
    cluster.kill(leader);
    for c in clients {
        c.join().unwrap_or_else(|_| panic!("a client panicked"));
    }
    let answers = answers.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let accepted: Vec<&String> = answers
        .iter()
        .filter(|(_, s)| *s == 202)
        .map(|(id, _)| id)
        .collect();
    assert!(
        !accepted.is_empty() && answers.iter().all(|(_, s)| *s == 202 || *s == 503),
        "only 202 or 503: {:?}",
        answers
            .iter()
            .filter(|(_, s)| *s != 202)
            .take(5)
            .collect::<Vec<_>>()
    );

    // Supervise until every command is processed: restart the processor when it exits.
    let (processor, restarts) =
        world.supervise_until_caught_up(processor, "a", &[], Duration::from_secs(400));
    eprintln!("caught up after {restarts} restart(s)");
    let mut results: HashMap<String, usize> = HashMap::new();
    for r in world.read_all(&world.results_topic).await {
        let (_, value) = r.record.unwrap_or_else(|| panic!("a null result"));
        let result: CommandResult =
            apache_avro::from_value(&value).unwrap_or_else(|e| panic!("{e}"));
        *results.entry(result.command_id).or_default() += 1;
    }
    let lost: Vec<&&String> = accepted
        .iter()
        .filter(|id| !results.contains_key(id.as_str()))
        .take(5)
        .collect();
    assert!(
        lost.is_empty(),
        "commands answered 202 with no result after the leader was lost: {lost:?}"
    );
    let twice: Vec<_> = results.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        twice.is_empty(),
        "commands with more than one result: {twice:?}"
    );
    let events = world.read_all(&world.topic("inventory", "events")).await;
    let mut versions: HashMap<String, Vec<i64>> = HashMap::new();
    for e in &events {
        let (_, value) = e.record.as_ref().unwrap_or_else(|| panic!("a null event"));
        let apache_avro::types::Value::Record(fields) = value else {
            panic!("not a record")
        };
        let version = fields
            .iter()
            .find(|(k, _)| k == "metadata")
            .and_then(|(_, m)| {
                apache_avro::from_value::<causeway_contracts::records::EventMetadata>(m).ok()
            })
            .map(|m| m.aggregate_version)
            .unwrap_or(-1);
        versions
            .entry(e.key.clone().unwrap_or_default())
            .or_default()
            .push(version);
    }
    for (sku, v) in &versions {
        let expected: Vec<i64> = (1..=i64::try_from(v.len()).unwrap_or(0)).collect();
        assert_eq!(v, &expected, "{sku}: versions in log order");
    }
    assert_eq!(
        events.len(),
        results.len(),
        "one event per processed AddStock"
    );
    drop(gateway);
    let status = processor
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");
    drop(world);
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

//! Faults the processor survives, each injected into the real stack: commands from a producer on
//! librdkafka's default partitioner, a domain handler that panics, ids far over their limit, outputs
//! larger than a topic takes, topics whose partition counts differ. The second domain of the build
//! (counter) is hosted by the unchanged binary throughout.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use causeway_contracts::records::{CommandOutcome, CommandResult, StateRecord};
use causeway_counter::Counter;
use causeway_counter::contracts::AddToCounter;
use causeway_kafka::topology::{self, Topology};
use causeway_orders::contracts::OrderLine;
use causeway_orders::contracts::inventory::AddStock;
use causeway_orders::contracts::order::PlaceOrder;
use causeway_testcontainers::native::run_python;
use causeway_testcontainers::process::ServiceProcess;
use causeway_testcontainers::{stack, unique};
use common::{BIN, SAMPLE, StockCommand, World, verify_inventory};
use serde_json::json;

fn results(reads: &[common::Read]) -> Vec<CommandResult> {
    reads
        .iter()
        .map(|r| {
            let (_, v) = r.record.as_ref().unwrap_or_else(|| panic!("a null result"));
            apache_avro::from_value(v).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

/// (command id, outcome, new version, rejection code) of every result, in log order.
async fn summary(world: &World) -> Vec<(String, CommandOutcome, Option<i64>, Option<String>)> {
    results(&world.read_all(&world.results_topic).await)
        .into_iter()
        .map(|r| (r.command_id, r.outcome, r.new_version, r.rejection_code))
        .collect()
}

/// Stop `processor` with SIGTERM; it must exit 0 (no crash, whatever the test threw at it).
fn stop_cleanly(processor: ServiceProcess) {
    let status = processor
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The same inventory aggregates fed by the suite (murmur2) and by Confluent's Python client on its
/// default partitioner (consistent_random, CRC32): one history per aggregate, versions gapless,
/// nothing applied twice, every command one result. Without forwarding, a SKU whose CRC32 partition
/// differs from its murmur2 one gets a second history starting again at version 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_off_their_home_partition_are_forwarded_and_decided_once() {
    let world = World::new(4).await;
    let topic = world.topic("inventory", "commands");
    let skus = 40;
    let add = |sku: usize, round: usize, quantity: i32| AddStock {
        command_id: format!("cmd-{sku}-{round}"),
        sku: format!("sku-{sku}"),
        quantity,
        ..AddStock::default()
    };
    // Round 0 from the suite, round 1..=3 from Python, round 4 from the suite again.
    let mut load: Vec<(&'static str, String, StockCommand)> = Vec::new();
    let ours = |round: usize| -> Vec<(&'static str, String, StockCommand)> {
        (0..skus)
            .map(|s| {
                (
                    "AddStock",
                    format!("sku-{s}"),
                    StockCommand::Add(add(s, round, 1)),
                )
            })
            .collect()
    };
    let first = ours(0);
    world.send_many("inventory", &first).await;
    load.extend(first);
    let mut python = Vec::new();
    for round in 1..=3 {
        for s in 0..skus {
            let a = add(s, round, 2);
            python.push(json!({
                "key": a.sku, "full_name": "causeway.orders.inventory.AddStock",
                "value": { "command_id": a.command_id, "expected_version": null, "correlation_id": null,
                           "issued_at": null, "sku": a.sku, "quantity": a.quantity }
            }));
            load.push(("AddStock", a.sku.clone(), StockCommand::Add(a)));
        }
    }
    let file = std::env::temp_dir().join(format!("{}.json", unique("python-load")));
    std::fs::write(&file, serde_json::to_vec(&python).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    let args: Vec<String> = [
        "produce-file",
        stack().registry_url.as_str(),
        stack().kafka_bootstrap.as_str(),
        topic.as_str(),
        "consistent_random",
        &file.to_string_lossy(),
    ]
    .map(str::to_string)
    .to_vec();
    let out = tokio::task::spawn_blocking(move || run_python("confluent_wire.py", &args))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&file);
    let placed: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let python_partitions: Vec<i64> = placed["partitions"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
        .unwrap_or_default();
    let off_home = python_partitions
        .iter()
        .zip(python.iter())
        .filter(|(p, r)| {
            let key = r["key"].as_str().unwrap_or_default();
            **p != i64::from(causeway_kafka::partitioner::home_partition(
                key.as_bytes(),
                4,
            ))
        })
        .count();
    assert!(
        off_home > 0,
        "the Python producer put every key where murmur2 does: the test proves nothing"
    );
    let last = ours(4);
    world.send_many("inventory", &last).await;
    load.extend(last);

    let processor = world.start_processor("a");
    world.wait_results(load.len(), Duration::from_secs(120));
    verify_inventory(&world, &load).await;
    let (_, metrics) = processor.get("/metrics").unwrap_or_else(|e| panic!("{e}"));
    let forwarded: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("causeway_processor_forwarded_commands_total") && l.contains("inventory")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert_eq!(
        forwarded, off_home as f64,
        "each command off its home partition forwarded once"
    );
    stop_cleanly(processor);
}

/// The counter domain, hosted by the unchanged binary from config alone. Its handler panics past
/// `i64::MAX`: that command is dead-lettered with a `dead_lettered` result and the counter goes on. A
/// command id of 900 KB (a state record holding a few of them would outgrow the topic) is
/// dead-lettered too; no result can carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_domain_is_hosted_and_its_panics_and_huge_ids_are_dead_lettered() {
    let world = World::of(causeway_counter::domain(), 2, ("", "")).await;
    let add = |id: &str, amount: i64| AddToCounter {
        command_id: id.into(),
        counter_id: "k".into(),
        amount,
        ..AddToCounter::default()
    };
    let huge = "h".repeat(900_000);
    world
        .send("counter", "AddToCounter", "k", &add("c-1", 5))
        .await;
    world
        .send("counter", "AddToCounter", "k", &add("c-2", i64::MAX))
        .await;
    world
        .send("counter", "AddToCounter", "k", &add(&huge, 1))
        .await;
    world
        .send("counter", "AddToCounter", "k", &add("c-3", 2))
        .await;

    let processor = world.start_processor("a");
    world.wait_caught_up(Duration::from_secs(60));

    let summary = summary(&world).await;
    assert_eq!(
        summary,
        vec![
            ("c-1".into(), CommandOutcome::Accepted, Some(1), None),
            (
                "c-2".into(),
                CommandOutcome::Rejected,
                None,
                Some("dead_lettered".into())
            ),
            ("c-3".into(), CommandOutcome::Accepted, Some(2), None),
        ]
    );
    let dead = world.read_raw(&world.dlq_topic);
    let reasons: Vec<&str> = dead
        .iter()
        .map(|d| header(&d.headers, "causeway.dlq.reason").unwrap_or_default())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].contains("handler panicked") && reasons[0].contains("overflows"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("command_id is 900000 bytes"),
        "{reasons:?}"
    );
    assert!(
        dead[1].payload.as_ref().map(Vec::len).unwrap_or(0) > 900_000,
        "the dead letter keeps the record"
    );
    let changelog = world.read_all(&world.topic("counter", "changelog")).await;
    let last = changelog
        .last()
        .and_then(|r| r.record.as_ref())
        .unwrap_or_else(|| panic!("no state record"));
    let state: StateRecord<Counter> =
        apache_avro::from_value(&last.1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((state.version, state.state.value), (2, 7));
    let ids: Vec<&str> = state
        .recent_commands
        .iter()
        .map(|c| c.command_id.as_str())
        .collect();
    assert_eq!(
        ids,
        vec!["c-1", "c-3"],
        "dead-lettered commands leave no trace in the state"
    );
    stop_cleanly(processor);
}

/// An order whose event the events topic will never accept (its `max.message.bytes` is small) is
/// dead-lettered with a result, instead of failing every transaction it is in; the orders after it are
/// processed and its aggregate is as if it never came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_larger_than_a_topic_takes_are_dead_lettered_with_a_result() {
    let world = World::of(
        causeway_orders::hosting::domain(),
        1,
        ("events", "config = { \"max.message.bytes\" = \"4000\" }"),
    )
    .await;
    let place = |id: &str, order: &str, lines: usize| PlaceOrder {
        command_id: id.into(),
        order_id: order.into(),
        customer_id: "cu".into(),
        lines: (0..lines)
            .map(|i| OrderLine {
                sku: format!("sku-with-a-long-name-{i}"),
                quantity: 1,
                unit_price_cents: 100,
            })
            .collect(),
        currency: "EUR".into(),
        payment_account_id: "acc".into(),
        ..PlaceOrder::default()
    };
    world
        .send("order", "PlaceOrder", "big", &place("c-big", "big", 300))
        .await;
    world
        .send(
            "order",
            "PlaceOrder",
            "small",
            &place("c-small", "small", 1),
        )
        .await;
    world
        .send("order", "PlaceOrder", "big", &place("c-big-2", "big", 1))
        .await;

    let processor = world.start_processor("a");
    world.wait_caught_up(Duration::from_secs(60));
    let summary = summary(&world).await;
    assert_eq!(
        summary,
        vec![
            (
                "c-big".into(),
                CommandOutcome::Rejected,
                None,
                Some("dead_lettered".into())
            ),
            ("c-small".into(), CommandOutcome::Accepted, Some(1), None),
            ("c-big-2".into(), CommandOutcome::Accepted, Some(1), None),
        ],
        "the big order left no version behind"
    );
    let dead = world.read_raw(&world.dlq_topic);
    assert_eq!(dead.len(), 1);
    let reason = header(&dead[0].headers, "causeway.dlq.reason").unwrap_or_default();
    assert!(reason.contains("max.message.bytes"), "{reason}");
    let events = world.read_raw(&world.topic("order", "events"));
    assert_eq!(events.len(), 2, "no event of the dead-lettered order");
    stop_cleanly(processor);
}

/// Commands, events and changelog of one aggregate type with different partition counts: the processor
/// refuses to start and names the topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_counts_that_differ_stop_the_processor_naming_the_topics() {
    let s = stack();
    let context = unique("mismatch");
    let toml = format!(
        "[defaults]\npartitions = 2\nreplication_factor = 1\n\
         [[topic]]\nname = \"{context}.counter.commands\"\n\
         [[topic]]\nname = \"{context}.counter.events\"\npartitions = 3\n\
         [[topic]]\nname = \"{context}.counter.changelog\"\ncleanup_policy = \"compact\"\n\
         [[topic]]\nname = \"{context}.results\"\n"
    );
    let topology = Topology::parse(&toml, "test").unwrap_or_else(|e| panic!("{e}"));
    let kafka = causeway_kafka::KafkaConfig::for_servers(s.kafka_bootstrap.clone());
    topology::apply(&kafka, &topology, false, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let results_topic = format!("{context}.results");
    let env: Vec<(&str, &str)> = vec![
        ("CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS", &s.kafka_bootstrap),
        ("CAUSEWAY__PROCESSOR__DOMAIN", "counter"),
        ("CAUSEWAY__PROCESSOR__AGGREGATES", "[]"),
        ("CAUSEWAY__PROCESSOR__CONTEXT", &context),
        ("CAUSEWAY__PROCESSOR__GROUP_ID", &context),
        ("CAUSEWAY__PROCESSOR__RESULTS_TOPIC", &results_topic),
        ("CAUSEWAY__PROCESSOR__REGISTRY_URL", &s.registry_url),
    ];
    let mut p = ServiceProcess::start(Path::new(BIN), Path::new(SAMPLE), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = p.try_exit().unwrap_or_else(|e| panic!("{e}")) {
            break status;
        }
        assert!(Instant::now() < deadline, "still running: {}", p.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = p.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!("{context}.counter.commands 2"))
            && log.contains(&format!("{context}.counter.events 3"))
            && log.contains("partition counts differ"),
        "{log}"
    );
}

/// An order whose state would outgrow its changelog topic (`max.message.bytes` small; every rejected
/// command is remembered in the state, with its reason). States are written once per batch; the batch
/// whose state cannot be written is retried command by command, and the commands that would make the
/// state too large are dead-lettered with a result while the state stays writable and the stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_that_would_outgrow_its_changelog_is_dead_lettered_command_by_command() {
    use causeway_orders::contracts::order::ConfirmOrder;
    let world = World::of(
        causeway_orders::hosting::domain(),
        1,
        ("changelog", "config = { \"max.message.bytes\" = \"3000\" }"),
    )
    .await;
    let place = PlaceOrder {
        command_id: "c-place".into(),
        order_id: "o-1".into(),
        customer_id: "cu".into(),
        lines: vec![OrderLine {
            sku: "s".into(),
            quantity: 1,
            unit_price_cents: 1,
        }],
        currency: "EUR".into(),
        payment_account_id: "acc".into(),
        ..PlaceOrder::default()
    };
    world.send("order", "PlaceOrder", "o-1", &place).await;
    let stale: Vec<(&str, String, ConfirmOrder)> = (0..40)
        .map(|i| {
            (
                "ConfirmOrder",
                "o-1".to_string(),
                ConfirmOrder {
                    command_id: format!("c-stale-{i:02}"),
                    order_id: "o-1".into(),
                    expected_version: Some(99),
                    ..ConfirmOrder::default()
                },
            )
        })
        .collect();
    world.send_many("order", &stale).await;

    let processor = world.start_processor("a");
    world.wait_caught_up(Duration::from_secs(60));
    let results = results(&world.read_all(&world.results_topic).await);
    assert_eq!(results.len(), 41, "every command one result");
    let codes: Vec<&str> = results
        .iter()
        .map(|r| r.rejection_code.as_deref().unwrap_or("accepted"))
        .collect();
    let conflicts = codes.iter().filter(|c| **c == "conflict").count();
    let dead = codes.iter().filter(|c| **c == "dead_lettered").count();
    assert_eq!(codes[0], "accepted");
    assert!(
        conflicts > 5 && dead > 5 && conflicts + dead == 40,
        "the state took the first conflicts, then refused the rest: {codes:?}"
    );
    assert!(
        codes[1..=conflicts].iter().all(|c| *c == "conflict"),
        "in order: {codes:?}"
    );
    let letters = world.read_raw(&world.dlq_topic);
    assert_eq!(letters.len(), dead);
    let reason = header(&letters[0].headers, "causeway.dlq.reason").unwrap_or_default();
    assert!(reason.contains("state record would be"), "{reason}");
    let changelog = world.read_raw(&world.topic("order", "changelog"));
    assert!(
        changelog
            .iter()
            .all(|r| r.payload.as_ref().map_or(0, Vec::len) < 3000),
        "every state record fits its topic"
    );
    stop_cleanly(processor);
}

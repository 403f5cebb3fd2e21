//! Restoring a long changelog keeps the group membership: the restore runs in short steps between
//! polls of the group consumer, so `max.poll.interval.ms` (set low here) is never exceeded however long
//! the changelog. A changelog of 1,000,000 state records; the instance restores it once, keeps its
//! partitions, and decides the next command from the restored state. Restarted after a clean stop it
//! reads only the changelog's tail (its on-disk store holds the rest), and with its store damaged it reads
//! the whole changelog again.

mod common;

use std::path::Path;
use std::time::Duration;

use causeway_contracts::records::{CommandOutcome, CommandResult, StateRecord};
use causeway_orders::contracts::inventory::ReserveStock;
use causeway_orders::inventory::Inventory;
use causeway_testcontainers::process::ServiceProcess;
use common::{BIN, SAMPLE, World};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const RECORDS: usize = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_record_changelog_is_restored_without_losing_membership() {
    let world = World::new(1).await;
    let changelog = world.topic("inventory", "changelog");
    let state = StateRecord {
        aggregate_id: "sku".into(),
        version: 1,
        state: Inventory {
            available: 5,
            ..Inventory::default()
        },
        recent_commands: Vec::new(),
        updated_at: 0,
    };
    let bytes = world
        .codec
        .encode(
            &changelog,
            "causeway.orders.inventory.InventoryState",
            &state,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let kafka = world.kafka.clone();
    let topic = changelog.clone();
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = kafka
            .producer_config("test-changelog")
            .set("linger.ms", "20")
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..RECORDS {
            let key = format!("sku-{i}");
            let mut record = BaseRecord::to(&topic).key(&key).payload(&bytes);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        producer.poll(Duration::from_millis(5));
                        record = back;
                    }
                }
            }
            if i % 10_000 == 0 {
                producer.poll(Duration::ZERO);
            }
        }
        producer
            .flush(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e}"));
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let mut env = world.env("a");
    env.push((
        "CAUSEWAY__KAFKA__PROPERTIES__max.poll.interval.ms",
        "6000".into(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut processor = ServiceProcess::start(Path::new(BIN), Path::new(SAMPLE), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    processor
        .wait_ready(Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("{e}"));
    let log = processor.log();
    if let Some(line) = log.lines().find(|l| l.contains("state restored")) {
        eprintln!("{line}");
    }
    assert!(
        !log.contains("poll interval") && !log.contains("MAXPOLL"),
        "the consumer exceeded max.poll.interval.ms while restoring:\n{}",
        &log[log.len().saturating_sub(4000)..]
    );
    assert_eq!(
        log.matches("state restored; partitions resumed").count(),
        1,
        "restored more than once (membership lost?):\n{}",
        &log[log.len().saturating_sub(4000)..]
    );
    assert_eq!(
        restored_records(&processor),
        RECORDS as f64,
        "every changelog record was read"
    );

    // The next command is decided from the restored state: 5 available, reserve 2, version 2.
    reserve_next(&world, "r-1", "o-1", 2, 1, 2).await;
    let status = processor
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");

    // Restarted after a clean stop, it reads only the changelog written since its on-disk store's
    // checkpoint (nothing), and reads the state the next command needs back from the store.
    let processor = restart(&env);
    assert_eq!(
        restored_records(&processor),
        0.0,
        "a restart after a clean stop reads only the changelog's tail:\n{}",
        processor.log()
    );
    reserve_next(&world, "r-2", "o-2", 1, 2, 3).await;
    let status = processor
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");

    // With its store damaged (a missing one is every test's first start), it sets the file aside
    // and reads the whole changelog again.
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(world.state_dir())
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "redb"))
        .collect();
    assert_eq!(files.len(), 1, "one store per instance: {files:?}");
    std::fs::write(&files[0], vec![0x5a; 64 * 1024]).unwrap_or_else(|e| panic!("{e}"));
    let processor = restart(&env);
    assert_eq!(
        restored_records(&processor),
        (RECORDS + 2) as f64,
        "a lost store is rebuilt from the whole changelog"
    );
    let set_aside = std::fs::read_dir(world.state_dir())
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains(".unreadable-"));
    assert!(set_aside, "the damaged file is kept aside");
    reserve_next(&world, "r-3", "o-3", 1, 3, 4).await;
    let status = processor
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");
}

fn restart(env: &[(&str, &str)]) -> ServiceProcess {
    let mut processor = ServiceProcess::start(Path::new(BIN), Path::new(SAMPLE), env)
        .unwrap_or_else(|e| panic!("{e}"));
    processor
        .wait_ready(Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("{e}"));
    processor
}

/// The processor's `causeway_processor_restored_records_total`.
fn restored_records(processor: &ServiceProcess) -> f64 {
    let metrics = processor
        .get("/metrics")
        .map(|(_, m)| m)
        .unwrap_or_default();
    metrics
        .lines()
        .find(|l| l.starts_with("causeway_processor_restored_records_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Reserve `quantity` more units of sku-777 for `order` at `expected` version: accepted at `version`
/// only if the state it is decided on is the latest.
async fn reserve_next(
    world: &World,
    id: &str,
    order: &str,
    quantity: i32,
    expected: i64,
    version: i64,
) {
    let reserve = ReserveStock {
        command_id: id.into(),
        sku: "sku-777".into(),
        order_id: order.into(),
        quantity,
        expected_version: Some(expected),
        ..ReserveStock::default()
    };
    world
        .send("inventory", "ReserveStock", "sku-777", &reserve)
        .await;
    world.wait_caught_up(Duration::from_secs(60));
    let results: Vec<CommandResult> = world
        .read_all(&world.results_topic)
        .await
        .iter()
        .filter_map(|r| r.record.as_ref())
        .map(|(_, v)| apache_avro::from_value(v).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let result = results
        .iter()
        .find(|r| r.command_id == id)
        .unwrap_or_else(|| panic!("no result for {id}"));
    assert_eq!(
        (result.outcome, result.new_version),
        (CommandOutcome::Accepted, Some(version)),
        "{result:?}"
    );
}

//! Two processes under one identity (transactional id and group instance id): the newer one fences the
//! older, which stops on its own with the reason (exit 1, no panic) while the newer processes on. And
//! state that cannot be restored stops the processor rather than being skipped.

mod common;

use std::time::{Duration, Instant};

use causeway_orders::contracts::inventory::AddStock;
use common::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_instance_stops_cleanly_and_the_newer_one_processes() {
    let world = World::new(2).await;
    let mut old = world.start_processor("same");
    let newer = world.start_processor("same");
    let add = |id: &str| AddStock {
        command_id: id.into(),
        sku: "sku-f".into(),
        quantity: 1,
        ..AddStock::default()
    };
    world
        .send("inventory", "AddStock", "sku-f", &add("f-1"))
        .await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = old.try_exit().unwrap_or_else(|e| panic!("{e}")) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the fenced instance is still running:\n{}",
            old.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = old.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("fenced"), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    world
        .send("inventory", "AddStock", "sku-f", &add("f-2"))
        .await;
    world.wait_caught_up(Duration::from_secs(60));
    let results = world.read_raw(&world.results_topic);
    assert_eq!(results.len(), 2, "each command answered once");
    let status = newer
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");
}

/// A changelog record that cannot be read back would lose state if skipped: the processor stops with
/// the record's place and why (exit 1), and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_changelog_record_stops_the_processor() {
    let world = World::new(1).await;
    let changelog = world.topic("inventory", "changelog");
    world
        .send_raw(&changelog, Some(b"sku-x"), b"not a state record", None)
        .await;
    let env = world.env("corrupt");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut p = causeway_testcontainers::process::ServiceProcess::start(
        std::path::Path::new(common::BIN),
        std::path::Path::new(common::SAMPLE),
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = p.try_exit().unwrap_or_else(|e| panic!("{e}")) {
            break status;
        }
        assert!(Instant::now() < deadline, "still running:\n{}", p.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = p.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("changelog {changelog} partition 0 offset 0")),
        "{log}"
    );
    assert!(world.read_raw(&world.results_topic).is_empty());
}

//! The broker stopped for about 40 s in the middle of the processor's transactions (SIGKILL of the Kafka
//! process of a stack of the test's own, then the stack started again on the same data and ports, as an
//! orchestrator would): the processor retries what librdkafka says to retry, aborts and restores what it
//! must, and resumes; nothing is lost or applied twice, and `/readyz` says it was stalled.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_testcontainers::native::TempStack;
use common::{World, stock_load, verify_inventory};

// Not in `make test` yet: it fails about one run in three (issue 8). Failures seen: a few commands with
// two results (session 4), and 50 accepted results (one batch) whose events are missing (session 5,
// on a test that now reads only once no transaction is open). What the failing run's logs show: the
// single KRaft node, killed and started again on its data, loads its coordinators and serves as leader
// from its own stale metadata for several seconds before it can register again (the controller answers
// DUPLICATE_BROKER_REGISTRATION until the old registration's session ends), then resigns every partition
// and takes them back under a new epoch; the processor's transactions span that window. Next: the same
// test on separate controller and broker processes (a production layout) to tell a processor defect
// from that window. Run it with `cargo test -p aggregate-processor --test broker_outage -- --ignored`.
#[ignore = "exactly-once across a restart of the only (combined-mode) KRaft node fails 1 run in 3: under investigation (issue 8)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_stopped_for_forty_seconds_mid_transaction_loses_and_duplicates_nothing() {
    // Dropped last: stops the stack and deletes its folder even when an assertion fails.
    let own = Arc::new(TempStack::new());
    let endpoints = {
        let own = Arc::clone(&own);
        tokio::task::spawn_blocking(move || own.up())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let world = World::on(
        &endpoints,
        causeway_orders::hosting::domain(),
        3,
        1,
        ("", ""),
    )
    .await;
    let load = stock_load(100, 150);
    world.send_many("inventory", &load).await;
    let settings = [
        ("CAUSEWAY__PROCESSOR__TRANSACTION_TIMEOUT_MS", "90000"),
        ("CAUSEWAY__PROCESSOR__MAX_BATCH_RECORDS", "50"),
        ("CAUSEWAY__PROCESSOR__STALL_READY_MS", "5000"),
        ("CAUSEWAY__PROCESSOR__STALL_HEALTH_MS", "600000"),
    ];
    let processor = world.start_processor_with("a", &settings);
    let total = i64::try_from(load.len()).unwrap_or(0);
    // Stop the broker once the processor is well into the load.
    let deadline = Instant::now() + Duration::from_secs(120);
    while world.lag() > total * 2 / 3 {
        assert!(Instant::now() < deadline, "the processor made no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    own.kill("kafka");
    let stopped = Instant::now();
    let mut unready = false;
    while stopped.elapsed() < Duration::from_secs(40) {
        if let Ok((503, _)) = processor.get("/readyz") {
            unready = true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    {
        let own = Arc::clone(&own);
        tokio::task::spawn_blocking(move || own.restart())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(
        unready,
        "/readyz stayed 200 while no transaction could commit"
    );
    world.wait_caught_up(Duration::from_secs(300));
    verify_inventory(&world, &load).await;
    let (status, _) = processor.get("/readyz").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "ready again once the broker is back");
    let log = processor.log();
    let exit = processor
        .terminate(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        exit.success(),
        "the processor stops cleanly after the outage: {exit:?}\n{}",
        &log[log.len().saturating_sub(3000)..]
    );
    drop(world);
    tokio::task::spawn_blocking(move || drop(own))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

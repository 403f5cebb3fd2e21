//! Redis stopped (SIGKILL) for 30 s while events keep coming, then started again on its data (AOF) as an
//! orchestrator would: the projector retries with backoff, reports not ready, resumes, and the read
//! models end exact, with no dead letter. Runs on a stack of its own, whose Redis it kills.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_testcontainers::native::TempStack;
use common::{World, inventory_events};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_for_thirty_seconds_loses_and_doubles_nothing() {
    // Dropped last: stops the stack and deletes its folder (kept when the test fails).
    let own = Arc::new(TempStack::new());
    let endpoints = {
        let own = Arc::clone(&own);
        tokio::task::spawn_blocking(move || own.up())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let world = World::on(&endpoints, 3).await;
    let (records, expected) = inventory_events(&world, 100, 30).await;
    let topic = world.topic("inventory");
    let (first, rest) = records.split_at(records.len() / 3);
    world.send(&topic, first).await;
    let service = world.start_with(&[("CAUSEWAY__CONSUMER__RETRY_MAX_MS", "2000")]);

    own.kill("redis");
    let stopped = Instant::now();
    // Events keep coming while Redis is away.
    world.send(&topic, rest).await;
    let mut unready = false;
    while stopped.elapsed() < Duration::from_secs(30) {
        if let Ok((503, _)) = service.get("/readyz") {
            unready = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(unready, "/readyz stayed 200 while Redis was away");
    {
        let own = Arc::clone(&own);
        tokio::task::spawn_blocking(move || own.restart())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    world.wait_documents("stock-by-sku", &expected).await;
    let (status, _) = service.get("/readyz").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "ready again once Redis is back");
    assert!(
        world.dead_letters(0).is_empty(),
        "no dead letter for an outage"
    );
    let log = service.log();
    assert!(
        log.contains("transient failure; retrying"),
        "the outage was retried:\n{}",
        &log[log.len().saturating_sub(3000)..]
    );
    let exit = service
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(exit.success(), "{exit}");
    drop(world);
    tokio::task::spawn_blocking(move || drop(own))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

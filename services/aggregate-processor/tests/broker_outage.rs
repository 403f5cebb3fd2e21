//! The broker stopped for about 40 s in the middle of the processor's transactions (SIGKILL of the Kafka
//! process of a stack of the test's own, then the stack started again on the same data and ports, as an
//! orchestrator would): the processor retries what librdkafka says to retry, aborts and restores what it
//! must, and resumes; nothing is lost or applied twice, and `/readyz` says it was stalled.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_testcontainers::native::TempStack;
use common::{World, stock_load, verify_inventory};

// Kafka as a controller process and a broker process (the production layout); the broker alone is
// killed. What the runs showed: after the outage librdkafka's consumer rejoins and the coordinator
// fences its static membership (FENCED_INSTANCE_ID, librdkafka issue 3437: its rejoin races a request
// that still carries the old member id), which librdkafka makes fatal to the consumer; the processor
// exits naming it and the test restarts it, as an orchestrator would. The recovery is then the new
// process's, and exactly-once must hold across all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_stopped_for_forty_seconds_mid_transaction_loses_and_duplicates_nothing() {
    // Dropped last: stops the stack and deletes its folder even when an assertion fails.
    let own = Arc::new(TempStack::with_split_kafka());
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
    let mut processor = world.start_processor_with("a", &settings);
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
    // Catch up, restarting the processor when it exits (an orchestrator's job) for the reason the runs
    // showed, once or twice at most; then stay up and caught up for longer than a session timeout (a
    // late fence is caught too).
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut restarts: Vec<String> = Vec::new();
    let mut settled: Option<Instant> = None;
    while settled.is_none_or(|since| since.elapsed() < Duration::from_secs(10)) {
        assert!(
            Instant::now() < deadline,
            "the processor did not catch up: lag {}",
            world.lag()
        );
        if let Some(status) = processor.try_exit().unwrap_or_else(|e| panic!("{e}")) {
            let log = processor.log();
            let last = log
                .lines()
                .rev()
                .find(|l| l.contains("service failed"))
                .unwrap_or_default()
                .to_string();
            assert!(
                !status.success()
                    && last.contains("the consumer cannot go on: its group instance was fenced"),
                "the processor stopped ({status:?}) for another reason than the fence after an outage:\n{}",
                &log[log.len().saturating_sub(3000)..]
            );
            restarts.push(last);
            assert!(
                restarts.len() <= 2,
                "restarted again and again: {restarts:#?}"
            );
            processor = world.start_processor_with("a", &settings);
            settled = None;
        }
        if settled.is_none() && world.lag() == 0 {
            settled = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("restarts after the outage: {restarts:#?}");
    verify_inventory(&world, &load).await;
    // Ready again once the broker is back: the processor that saw the outage, or (when the fence made
    // it exit) the one started after it.
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

//! Exactly once through rebalances: a second processor instance joins mid-run (partitions move, state
//! is dropped and restored), then the first one leaves (its partitions move to the second). The same
//! invariants as after crashes hold.

mod common;

use std::time::{Duration, Instant};

use causeway_testcontainers::process::ServiceProcess;
use common::{World, stock_load, verify_inventory};

/// Small transactions keep the run long enough for both rebalances to land mid-run.
const SLOW: [(&str, &str); 1] = [("CAUSEWAY__PROCESSOR__MAX_BATCH_RECORDS", "20")];

fn wait_for_log(p: &ServiceProcess, what: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while p.log().matches(what).count() < times {
        assert!(
            Instant::now() < deadline,
            "no {what:?} {times} times in:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_joining_and_one_leaving_lose_and_duplicate_nothing() {
    let world = World::new(4).await;
    let load = stock_load(300, 200);
    let total = i64::try_from(load.len()).unwrap_or(0);
    world.send_many("inventory", &load).await;

    let first = world.start_processor_with("a", &SLOW);
    world.wait_lag_at_most(total * 9 / 10, Duration::from_secs(600));
    let second = world.start_processor_with("b", &SLOW);
    // The join is a rebalance: the first gives its partitions up, the second restores its share.
    wait_for_log(&first, "partitions revoked", 1);
    wait_for_log(&second, "state restored", 1);
    let lag = world.lag();
    assert!(
        lag > 0,
        "the run ended before the second instance joined; nothing was tested"
    );

    let status = first
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");
    // The first left: after its session the second takes its partitions over and restores them.
    wait_for_log(&second, "state restored", 2);
    assert!(
        world.lag() > 0,
        "the run ended before the first instance left; nothing was tested"
    );
    world.wait_caught_up(Duration::from_secs(600));
    let status = second
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");

    verify_inventory(&world, &load).await;
}

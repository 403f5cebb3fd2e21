//! Exactly once through rebalances: a second processor instance joins mid-run (partitions move, state
//! is dropped and restored), then the first one leaves (its partitions move to the second). The same
//! invariants as after crashes hold.

mod common;

use std::time::Duration;

use common::{World, stock_load, verify_inventory};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_joining_and_one_leaving_lose_and_duplicate_nothing() {
    let world = World::new(4).await;
    let load = stock_load(300, 200);
    let total = i64::try_from(load.len()).unwrap_or(0);
    world.send_many("inventory", &load).await;

    let first = world.start_processor("a");
    world.wait_lag_at_most(total * 3 / 4, Duration::from_secs(600));
    let second = world.start_processor("b");
    world.wait_lag_at_most(total * 2 / 5, Duration::from_secs(600));
    let log = first.log();
    let status = first
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");
    assert!(
        log.contains("partitions revoked"),
        "the first instance gave partitions up when the second joined:\n{log}"
    );
    world.wait_caught_up(Duration::from_secs(600));
    let log = second.log();
    let status = second
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");
    assert!(
        log.matches("state restored").count() >= 2,
        "the second instance restored state when it joined and when the first left:\n{log}"
    );

    verify_inventory(&world, &load).await;
}

//! Exactly once through crashes: 100,000 commands over 500 aggregates, the processor killed with
//! SIGKILL several times mid-run and restarted. Afterwards every command has exactly one result,
//! every aggregate's event versions run 1..n with no gap and no duplicate, and the state rebuilt from
//! the events equals the changelog's, and the accepted results match the events one by one. The last
//! kill is followed by an instance of another identity (another transactional id): the killed one's open
//! transaction is not aborted by a restart but by the broker's transaction timeout, and its partitions
//! move over only when its session expires.

mod common;

use std::time::Duration;

use common::{World, stock_load, verify_inventory};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_loses_and_duplicates_nothing() {
    let world = World::new(4).await;
    let load = stock_load(500, 200);
    let total = i64::try_from(load.len()).unwrap_or(0);
    let started = std::time::Instant::now();
    world.send_many("inventory", &load).await;
    eprintln!("sent {total} commands in {:?}", started.elapsed());

    let mut processor = world.start_processor("a");
    for (fraction, next) in [(0.8, "a"), (0.55, "a"), (0.3, "b")] {
        // Kill once the remaining lag falls below this fraction of the load.
        world.wait_lag_at_most((total as f64 * fraction) as i64, Duration::from_secs(600));
        eprintln!("lag below {fraction} after {:?}", started.elapsed());
        let status = processor.kill().unwrap_or_else(|e| panic!("{e}"));
        assert!(!status.success(), "killed, not exited: {status:?}");
        processor = world.start_processor(next);
    }
    world.wait_caught_up(Duration::from_secs(600));
    eprintln!("caught up after {:?}", started.elapsed());
    let status = processor
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");

    verify_inventory(&world, &load).await;
    eprintln!("verified after {:?}", started.elapsed());
}

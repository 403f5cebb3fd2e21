//! The schema registry failing while commands flow: unreachable (connections closed at once), then
//! answering 500, then 401, for 30 s each, through a fault-injecting proxy in front of the real
//! registry. Each phase brings a command type (and an event type) the processor has not seen, so it
//! must ask the registry. Nothing is dead-lettered, nothing is lost or applied twice, `/readyz` turns
//! 503 while no batch commits and back to 200 after, `/healthz` stays 200, and the processor catches up
//! once the registry answers again (a failure is never cached).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use causeway_orders::contracts::inventory::{
    AddStock, CommitReservation, ReleaseReservation, ReserveStock,
};
use causeway_testcontainers::faulty::{FaultyProxy, Mode};
use causeway_testcontainers::process::ServiceProcess;
use causeway_testcontainers::stack;
use common::{StockCommand, World, verify_inventory};

const PHASE: Duration = Duration::from_secs(30);

/// Poll `/readyz` and `/healthz` for `PHASE`; whether `/readyz` answered 503 at some point and
/// `/healthz` 200 throughout.
fn watch_phase(processor: &ServiceProcess) -> (bool, bool) {
    let end = Instant::now() + PHASE;
    let (mut unready, mut healthy) = (false, true);
    while Instant::now() < end {
        if let Ok((status, _)) = processor.get("/readyz") {
            unready |= status == 503;
        }
        if let Ok((status, _)) = processor.get("/healthz") {
            healthy &= status == 200;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    (unready, healthy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_unreachable_then_500_then_401_loses_and_dead_letters_nothing() {
    let world = World::new(2).await;
    let registry: SocketAddr = stack()
        .registry_url
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultyProxy::start(registry).unwrap_or_else(|e| panic!("{e}"));
    let url = proxy.url();
    let processor = world.start_processor_with(
        "a",
        &[
            ("CAUSEWAY__PROCESSOR__REGISTRY_URL", url.as_str()),
            ("CAUSEWAY__PROCESSOR__STALL_READY_MS", "2000"),
            ("CAUSEWAY__PROCESSOR__STALL_HEALTH_MS", "600000"),
        ],
    );
    let skus = 10;
    let sku = |s: usize| format!("sku-{s}");
    let mut load: Vec<(&'static str, String, StockCommand)> = Vec::new();
    // Warm up: the processor has AddStock's schemas.
    let adds: Vec<_> = (0..skus)
        .map(|s| {
            let c = AddStock {
                command_id: format!("add-{s}"),
                sku: sku(s),
                quantity: 10,
                ..AddStock::default()
            };
            ("AddStock", sku(s), StockCommand::Add(c))
        })
        .collect();
    world.send_many("inventory", &adds).await;
    load.extend(adds);
    world.wait_caught_up(Duration::from_secs(60));

    let phases: [(Mode, &str); 3] = [
        (Mode::Refuse, "unreachable"),
        (
            Mode::Answer {
                status: 500,
                body: r#"{"error_code":50001,"message":"injected failure"}"#.into(),
            },
            "500",
        ),
        (
            Mode::Answer {
                status: 401,
                body: r#"{"error_code":40101,"message":"injected: unauthorized"}"#.into(),
            },
            "401",
        ),
    ];
    for (i, (mode, name)) in phases.into_iter().enumerate() {
        proxy.set(mode);
        let commands: Vec<(&'static str, String, StockCommand)> = (0..skus)
            .map(|s| {
                let command_id = format!("{name}-{s}");
                let order_id = format!("order-{s}");
                let (record, command) = match i {
                    0 => (
                        "ReserveStock",
                        StockCommand::Reserve(ReserveStock {
                            command_id,
                            sku: sku(s),
                            order_id,
                            quantity: 2,
                            ..ReserveStock::default()
                        }),
                    ),
                    1 if s % 2 == 0 => (
                        "ReleaseReservation",
                        StockCommand::Release(ReleaseReservation {
                            command_id,
                            sku: sku(s),
                            order_id,
                            ..ReleaseReservation::default()
                        }),
                    ),
                    _ => (
                        "CommitReservation",
                        StockCommand::Commit(CommitReservation {
                            command_id,
                            sku: sku(s),
                            order_id,
                            ..CommitReservation::default()
                        }),
                    ),
                };
                (record, sku(s), command)
            })
            .collect();
        world.send_many("inventory", &commands).await;
        load.extend(commands);
        let (unready, healthy) = watch_phase(&processor);
        assert!(
            unready,
            "registry {name}: /readyz never answered 503 although no batch could commit"
        );
        assert!(
            healthy,
            "registry {name}: /healthz failed within stall_health_ms"
        );
        assert!(
            world.lag() > 0,
            "registry {name}: the commands were processed without the registry"
        );
    }
    proxy.set(Mode::Pass);
    world.wait_caught_up(Duration::from_secs(120));
    let deadline = Instant::now() + Duration::from_secs(30);
    while processor.get("/readyz").map(|(s, _)| s).unwrap_or(0) != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready again after the registry came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        world.read_raw(&world.dlq_topic).is_empty(),
        "a registry failure dead-lettered a command"
    );
    verify_inventory(&world, &load).await;
    let status = processor
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");
}

//! ClickHouse stopped (SIGKILL) for 30 s while events keep coming, then started again on its data as an
//! orchestrator would: the projector retries with backoff, reports not ready, resumes, and ends with
//! one row per event and exact documents, with no dead letter. Runs on a stack of its own.

#[path = "../../projector-redis/tests/common/events.rs"]
mod events;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_testcontainers::native::TempStack;
use events::{World, inventory_events};
use projector_clickhouse::config::ClickHouseConfig;
use projector_clickhouse::{sink, tables};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_stopped_for_thirty_seconds_loses_and_doubles_nothing() {
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
    let service = world.start_service(
        Path::new(env!("CARGO_BIN_EXE_projector-clickhouse")),
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/projector-clickhouse.toml"
        )),
        &[
            (
                "CAUSEWAY__CLICKHOUSE__URL",
                endpoints.clickhouse_url.as_str(),
            ),
            ("CAUSEWAY__CONSUMER__RETRY_MAX_MS", "2000"),
        ],
    );

    own.kill("clickhouse");
    let stopped = Instant::now();
    world.send(&topic, rest).await;
    let mut unready = false;
    while stopped.elapsed() < Duration::from_secs(30) {
        if let Ok((503, _)) = service.get("/readyz") {
            unready = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(unready, "/readyz stayed 200 while ClickHouse was away");
    {
        let own = Arc::clone(&own);
        tokio::task::spawn_blocking(move || own.restart())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    let client = sink::client(&ClickHouseConfig {
        url: endpoints.clickhouse_url.clone(),
        ..ClickHouseConfig::default()
    });
    let prefix = world.prefix.replace('-', "_");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = tables::fetch_json_rows(
            &client,
            &format!("SELECT count() AS n FROM {prefix}_events FINAL"),
        )
        .await
        .ok()
        .and_then(|rows| {
            let v = rows.first()?.get("n")?.clone();
            v.as_u64().or_else(|| v.as_str()?.parse().ok())
        })
        .unwrap_or(0);
        let docs = tables::fetch_json_rows(
            &client,
            &format!("SELECT id, version, reserved FROM {prefix}_stock_by_sku_g1 FINAL"),
        )
        .await
        .unwrap_or_default();
        let exact = docs.len() == expected.len()
            && docs.iter().all(|row| {
                let id = row.get("id").and_then(|v| v.as_str()).unwrap_or_default();
                let version = row
                    .get("version")
                    .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
                let reserved = row.get("reserved").and_then(|v| v.as_str());
                expected
                    .get(id)
                    .is_some_and(|d| Some(d.version) == version && d.field("reserved") == reserved)
            });
        if usize::try_from(n).unwrap_or(0) == records.len() && exact {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the outage: {n} of {} events, documents exact: {exact}",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, _) = service.get("/readyz").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "ready again once ClickHouse is back");
    assert!(
        world.dead_letters(0).is_empty(),
        "no dead letter for an outage"
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

//! Both projectors, while events keep coming: ClickHouse stopped (SIGKILL) for 30 s, then Redis stopped
//! for 30 s, each started again on its data as an orchestrator would. Each projector pauses, retries
//! with growing waits, reports not ready, resumes, and ends exact (Redis documents; ClickHouse one row
//! per event and exact documents), with no dead letter. Runs on a stack of its own, whose stores it
//! kills.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_core::projection::Document;
use causeway_testcontainers::native::TempStack;
use causeway_testcontainers::process::ServiceProcess;
use common::{World, events, inventory_events};
use projector_clickhouse::config::ClickHouseConfig;
use projector_clickhouse::{sink, tables};

/// Watch `service` for `outage`: whether its `/readyz` answered 503 at least once, and the largest
/// lag in seconds its metrics reported meanwhile.
async fn unready_during(service: &ServiceProcess, outage: Duration) -> (bool, f64) {
    let stopped = Instant::now();
    let mut unready = false;
    let mut lag = 0f64;
    while stopped.elapsed() < outage {
        if let Ok((503, _)) = service.get("/readyz") {
            unready = true;
        }
        if let Ok((200, metrics)) = service.get("/metrics") {
            lag = metrics
                .lines()
                .filter(|l| l.starts_with("causeway_consumer_lag_seconds{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .fold(lag, f64::max);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (unready, lag)
}

/// The (attempt, wait in ms) of `service`'s retries, in the order it logged them.
fn retry_waits(service: &ServiceProcess) -> Vec<(u32, u64)> {
    let field = |line: &str, name: &str| -> Option<u64> {
        let key = format!("\"{name}\":");
        let at = line.find(&key)? + key.len();
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    service
        .log()
        .lines()
        .filter(|l| l.contains("transient failure; retrying"))
        .filter_map(|l| {
            Some((
                u32::try_from(field(l, "attempt")?).ok()?,
                field(l, "wait_ms")?,
            ))
        })
        .collect()
}

/// Wait until ClickHouse holds `events` distinct events and the stock-by-sku documents of `expected`.
async fn wait_clickhouse(
    url: &str,
    prefix: &str,
    events: usize,
    expected: &BTreeMap<String, Document>,
) {
    let client = &sink::client(&ClickHouseConfig {
        url: url.to_string(),
        ..ClickHouseConfig::default()
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = tables::fetch_json_rows(
            client,
            &format!("SELECT count() AS n FROM {prefix}_events FINAL"),
        )
        .await
        .ok()
        .and_then(|rows| tables::json_i64(rows.first()?, "n"))
        .unwrap_or(0);
        let docs = tables::fetch_json_rows(client, &format!("SELECT * FROM {prefix}_stock_by_sku"))
            .await
            .unwrap_or_default();
        let exact = docs.len() == expected.len()
            && docs.iter().all(|row| {
                let id = row.get("id").and_then(|v| v.as_str()).unwrap_or_default();
                expected.get(id).is_some_and(|d| {
                    Some(d.version) == tables::json_i64(row, "version")
                        && Some(d.event_time_ms) == tables::json_i64(row, "event_time_ms")
                        && d.fields
                            .iter()
                            .all(|(k, v)| row.get(*k).and_then(|c| c.as_str()) == Some(v.as_str()))
                })
            });
        if usize::try_from(n).unwrap_or(0) == events && exact {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after the outages: {n} of {events} events in ClickHouse, documents exact: {exact}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_then_redis_stopped_thirty_seconds_each_under_traffic_lose_and_double_nothing() {
    // Dropped last: stops the stack and deletes its folder (kept when the test fails).
    let own = Arc::new(TempStack::new());
    let endpoints = {
        let own = Arc::clone(&own);
        tokio::task::spawn_blocking(move || own.up())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let world = World::on(&endpoints, 3).await;
    let (records, expected) = inventory_events(&world, 100, 60).await;
    let topic = world.topic("inventory");
    let (first, rest) = records.split_at(records.len() / 4);
    world.send(&topic, first).await;
    let retries = ("CAUSEWAY__CONSUMER__RETRY_MAX_MS", "2000");
    let redis_projector = world.start_with(&[retries]);
    let clickhouse_group = format!("{}-clickhouse", world.group);
    let clickhouse_bin = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("projector-clickhouse")))
        .unwrap_or_else(|| panic!("no target directory above the test"));
    let clickhouse_projector = world.start_service(
        &clickhouse_bin,
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../projector-clickhouse/projector-clickhouse.toml"
        )),
        &[
            (
                "CAUSEWAY__CLICKHOUSE__URL",
                endpoints.clickhouse_url.as_str(),
            ),
            ("CAUSEWAY__PROJECTOR__GROUP_ID", clickhouse_group.as_str()),
            retries,
        ],
    );
    // Events keep coming through both outages (about 70 s).
    let traffic = {
        let chunks: Vec<Vec<(String, Vec<u8>)>> = rest.chunks(25).map(<[_]>::to_vec).collect();
        let producer = world.producer_handle();
        let topic = topic.clone();
        tokio::spawn(async move {
            for chunk in chunks {
                events::send_with(&producer, &topic, &chunk).await;
                tokio::time::sleep(Duration::from_millis(380)).await;
            }
        })
    };
    let restart = |own: &Arc<TempStack>| {
        let own = Arc::clone(own);
        tokio::task::spawn_blocking(move || own.restart())
    };

    own.kill("clickhouse");
    let (clickhouse_unready, clickhouse_lag) =
        unready_during(&clickhouse_projector, Duration::from_secs(30)).await;
    restart(&own).await.unwrap_or_else(|e| panic!("{e}"));
    own.kill("redis");
    let (redis_unready, redis_lag) =
        unready_during(&redis_projector, Duration::from_secs(30)).await;
    restart(&own).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !traffic.is_finished(),
        "the events stopped before the second outage ended: the test proves less than it says"
    );
    traffic.await.unwrap_or_else(|e| panic!("{e}"));

    assert!(
        clickhouse_unready,
        "projector-clickhouse's /readyz stayed 200 while ClickHouse was away"
    );
    assert!(
        redis_unready,
        "projector-redis's /readyz stayed 200 while Redis was away"
    );
    // While a batch is retried its records still wait: the lag in seconds grows through the outage
    // (the stuck-consumer alert reads it), instead of staying where it was when the store went away.
    for (name, lag) in [
        ("projector-clickhouse", clickhouse_lag),
        ("projector-redis", redis_lag),
    ] {
        assert!(
            lag >= 15.0,
            "{name}'s lag in seconds reached only {lag} during a 30 s outage under traffic"
        );
    }
    world.wait_documents("stock-by-sku", &expected).await;
    wait_clickhouse(
        &endpoints.clickhouse_url,
        &world.prefix.replace('-', "_"),
        records.len(),
        &expected,
    )
    .await;
    for (name, service) in [
        ("projector-redis", &redis_projector),
        ("projector-clickhouse", &clickhouse_projector),
    ] {
        let (status, _) = service.get("/readyz").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 200, "{name} ready again once its store is back");
        // Backoff: attempt n waits between half and all of 100 ms doubled n - 1 times, capped at
        // 2 s; the outage lasted long enough to reach the cap.
        let waits = retry_waits(service);
        let band = |attempt: u32| {
            let exp = (100u64 << attempt.saturating_sub(1).min(20)).min(2000);
            (exp / 2)..=exp
        };
        assert!(
            waits.iter().all(|(a, w)| band(*a).contains(w)) && waits.iter().any(|(a, _)| *a >= 6),
            "{name} retried with waits growing to the cap: {waits:?}"
        );
    }
    assert!(
        world.dead_letters(0).is_empty(),
        "projector-redis wrote no dead letter for an outage"
    );
    assert!(
        world.dead_letters_of(&clickhouse_group, 0).is_empty(),
        "projector-clickhouse wrote no dead letter for an outage"
    );
    for service in [redis_projector, clickhouse_projector] {
        let exit = service
            .terminate(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(exit.success(), "{exit}");
    }
    drop(world);
    tokio::task::spawn_blocking(move || drop(own))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

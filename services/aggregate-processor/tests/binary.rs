//! The `aggregate-processor` binary as a process against the test stack: with its sample config
//! (pointed at topics of its own) it starts, reports ready once its partitions are restored, stops on
//! SIGTERM with exit 0; it refuses bad config naming the key, an unknown aggregate type included.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use causeway_testcontainers::process::{assert_refuses_bad_config, assert_service_lifecycle};
use common::{BIN, SAMPLE, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_its_sample_config_reports_ready_and_stops_on_sigterm() {
    let world = World::new(1).await;
    let env = world.env("lifecycle");
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_service_lifecycle(Path::new(BIN), Path::new(SAMPLE), &env)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Readiness paces a rolling update: an instance is ready when it processes commands, that is once
/// the group assigned it partitions and their state is restored, not as soon as it subscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_ready_once_its_assignment_is_restored() {
    let world = World::new(2).await;
    let processor = world.start_processor("ready");
    let log = processor.log();
    let restored = log
        .find("state restored; partitions resumed")
        .unwrap_or_else(|| panic!("ready before any state was restored. Its log:\n{log}"));
    let ready = log
        .find("processor ready")
        .unwrap_or_else(|| panic!("no readiness in the log. Its log:\n{log}"));
    assert!(restored < ready, "{log}");
    processor
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn refuses_bad_config_naming_the_key() {
    assert_refuses_bad_config(Path::new(BIN), Path::new(SAMPLE));
}

#[test]
fn refuses_an_aggregate_type_it_does_not_host() {
    let out = Command::new(BIN)
        .args(["--config", SAMPLE, "--check-config"])
        .env("CAUSEWAY__PROCESSOR__AGGREGATES", r#"["order", "refund"]"#)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("processor.aggregates") && stderr.contains("\"refund\""),
        "{stderr}"
    );
}

/// The dashboards' lag: per group and command partition, in records and in seconds, as the processor
/// sees it (librdkafka's statistics against the position its transactions committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_its_lag_per_partition_in_records_and_seconds() {
    let world = World::new(2).await;
    let load = common::stock_load(20, 5);
    world.send_many("inventory", &load).await;
    let processor = world.start_processor("lag");
    world.wait_caught_up(Duration::from_secs(60));
    let topic = world.topic("inventory", "commands");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = processor.get("/metrics").unwrap_or_else(|e| panic!("{e}"));
        let series = |name: &str| -> Vec<String> {
            metrics
                .lines()
                .filter(|l| {
                    l.starts_with(&format!("{name}{{"))
                        && l.contains(&format!("group=\"{}\"", world.group))
                        && l.contains(&format!("topic=\"{topic}\""))
                })
                .map(str::to_string)
                .collect()
        };
        let records = series("causeway_consumer_lag_records");
        let seconds = series("causeway_consumer_lag_seconds");
        let caught_up =
            |lines: &[String]| lines.len() == 2 && lines.iter().all(|l| l.ends_with(" 0"));
        if caught_up(&records) && caught_up(&seconds) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no lag of 0 on both partitions of {topic}: {records:?} {seconds:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    processor
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
}

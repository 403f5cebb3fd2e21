//! The `saga-orchestrator` binary as a process against the test stack: with its sample config (pointed
//! at topics of its own) it starts, reports ready once its partitions are restored, stops on SIGTERM with
//! exit 0; it refuses bad config naming the key, a saga or deadline the domain does not have included.

#[path = "../../aggregate-processor/tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;
use std::process::Command;

use causeway_testcontainers::process::{assert_refuses_bad_config, assert_service_lifecycle};
use support::{BIN, SAMPLE, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_its_sample_config_reports_ready_and_stops_on_sigterm() {
    let world = World::new(1).await;
    let env = support::env(&world, "lifecycle");
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_service_lifecycle(Path::new(BIN), Path::new(SAMPLE), &env)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn refuses_bad_config_naming_the_key() {
    assert_refuses_bad_config(Path::new(BIN), Path::new(SAMPLE));
}

#[test]
fn refuses_a_saga_or_a_deadline_the_domain_does_not_have() {
    for (key, value, named) in [
        ("CAUSEWAY__SAGAS__NAMES", r#"["refund"]"#, "sagas.names"),
        (
            "CAUSEWAY__SAGAS__DEADLINES_MS__lunch",
            "5000",
            "sagas.deadlines_ms.lunch",
        ),
        (
            "CAUSEWAY__PROCESSOR__AGGREGATES",
            r#"["order"]"#,
            "processor.aggregates",
        ),
        (
            "CAUSEWAY__SAGAS__RETRY_MAX_ATTEMPTS",
            "0",
            "sagas.retry_max_attempts",
        ),
        (
            "CAUSEWAY__SAGAS__RETRY_INITIAL_MS",
            "9223372036854775807",
            "sagas.retry_initial_ms",
        ),
        (
            "CAUSEWAY__SAGAS__NAMES",
            r#"["order-fulfilment", "order-fulfilment"]"#,
            "named twice",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["--config", SAMPLE, "--check-config"])
            .env(key, value)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {stderr}");
        assert!(stderr.contains(named), "{key}: {stderr}");
    }
}

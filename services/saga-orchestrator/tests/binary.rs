//! The `saga-orchestrator` binary as a process against the test stack.

use std::path::Path;

use causeway_testcontainers::process::{assert_refuses_bad_config, assert_service_lifecycle};
use causeway_testcontainers::stack;

const BIN: &str = env!("CARGO_BIN_EXE_saga-orchestrator");
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/saga-orchestrator.toml");

#[test]
fn starts_with_its_sample_config_reports_ready_and_stops_on_sigterm() {
    let s = stack();
    let env = [(
        "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
        s.kafka_bootstrap.as_str(),
    )];
    assert_service_lifecycle(Path::new(BIN), Path::new(SAMPLE), &env);
}

#[test]
fn refuses_bad_config_naming_the_key() {
    assert_refuses_bad_config(Path::new(BIN), Path::new(SAMPLE));
}

//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, a service exports spans over OTLP; a collector that is not
//! there must neither stop it from becoming ready nor hold up its exit on SIGTERM.

use std::path::Path;
use std::time::Duration;

use causeway_testcontainers::process::{ServiceProcess, free_port};
use causeway_testcontainers::stack;

#[test]
fn an_unreachable_collector_does_not_block_start_or_stop() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let api = format!("127.0.0.1:{}", free_port());
    let env = [
        ("CAUSEWAY__HTTP__LISTEN", api.as_str()),
        (
            "CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS",
            stack().kafka_bootstrap.as_str(),
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_EXPORT_TIMEOUT", "1000"),
    ];
    let mut service = ServiceProcess::start(
        Path::new(env!("CARGO_BIN_EXE_command-gateway")),
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/command-gateway.toml")),
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    service
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let log = service.log();
    assert!(
        log.contains(r#""otlp":true"#),
        "the service did not turn OTLP export on:\n{log}"
    );
    let exit = service
        .terminate(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(exit.success(), "{exit}");
}

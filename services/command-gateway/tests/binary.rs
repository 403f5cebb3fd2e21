//! The `command-gateway` binary as a process against the test stack: it starts with its sample config
//! (its API on a port of its own, the domain's topics provisioned first), reports ready, stops on
//! SIGTERM with exit 0, and refuses bad config naming the key.

mod common;

use causeway_testcontainers::Stack;
use causeway_testcontainers::process::free_port;

/// The registry of `s`, once the topics and contracts the sample config serves are there (this test
/// does not lean on another having provisioned them).
fn provisioned(s: &Stack) -> String {
    tokio::runtime::Runtime::new()
        .unwrap_or_else(|e| panic!("{e}"))
        .block_on(common::provision(&s.kafka_bootstrap, &s.registry_url));
    s.registry_url.clone()
}

causeway_testcontainers::service_binary_tests!(
    "command-gateway",
    "CAUSEWAY__HTTP__LISTEN" => |_: &Stack| format!("127.0.0.1:{}", free_port()),
    "CAUSEWAY__GATEWAY__REGISTRY_URL" => provisioned,
);

/// A results topic that is not in the cluster stops the gateway at start, naming the topic and the
/// command that creates it (exit 1), instead of serving status lookups that could never answer.
#[test]
fn a_missing_results_topic_stops_the_gateway_naming_it() {
    let s = causeway_testcontainers::stack();
    let topic = causeway_testcontainers::unique("no-such-results");
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let (status, _, stderr) = causeway_testcontainers::process::run_to_exit(
        std::process::Command::new(env!("CARGO_BIN_EXE_command-gateway"))
            .arg("--config")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/command-gateway.toml"))
            .env("CAUSEWAY__HTTP__LISTEN", &listen)
            .env("CAUSEWAY__ADMIN__LISTEN", &admin)
            .env("CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS", &s.kafka_bootstrap)
            .env("CAUSEWAY__GATEWAY__REGISTRY_URL", &s.registry_url)
            .env("CAUSEWAY__GATEWAY__RESULTS_TOPIC", &topic),
        std::time::Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("the results topic \"{topic}\" does not exist"))
            && stderr.contains("causeway topics apply"),
        "{stderr}"
    );
}

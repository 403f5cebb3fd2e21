//! The `projector-redis` binary as a process against the test stack: it starts with its sample config
//! (hosting every projection of the orders domain, on event topics of a context of its own), reports
//! ready, stops on SIGTERM with exit 0, refuses bad config naming the key, and stops naming an event
//! topic that does not exist.

use std::time::Duration;

use causeway_kafka::KafkaConfig;
use causeway_kafka::topology::{self, Topology};
use causeway_testcontainers::Stack;
use causeway_testcontainers::process::{free_port, run_to_exit};

/// A context of its own with the orders domain's event topics.
fn provisioned(s: &Stack) -> String {
    let context = causeway_testcontainers::unique("bin");
    let mut toml = String::from("[defaults]\npartitions = 1\nreplication_factor = 1\n");
    for aggregate in ["order", "inventory", "payment"] {
        toml += &format!("[[topic]]\nname = \"{context}.{aggregate}.events\"\n");
    }
    let topology = Topology::parse(&toml, "test").unwrap_or_else(|e| panic!("{e}"));
    let kafka = KafkaConfig::for_servers(s.kafka_bootstrap.clone());
    tokio::runtime::Runtime::new()
        .unwrap_or_else(|e| panic!("{e}"))
        .block_on(topology::apply(
            &kafka,
            &topology,
            false,
            Duration::from_secs(30),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    context
}

causeway_testcontainers::service_binary_tests!(
    "projector-redis",
    "CAUSEWAY__REDIS__URL" => |s: &Stack| s.redis_url.clone(),
    "CAUSEWAY__HTTP__LISTEN" => |_: &Stack| format!("127.0.0.1:{}", free_port()),
    "CAUSEWAY__PROJECTOR__REGISTRY_URL" => |s: &Stack| s.registry_url.clone(),
    "CAUSEWAY__PROJECTOR__GROUP_ID" => |_: &Stack| causeway_testcontainers::unique("projector-redis"),
    "CAUSEWAY__PROJECTOR__CONTEXT" => provisioned,
);

#[test]
fn a_missing_event_topic_stops_it_naming_the_topic() {
    let s = causeway_testcontainers::stack();
    let context = causeway_testcontainers::unique("none");
    let (status, _, stderr) = run_to_exit(
        std::process::Command::new(env!("CARGO_BIN_EXE_projector-redis"))
            .arg("--config")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/projector-redis.toml"))
            .env(
                "CAUSEWAY__ADMIN__LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env(
                "CAUSEWAY__HTTP__LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("CAUSEWAY__KAFKA__BOOTSTRAP_SERVERS", &s.kafka_bootstrap)
            .env("CAUSEWAY__REDIS__URL", &s.redis_url)
            .env("CAUSEWAY__PROJECTOR__CONTEXT", &context),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("topic {context}.inventory.events does not exist"))
            && stderr.contains("causeway topics apply"),
        "{stderr}"
    );
}

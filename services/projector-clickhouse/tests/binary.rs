//! The `projector-clickhouse` binary as a process against the test stack: it starts with its sample
//! config (the orders domain, on event topics of a context of its own), creates its tables, reports
//! ready, stops on SIGTERM with exit 0, and refuses bad config naming the key.

use std::time::Duration;

use causeway_kafka::KafkaConfig;
use causeway_kafka::topology::{self, Topology};
use causeway_testcontainers::Stack;

/// A context of its own with the orders domain's event topics.
fn provisioned(s: &Stack) -> String {
    let context = causeway_testcontainers::unique("chbin");
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
    "projector-clickhouse",
    "CAUSEWAY__CLICKHOUSE__URL" => |s: &Stack| s.clickhouse_url.clone(),
    "CAUSEWAY__PROJECTOR__REGISTRY_URL" => |s: &Stack| s.registry_url.clone(),
    "CAUSEWAY__PROJECTOR__GROUP_ID" => |_: &Stack| causeway_testcontainers::unique("projector-clickhouse"),
    "CAUSEWAY__PROJECTOR__PREFIX" => |_: &Stack| causeway_testcontainers::unique("bin").replace('-', "_"),
    "CAUSEWAY__PROJECTOR__CONTEXT" => provisioned,
);

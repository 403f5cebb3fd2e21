//! What the gateway's tests share: the topics and contracts of the domain it hosts, provisioned as
//! `make demo` does, on whichever stack a test runs against. Each test provisions for itself, so none
//! leans on another having run first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_contracts::catalog::Catalog;
use causeway_contracts::registry::RegistryClient;
use causeway_kafka::KafkaConfig;
use causeway_kafka::topology::{self, Topology};

/// A path in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Create the topics of the orders domain (replication 1: a single broker) and register the
/// contracts; both are idempotent. The Kafka configuration of those servers.
pub async fn provision(kafka_bootstrap: &str, registry_url: &str) -> KafkaConfig {
    let kafka = KafkaConfig::for_servers(kafka_bootstrap.to_string());
    let mut topology =
        Topology::load(&repo("domains/orders/topology.toml")).unwrap_or_else(|e| panic!("{e}"));
    topology.defaults.replication_factor = 1;
    topology::apply(&kafka, &topology, false, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let catalog = Catalog::load(&repo("avro")).unwrap_or_else(|e| panic!("{e}"));
    RegistryClient::new(registry_url)
        .register_catalog(&catalog, |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    kafka
}

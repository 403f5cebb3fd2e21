//! Interoperability with a client not written here: Confluent's own Python client (SchemaRegistryClient,
//! AvroSerializer/AvroDeserializer, Producer/Consumer) against the registry of the test stack and its
//! Kafka. The script checks every answer itself and fails with the reason.

use std::process::Command;
use std::time::Duration;

use causeway_kafka::KafkaConfig;
use causeway_kafka::topology::{self, Topology};
use causeway_testcontainers::native::{python, python_script};
use causeway_testcontainers::process::run_to_exit;
use causeway_testcontainers::{stack, unique};

#[tokio::test(flavor = "multi_thread")]
async fn confluents_python_client_registers_serializes_and_reads_back() {
    let s = stack();
    let topic = unique("interop");
    let declared = format!(
        "[defaults]\npartitions = 1\nreplication_factor = 1\n[[topic]]\nname = \"{topic}\"\n"
    );
    let topology = Topology::parse(&declared, "test").unwrap_or_else(|e| panic!("{e}"));
    topology::apply(
        &KafkaConfig::for_servers(s.kafka_bootstrap.clone()),
        &topology,
        false,
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let mut command = Command::new(python());
    command
        .arg(python_script("confluent_interop.py"))
        .arg(&s.registry_url)
        .arg(&s.kafka_bootstrap)
        .arg(&topic);
    let (status, out, err) =
        tokio::task::spawn_blocking(move || run_to_exit(&mut command, Duration::from_secs(180)))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        status.success(),
        "the Confluent client saw a difference:\n{err}\n{out}"
    );
    let seen: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(seen["records"], 5, "{seen}");
    assert!(
        seen["incompatible_message"]
            .as_str()
            .is_some_and(|m| m.contains("coupon")),
        "the 409 names the field: {seen}"
    );
}

//! Configuration of `dlq-reprocessor`: a TOML file (sample: `dlq-reprocessor.toml`) plus `CAUSEWAY__SECTION__KEY`
//! environment overrides, loaded by causeway-runtime.

use causeway_kafka::KafkaConfig;
use causeway_runtime::{AdminConfig, Invalid, Validate, service::ServiceConfig};
use serde::{Deserialize, Serialize};

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The admin server (`/metrics`, `/healthz`, `/readyz`).
    pub admin: AdminConfig,
    /// The Kafka cluster.
    pub kafka: KafkaConfig,
}

impl Validate for Config {
    fn validate(&self) -> Vec<Invalid> {
        self.kafka.check("kafka")
    }
}

impl ServiceConfig for Config {
    fn admin(&self) -> &AdminConfig {
        &self.admin
    }
}

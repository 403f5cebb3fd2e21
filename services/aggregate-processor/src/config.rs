//! Configuration of `aggregate-processor`: a TOML file (sample: `aggregate-processor.toml`) plus
//! `CAUSEWAY__SECTION__KEY` environment overrides, loaded by causeway-runtime.

use causeway_kafka::KafkaConfig;
use causeway_kafka::processor::ProcessorConfig;
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
    /// The transactional processor.
    pub processor: ProcessorConfig,
}

impl Validate for Config {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = self.kafka.check("kafka");
        out.extend(self.processor.check("processor"));
        if self.processor.domain.is_empty() {
            return out;
        }
        let domains = causeway_domains::domains();
        let Some(domain) = domains.get(&self.processor.domain) else {
            out.push(Invalid::new(
                "processor.domain",
                format!(
                    "unknown domain {:?}; this build hosts {:?}",
                    self.processor.domain,
                    domains.names()
                ),
            ));
            return out;
        };
        for name in &self.processor.aggregates {
            if domain.aggregate_type(name).is_none() {
                out.push(Invalid::new(
                    "processor.aggregates",
                    format!(
                        "unknown aggregate type {name:?}; domain {:?} has {:?}",
                        domain.name,
                        domain.aggregate_names()
                    ),
                ));
            }
        }
        out
    }
}

impl ServiceConfig for Config {
    fn admin(&self) -> &AdminConfig {
        &self.admin
    }
}

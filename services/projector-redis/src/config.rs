//! Configuration of `projector-redis`: a TOML file (sample: `projector-redis.toml`) plus
//! `CAUSEWAY__SECTION__KEY` environment overrides, loaded by causeway-runtime.

use causeway_kafka::KafkaConfig;
use causeway_kafka::projector::ProjectorConfig;
use causeway_kafka::runner::RunnerConfig;
use causeway_redis::RedisConfig;
use causeway_runtime::{AdminConfig, Invalid, Validate, service::ServiceConfig};
use serde::{Deserialize, Serialize};

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The admin server (`/metrics`, `/healthz`, `/readyz`).
    pub admin: AdminConfig,
    /// The Kafka cluster.
    pub kafka: KafkaConfig,
    /// The Redis server holding the read models.
    pub redis: RedisConfig,
    /// The read API.
    pub http: HttpConfig,
    /// What is projected.
    pub projector: ProjectorConfig,
    /// How the event topics are consumed (batches, retries, dead letters).
    pub consumer: RunnerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            admin: AdminConfig::default(),
            kafka: KafkaConfig::default(),
            redis: RedisConfig::default(),
            http: HttpConfig::default(),
            projector: ProjectorConfig::with_group("projector-redis"),
            consumer: RunnerConfig::default(),
        }
    }
}

/// The read API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the read API.
    pub listen: std::net::SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8083)),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = self.kafka.check("kafka");
        out.extend(self.consumer.check("consumer"));
        out.extend(self.redis.check("redis"));
        let domains = causeway_domains::domains();
        let known: Option<Vec<&str>> = domains
            .get(&self.projector.domain)
            .map(|d| d.projections.iter().map(|p| p.name).collect());
        out.extend(self.projector.check("projector", known.as_deref()));
        out
    }
}

impl ServiceConfig for Config {
    fn admin(&self) -> &AdminConfig {
        &self.admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_named() {
        let c = Config {
            redis: RedisConfig {
                url: "http://nope".into(),
            },
            ..Config::default()
        };
        let keys: Vec<String> = c.validate().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, vec!["redis.url"]);
    }
}

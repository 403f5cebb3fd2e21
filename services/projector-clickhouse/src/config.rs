//! Configuration of `projector-clickhouse`: a TOML file (sample: `projector-clickhouse.toml`) plus
//! `CAUSEWAY__SECTION__KEY` environment overrides, loaded by causeway-runtime.

use causeway_kafka::KafkaConfig;
use causeway_kafka::projector::ProjectorConfig;
use causeway_kafka::runner::RunnerConfig;
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
    /// The ClickHouse server holding the analytics tables.
    pub clickhouse: ClickHouseConfig,
    /// What is projected (`prefix` is the first word of every table name).
    pub projector: ProjectorConfig,
    /// How the event topics are consumed (batches, retries, dead letters).
    pub consumer: RunnerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            admin: AdminConfig::default(),
            kafka: KafkaConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            projector: ProjectorConfig::with_group("projector-clickhouse"),
            // Inserts of thousands of rows.
            consumer: RunnerConfig {
                max_batch_records: 5000,
                max_batch_ms: 200,
                ..RunnerConfig::default()
            },
        }
    }
}

/// Where the analytics tables live.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP interface, e.g. `http://clickhouse:8123`.
    pub url: String,
    /// Database of the tables.
    pub database: String,
    /// User name.
    pub user: String,
    /// Password (never logged).
    pub password: String,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "default".into(),
            user: "default".into(),
            password: String::new(),
        }
    }
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish()
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = self.kafka.check("kafka");
        let url = &self.clickhouse.url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            out.push(Invalid::new(
                "clickhouse.url",
                format!("{url:?} is not an http:// or https:// URL of ClickHouse's HTTP interface"),
            ));
        }
        if self.clickhouse.database.trim().is_empty() {
            out.push(Invalid::new("clickhouse.database", "must not be empty"));
        }
        out.extend(self.consumer.check("consumer"));
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
    fn password_never_shows_and_urls_are_checked() {
        let c = Config {
            clickhouse: ClickHouseConfig {
                url: "tcp://x:9000".into(),
                password: "s3cret".into(),
                ..ClickHouseConfig::default()
            },
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("s3cret"));
        let keys: Vec<String> = c.validate().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, vec!["clickhouse.url"]);
    }
}

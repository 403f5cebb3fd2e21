//! Configuration of `projector-clickhouse`: a TOML file (sample: `projector-clickhouse.toml`) plus
//! `CAUSEWAY__SECTION__KEY` environment overrides, loaded by causeway-runtime.

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
    /// The ClickHouse server holding the analytics tables.
    pub clickhouse: ClickHouseConfig,
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

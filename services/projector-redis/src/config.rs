//! Configuration of `projector-redis`: a TOML file (sample: `projector-redis.toml`) plus
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

/// Where the read models live.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (`rediss://` for TLS). The password is never logged.
    pub url: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

/// `url` with any password replaced, for logs.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:<redacted>{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = self.kafka.check("kafka");
        out.extend(self.consumer.check("consumer"));
        if let Err(e) = redis::Client::open(self.redis.url.as_str()) {
            out.push(Invalid::new("redis.url", format!("not a Redis URL: {e}")));
        }
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
    fn password_never_shows() {
        let c = RedisConfig {
            url: "redis://app:s3cret@cache:6379/2".into(),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("redis://app:<redacted>@cache:6379/2"),
            "{shown}"
        );
    }

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

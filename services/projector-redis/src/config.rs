//! Configuration of `projector-redis`: a TOML file (sample: `projector-redis.toml`) plus
//! `CAUSEWAY__SECTION__KEY` environment overrides, loaded by causeway-runtime.

use causeway_kafka::KafkaConfig;
use causeway_kafka::runner::RunnerConfig;
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
    /// The Redis server holding the read models.
    pub redis: RedisConfig,
    /// The read API.
    pub http: HttpConfig,
    /// What is projected.
    pub projector: ProjectorConfig,
    /// How the event topics are consumed (batches, retries, dead letters).
    pub consumer: RunnerConfig,
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

/// The projections hosted and where their documents live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorConfig {
    /// The domain whose projections are hosted, by the name the build registers it under.
    pub domain: String,
    /// The first segment of the event topics (`<context>.<aggregate>.events`); empty: the domain's name.
    pub context: String,
    /// The projections to host (empty: all of the domain's).
    pub projections: Vec<String>,
    /// The consumer group; dead letters go to `<group_id>.dlq`.
    pub group_id: String,
    /// The schema registry the events were written with.
    pub registry_url: String,
    /// First segment of every Redis key: `<key_prefix>:<projection>:g<generation>:...`.
    pub key_prefix: String,
    /// The generation written (a rebuild writes a new one beside the live one).
    pub generation: u32,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            domain: "orders".into(),
            context: String::new(),
            projections: Vec::new(),
            group_id: "projector-redis".into(),
            registry_url: "http://127.0.0.1:18081".into(),
            key_prefix: "causeway".into(),
            generation: 1,
        }
    }
}

impl ProjectorConfig {
    /// The context in force.
    pub fn context(&self) -> &str {
        if self.context.is_empty() {
            &self.domain
        } else {
            &self.context
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
        if self.projector.group_id.trim().is_empty() {
            out.push(Invalid::new("projector.group_id", "must not be empty"));
        }
        if self.projector.key_prefix.is_empty() || self.projector.key_prefix.contains(':') {
            out.push(Invalid::new(
                "projector.key_prefix",
                "must be a non-empty word without ':'",
            ));
        }
        if self.projector.generation == 0 {
            out.push(Invalid::new("projector.generation", "must be at least 1"));
        }
        let domains = causeway_domains::domains();
        match domains.get(&self.projector.domain) {
            None => out.push(Invalid::new(
                "projector.domain",
                format!(
                    "unknown domain {:?}; this build hosts {:?}",
                    self.projector.domain,
                    domains.names()
                ),
            )),
            Some(domain) => {
                if domain.projections.is_empty() {
                    out.push(Invalid::new(
                        "projector.domain",
                        format!("domain {:?} registers no projection", domain.name),
                    ));
                }
                for name in &self.projector.projections {
                    if domain.projection_type(name).is_none() {
                        out.push(Invalid::new(
                            "projector.projections",
                            format!(
                                "unknown projection {name:?}; domain {:?} has {:?}",
                                domain.name,
                                domain
                                    .projections
                                    .iter()
                                    .map(|p| p.name)
                                    .collect::<Vec<_>>()
                            ),
                        ));
                    }
                }
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

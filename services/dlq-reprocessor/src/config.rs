//! Configuration of `dlq-reprocessor`: a TOML file (sample: `dlq-reprocessor.toml`) plus `CAUSEWAY__SECTION__KEY`
//! environment overrides, loaded by causeway-runtime.

use causeway_kafka::KafkaConfig;
use causeway_kafka::runner::RunnerConfig;
use causeway_redis::RedisConfig;
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
    /// The Redis server holding the index of dead letters.
    pub redis: RedisConfig,
    /// The operator API.
    pub http: HttpConfig,
    /// Which dead letters, and what may be done with them.
    pub dlq: DlqConfig,
    /// Who may use the API.
    pub access: AccessConfig,
    /// How the dead-letter topics are consumed.
    pub consumer: RunnerConfig,
}

/// The operator API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the operator API.
    pub listen: std::net::SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8086)),
        }
    }
}

/// Which dead letters are read, where they are indexed, and the limits of a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DlqConfig {
    /// The reprocessor's own consumer group.
    pub group_id: String,
    /// The dead-letter topics: names, or patterns starting with `^` (librdkafka's regular expressions,
    /// matched again as topics appear).
    pub topics: Vec<String>,
    /// The schema registry, to decode payloads for inspection.
    pub registry_url: String,
    /// Redis keys of the index start with this.
    pub prefix: String,
    /// A record replayed this many times (its `causeway.replay.count` header) is not replayed again:
    /// the loop guard.
    pub max_replays: u32,
    /// Where every operator action is recorded (Avro `causeway.DeadLetterAction`).
    pub audit_topic: String,
    /// Header names holding any of these (case-insensitive) are shown as `<redacted>`.
    pub secret_headers: Vec<String>,
    /// The most dead letters one replay or discard by filter acts on.
    pub max_batch: usize,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            group_id: "dlq-reprocessor".into(),
            topics: vec!["^.*[.]dlq$".into()],
            registry_url: "http://127.0.0.1:18081".into(),
            prefix: "causeway:dlq".into(),
            max_replays: 3,
            audit_topic: "causeway.dlq-audit".into(),
            secret_headers: [
                "authorization",
                "cookie",
                "password",
                "secret",
                "token",
                "api-key",
                "apikey",
                "credential",
                "signature",
            ]
            .map(String::from)
            .to_vec(),
            max_batch: 10_000,
        }
    }
}

/// Who may use the API: each token has a name, which the audit records as the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// The accepted bearer tokens, e.g. `tokens = [{ name = "alice", token = "..." }]` (from a
    /// Kubernetes Secret: `CAUSEWAY__ACCESS__TOKENS='[{ name = "alice", token = "..." }]'`).
    pub tokens: Vec<Token>,
}

/// One accepted token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// Who holds it (recorded as the operator of each action).
    pub name: String,
    /// The secret (never logged).
    pub token: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The shortest token accepted.
const MIN_TOKEN_BYTES: usize = 16;

impl Validate for Config {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = self.kafka.check("kafka");
        out.extend(self.consumer.check("consumer"));
        out.extend(self.redis.check("redis"));
        if self.dlq.topics.is_empty() {
            out.push(Invalid::new(
                "dlq.topics",
                "name at least one topic or pattern",
            ));
        }
        if self.dlq.group_id.is_empty() {
            out.push(Invalid::new("dlq.group_id", "must not be empty"));
        }
        if self.dlq.audit_topic.is_empty() {
            out.push(Invalid::new("dlq.audit_topic", "must not be empty"));
        }
        if self.dlq.max_batch == 0 {
            out.push(Invalid::new("dlq.max_batch", "must be at least 1"));
        }
        if self.access.tokens.is_empty() {
            out.push(Invalid::new(
                "access.tokens",
                "the API needs at least one token: tokens = [{ name = \"...\", token = \"...\" }]",
            ));
        }
        for (i, t) in self.access.tokens.iter().enumerate() {
            if t.name.trim().is_empty() {
                out.push(Invalid::new(
                    format!("access.tokens[{i}].name"),
                    "must not be empty",
                ));
            }
            if t.token.len() < MIN_TOKEN_BYTES {
                out.push(Invalid::new(
                    format!("access.tokens[{i}].token"),
                    format!("must be at least {MIN_TOKEN_BYTES} bytes"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_required_and_never_shown() {
        let keys =
            |c: &Config| -> Vec<String> { c.validate().into_iter().map(|i| i.key).collect() };
        assert_eq!(keys(&Config::default()), ["access.tokens"]);
        let mut c = Config::default();
        c.access.tokens = vec![Token {
            name: "alice".into(),
            token: "short".into(),
        }];
        assert_eq!(keys(&c), ["access.tokens[0].token"]);
        c.access.tokens[0].token = "a-long-enough-secret".into();
        assert!(keys(&c).is_empty());
        assert!(!format!("{c:?}").contains("a-long-enough-secret"));
    }
}

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
    /// Automatic redrive of transient classes.
    pub redrive: RedriveConfig,
    /// The event history.
    pub history: HistoryConfig,
    /// How the dead-letter topics are consumed.
    pub consumer: RunnerConfig,
}

/// The event history: an aggregate's events with their commands and results; a flow's commands and
/// dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// The processor's results topic, indexed as it comes (empty: no history of commands).
    pub results_topic: String,
    /// The first segment of the event topics (`<context>.<aggregate>.events`).
    pub context: String,
    /// How long a result stays in the index, in hours.
    pub ttl_hours: u64,
    /// The most events one history shows (the latest).
    pub max_events: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            results_topic: "causeway.command-results".into(),
            context: String::new(),
            ttl_hours: 168,
            max_events: 1_000,
        }
    }
}

/// Automatic redrive: dead letters of these classes are replayed by the reprocessor itself, with
/// backoff, until one is handled or they were tried `max_attempts` times (then they stay parked for an
/// operator). Records waiting behind a head that is done (per-key order) are released the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedriveConfig {
    /// The error classes redriven (e.g. `transient`); empty: none.
    pub classes: Vec<String>,
    /// Wait before the first redrive, after the record was dead-lettered, in ms (doubled each time).
    pub initial_ms: u64,
    /// Longest wait between redrives, in ms.
    pub max_ms: u64,
    /// Redrives of one record at most (its replay count; never more than `dlq.max_replays`).
    pub max_attempts: u32,
    /// How often the index is looked at, in ms.
    pub every_ms: u64,
}

impl Default for RedriveConfig {
    fn default() -> Self {
        Self {
            classes: vec!["transient".into()],
            initial_ms: 1_000,
            max_ms: 60_000,
            max_attempts: 3,
            every_ms: 1_000,
        }
    }
}

impl RedriveConfig {
    /// The wait before redrive number `n + 1` (after `n` replays).
    pub fn backoff_ms(&self, n: u32) -> u64 {
        self.initial_ms
            .saturating_mul(1u64 << n.min(30))
            .min(self.max_ms)
    }
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
    /// Letters dead-lettered longer ago than this and done (replayed or discarded) leave the index, in
    /// hours (the audit topic keeps what was done; the DLQ topic keeps the record for its retention).
    pub keep_done_hours: u64,
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
                "auth",
                "cookie",
                "session",
                "password",
                "passwd",
                "secret",
                "token",
                "jwt",
                "api-key",
                "apikey",
                "access-key",
                "private",
                "credential",
                "signature",
            ]
            .map(String::from)
            .to_vec(),
            max_batch: 10_000,
            keep_done_hours: 720,
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
    /// The secret (never logged): 16 to 256 bytes.
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

/// The longest token accepted (tokens are compared over this many bytes, whatever their length).
pub const MAX_TOKEN_BYTES: usize = 256;

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
        if self.redrive.initial_ms == 0 || self.redrive.max_ms < self.redrive.initial_ms {
            out.push(Invalid::new(
                "redrive.max_ms",
                "initial_ms must be at least 1 and max_ms at least initial_ms",
            ));
        }
        if self.redrive.every_ms == 0 {
            out.push(Invalid::new("redrive.every_ms", "must be at least 1"));
        }
        // The reprocessor never dead-letters (its index is the dead letters' own), so it neither parks
        // keys nor dead-letters passing failures.
        if self.consumer.park_keys {
            out.push(Invalid::new(
                "consumer.park_keys",
                "the dlq-reprocessor reads dead letters; it parks nothing",
            ));
        }
        if self.consumer.dead_letter_transient_after > 0 {
            out.push(Invalid::new(
                "consumer.dead_letter_transient_after",
                "the dlq-reprocessor never dead-letters: it retries in place",
            ));
        }
        if self.history.ttl_hours == 0 {
            out.push(Invalid::new("history.ttl_hours", "must be at least 1"));
        }
        if self.history.max_events == 0 {
            out.push(Invalid::new("history.max_events", "must be at least 1"));
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
            if t.token.len() < MIN_TOKEN_BYTES || t.token.len() > MAX_TOKEN_BYTES {
                out.push(Invalid::new(
                    format!("access.tokens[{i}].token"),
                    format!("must be {MIN_TOKEN_BYTES} to {MAX_TOKEN_BYTES} bytes"),
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

    #[test]
    fn redrive_backs_off_to_its_cap() {
        let r = RedriveConfig::default();
        assert_eq!(
            [0, 1, 2, 6, 7, 40].map(|n| r.backoff_ms(n)),
            [1_000, 2_000, 4_000, 60_000, 60_000, 60_000]
        );
    }
}

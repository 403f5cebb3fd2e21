//! Configuration of `schema-registry`: a TOML file (sample: `schema-registry.toml`) plus
//! `CAUSEWAY__SECTION__KEY` environment overrides, loaded by causeway-runtime.

use std::net::SocketAddr;

use causeway_kafka::KafkaConfig;
use causeway_runtime::{AdminConfig, Invalid, Validate, service::ServiceConfig};
use serde::{Deserialize, Serialize};

use crate::model::Level;

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The admin server (`/metrics`, `/healthz`, `/readyz`).
    pub admin: AdminConfig,
    /// The Kafka cluster holding the schema topic.
    pub kafka: KafkaConfig,
    /// The registry itself.
    pub registry: RegistryConfig,
}

/// The registry's API and storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Address of the REST API (Confluent's default port is 8081).
    pub listen: SocketAddr,
    /// The compacted, single-partition topic holding every schema, config and mode.
    pub topic: String,
    /// Replication factor of the topic when the registry creates it.
    pub replication_factor: i32,
    /// Compatibility level of subjects that set none, until `PUT /config` sets one.
    pub default_compatibility: String,
    /// The transactional id of the writer; the same on every instance of one registry, so that a new
    /// writer fences the old one.
    pub writer_transactional_id: String,
    /// How long a write may take (append, commit, read back), in milliseconds.
    pub write_timeout_ms: u64,
    /// Largest request body accepted, in bytes.
    pub max_request_bytes: usize,
    /// The URL other instances forward writes to while this one is the writer. Default:
    /// `http://<listen>`; set it when `listen` is a wildcard address or behind a proxy.
    pub advertised_url: Option<String>,
    /// The compacted single-partition topic where the writer announces itself, and whose partition the
    /// election hands to the writer. Default: `<topic>_leader`.
    pub leader_topic: Option<String>,
    /// The consumer group of the election. Default: `<topic>-election`.
    pub election_group: Option<String>,
    /// How long a silent writer keeps the role before another instance takes over, in milliseconds
    /// (the election group's `session.timeout.ms`; brokers accept 6000 and up by default).
    pub election_session_timeout_ms: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            topic: "_schemas".into(),
            replication_factor: 3,
            default_compatibility: "BACKWARD".into(),
            writer_transactional_id: "causeway-schema-registry".into(),
            write_timeout_ms: 10_000,
            max_request_bytes: 4 * 1024 * 1024,
            advertised_url: None,
            leader_topic: None,
            election_group: None,
            election_session_timeout_ms: 6_000,
        }
    }
}

impl RegistryConfig {
    /// The leader topic.
    pub fn leader_topic(&self) -> String {
        self.leader_topic
            .clone()
            .unwrap_or_else(|| format!("{}_leader", self.topic))
    }

    /// The election's consumer group.
    pub fn election_group(&self) -> String {
        self.election_group
            .clone()
            .unwrap_or_else(|| format!("{}-election", self.topic))
    }

    /// The URL writes are forwarded to while this instance leads.
    pub fn advertised_url(&self) -> String {
        self.advertised_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }

    /// The default level (validated at start-up).
    pub fn default_level(&self) -> Level {
        Level::parse(&self.default_compatibility).unwrap_or(Level::Backward)
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = self.kafka.check("kafka");
        let r = &self.registry;
        if Level::parse(&r.default_compatibility).is_none() {
            out.push(Invalid::new(
                "registry.default_compatibility",
                format!(
                    "{:?} is not a compatibility level (NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE)",
                    r.default_compatibility
                ),
            ));
        }
        if r.topic.trim().is_empty() {
            out.push(Invalid::new("registry.topic", "must not be empty"));
        }
        if r.replication_factor < 1 {
            out.push(Invalid::new(
                "registry.replication_factor",
                "must be at least 1",
            ));
        }
        if r.writer_transactional_id.trim().is_empty() {
            out.push(Invalid::new(
                "registry.writer_transactional_id",
                "must not be empty",
            ));
        }
        if r.write_timeout_ms == 0 {
            out.push(Invalid::new(
                "registry.write_timeout_ms",
                "must be at least 1",
            ));
        }
        if let Some(url) = &r.advertised_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            out.push(Invalid::new(
                "registry.advertised_url",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        if r.advertised_url.is_none() && r.listen.ip().is_unspecified() {
            out.push(Invalid::new(
                "registry.advertised_url",
                format!("must be set when registry.listen is {} (other instances cannot reach a wildcard address)", r.listen),
            ));
        }
        if r.election_session_timeout_ms < 1000 {
            out.push(Invalid::new(
                "registry.election_session_timeout_ms",
                "must be at least 1000",
            ));
        }
        if r.max_request_bytes < 1024 {
            out.push(Invalid::new(
                "registry.max_request_bytes",
                "must be at least 1024",
            ));
        }
        out
    }
}

impl ServiceConfig for Config {
    fn admin(&self) -> &AdminConfig {
        &self.admin
    }
}

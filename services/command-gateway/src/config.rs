//! Configuration of `command-gateway`: a TOML file (sample: `command-gateway.toml`) plus
//! `CAUSEWAY__SECTION__KEY` environment overrides, loaded by causeway-runtime.

use std::net::SocketAddr;

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
    /// The public HTTP API.
    pub http: HttpConfig,
    /// What the gateway accepts and where it sends it.
    pub gateway: GatewayConfig,
}

/// The public HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the command API.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Commands: which aggregates, their topics and contracts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// The schema registry holding the command contracts.
    pub registry_url: String,
    /// The domain whose commands this gateway accepts, by the name the build registers it under
    /// (domains/hosted): its aggregate types, their id fields and contract namespaces.
    pub domain: String,
    /// The bounded context: command topics are `<context>.<aggregate>.commands`. Empty: the domain's
    /// name.
    pub context: String,
    /// Most bytes of a command id, aggregate id or correlation id (400 beyond, naming the field); the
    /// processor dead-letters longer ones.
    pub max_id_bytes: usize,
    /// How far back the status API knows results when an instance starts, in ms: it reads the results
    /// topic from then on (at most `max_tracked_results` are kept).
    pub results_lookback_ms: u64,
    /// The topic of command results, read for the status API.
    pub results_topic: String,
    /// How long the broker may take to acknowledge a command before the API answers 503, in ms.
    pub produce_timeout_ms: u64,
    /// The longest `wait_ms` a status request may ask for.
    pub max_status_wait_ms: u64,
    /// How many command results the status API remembers.
    pub max_tracked_results: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            registry_url: "http://127.0.0.1:8081".into(),
            domain: String::new(),
            context: String::new(),
            max_id_bytes: 256,
            results_lookback_ms: 24 * 3600 * 1000,
            results_topic: "causeway.command-results".into(),
            produce_timeout_ms: 5_000,
            max_status_wait_ms: 30_000,
            max_tracked_results: 100_000,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = self.kafka.check("kafka");
        let g = &self.gateway;
        if !(g.registry_url.starts_with("http://") || g.registry_url.starts_with("https://")) {
            out.push(Invalid::new(
                "gateway.registry_url",
                format!("{:?} is not an http(s) URL", g.registry_url),
            ));
        }
        if g.domain.is_empty() {
            out.push(Invalid::new("gateway.domain", "name the domain to serve"));
        } else if causeway_domains::domains().get(&g.domain).is_none() {
            out.push(Invalid::new(
                "gateway.domain",
                format!(
                    "unknown domain {:?}; this build hosts {:?}",
                    g.domain,
                    causeway_domains::domains().names()
                ),
            ));
        }
        if !(16..=65_536).contains(&g.max_id_bytes) {
            out.push(Invalid::new(
                "gateway.max_id_bytes",
                "must be between 16 and 65536",
            ));
        }
        if g.produce_timeout_ms == 0 {
            out.push(Invalid::new(
                "gateway.produce_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.http.max_body_bytes < 256 {
            out.push(Invalid::new("http.max_body_bytes", "must be at least 256"));
        }
        out
    }
}

impl GatewayConfig {
    /// The bounded context: `context`, or the domain's name when it is empty.
    pub fn context(&self) -> &str {
        if self.context.is_empty() {
            &self.domain
        } else {
            &self.context
        }
    }
}

impl ServiceConfig for Config {
    fn admin(&self) -> &AdminConfig {
        &self.admin
    }
}

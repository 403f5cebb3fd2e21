//! Configuration of `command-gateway`: a TOML file (sample: `command-gateway.toml`) plus
//! `CAUSEWAY__SECTION__KEY` environment overrides, loaded by causeway-runtime.

use std::collections::BTreeMap;
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
    /// The bounded context: command topics are `<context>.<aggregate>.commands`.
    pub context: String,
    /// Namespace of the contracts: a command's record is `<namespace>.<aggregate>.<Command>`.
    pub namespace: String,
    /// Each aggregate type, with the command field that holds its id (the Kafka key).
    pub aggregate_ids: BTreeMap<String, String>,
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
            context: "orders".into(),
            namespace: "causeway.orders".into(),
            aggregate_ids: [
                ("order", "order_id"),
                ("inventory", "sku"),
                ("payment", "account_id"),
            ]
            .into_iter()
            .map(|(a, f)| (a.to_string(), f.to_string()))
            .collect(),
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
        if g.context.trim().is_empty() {
            out.push(Invalid::new("gateway.context", "must not be empty"));
        }
        if g.aggregate_ids.is_empty() {
            out.push(Invalid::new(
                "gateway.aggregate_ids",
                "must name at least one aggregate",
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

impl ServiceConfig for Config {
    fn admin(&self) -> &AdminConfig {
        &self.admin
    }
}

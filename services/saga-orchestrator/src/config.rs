//! Configuration of `saga-orchestrator`: a TOML file (sample: `saga-orchestrator.toml`) plus
//! `CAUSEWAY__SECTION__KEY` environment overrides, loaded by causeway-runtime.
//!
//! The orchestrator runs the same transactional loop as the aggregate processor, so its `[processor]`
//! section is the processor's (`aggregates` and the `dedup_*` keys do not apply); `[sagas]` says which
//! sagas of the domain it runs and how.

use std::collections::BTreeMap;

use causeway_core::saga::{Policy, RetryPolicy};
use causeway_kafka::KafkaConfig;
use causeway_kafka::processor::ProcessorConfig;
use causeway_runtime::{AdminConfig, Invalid, Validate, service::ServiceConfig};
use serde::{Deserialize, Serialize};

/// A day, in ms: the longest wait between two sends of a command.
const DAY_MS: i64 = 86_400_000;

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The admin server (`/metrics`, `/healthz`, `/readyz`).
    pub admin: AdminConfig,
    /// The Kafka cluster.
    pub kafka: KafkaConfig,
    /// The transactional loop (as the aggregate processor's).
    pub processor: ProcessorConfig,
    /// The sagas it runs.
    pub sagas: SagasConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            admin: AdminConfig::default(),
            kafka: KafkaConfig::default(),
            processor: ProcessorConfig {
                group_id: "saga-orchestrator".into(),
                ..ProcessorConfig::default()
            },
            sagas: SagasConfig::default(),
        }
    }
}

/// The `[sagas]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SagasConfig {
    /// The domain's sagas this process runs. Empty: all of them.
    pub names: Vec<String>,
    /// How long a command waits for its reply before it is sent again, ms.
    pub retry_initial_ms: i64,
    /// Longest wait between two sends of one command, ms.
    pub retry_max_ms: i64,
    /// Sends of one command in all; then the saga is told no answer came (and compensates).
    pub retry_max_attempts: u32,
    /// Deadline durations by name, ms (a deadline not named keeps the saga's default).
    pub deadlines_ms: BTreeMap<String, i64>,
    /// History entries kept per instance (the first and the latest).
    pub max_history: usize,
}

impl Default for SagasConfig {
    fn default() -> Self {
        let policy = Policy::default();
        Self {
            names: Vec::new(),
            retry_initial_ms: policy.retry.initial_ms,
            retry_max_ms: policy.retry.max_ms,
            retry_max_attempts: policy.retry.max_attempts,
            deadlines_ms: BTreeMap::new(),
            max_history: policy.max_history,
        }
    }
}

impl SagasConfig {
    /// The framework's policy for every saga it runs.
    pub fn policy(&self) -> Policy {
        Policy {
            retry: RetryPolicy {
                initial_ms: self.retry_initial_ms,
                max_ms: self.retry_max_ms,
                max_attempts: self.retry_max_attempts,
            },
            deadlines: self
                .deadlines_ms
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            max_history: self.max_history,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<Invalid> {
        let mut out = self.kafka.check("kafka");
        out.extend(self.processor.check("processor"));
        if !self.processor.aggregates.is_empty() {
            out.push(Invalid::new(
                "processor.aggregates",
                "the orchestrator hosts sagas, not aggregates: leave it empty and name sagas in \
                 sagas.names",
            ));
        }
        let s = &self.sagas;
        if !(1..=DAY_MS).contains(&s.retry_initial_ms) {
            out.push(Invalid::new(
                "sagas.retry_initial_ms",
                "must be between 1 and 86400000 (a day)",
            ));
        }
        if s.retry_max_ms < s.retry_initial_ms || s.retry_max_ms > DAY_MS {
            out.push(Invalid::new(
                "sagas.retry_max_ms",
                "must be at least sagas.retry_initial_ms and at most 86400000 (a day)",
            ));
        }
        if !(1..=10_000).contains(&s.retry_max_attempts) {
            out.push(Invalid::new(
                "sagas.retry_max_attempts",
                "must be between 1 and 10000",
            ));
        }
        if !(2..=10_000).contains(&s.max_history) {
            out.push(Invalid::new(
                "sagas.max_history",
                "must be between 2 and 10000",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for name in &s.names {
            if !seen.insert(name) {
                out.push(Invalid::new(
                    "sagas.names",
                    format!("{name:?} is named twice"),
                ));
            }
        }
        if self.processor.domain.is_empty() {
            return out;
        }
        let domains = causeway_domains::domains();
        let Some(domain) = domains.get(&self.processor.domain) else {
            out.push(Invalid::new(
                "processor.domain",
                format!(
                    "unknown domain {:?}; this build hosts {:?}",
                    self.processor.domain,
                    domains.names()
                ),
            ));
            return out;
        };
        if domain.sagas.is_empty() {
            out.push(Invalid::new(
                "processor.domain",
                format!("domain {:?} has no saga", domain.name),
            ));
        }
        for name in &s.names {
            if domain.saga_type(name).is_none() {
                out.push(Invalid::new(
                    "sagas.names",
                    format!(
                        "unknown saga {name:?}; domain {:?} has {:?}",
                        domain.name,
                        domain.saga_names()
                    ),
                ));
            }
        }
        let sagas: Vec<_> = domain
            .sagas
            .iter()
            .filter(|t| s.names.is_empty() || s.names.iter().any(|n| n == t.name))
            .collect();
        for (name, ms) in &s.deadlines_ms {
            if !sagas
                .iter()
                .any(|t| t.deadlines.iter().any(|(d, _)| d == name))
            {
                let known: Vec<&str> = sagas
                    .iter()
                    .flat_map(|t| t.deadlines.iter().map(|(d, _)| *d))
                    .collect();
                out.push(Invalid::new(
                    format!("sagas.deadlines_ms.{name}"),
                    format!("no saga it runs has this deadline; they have {known:?}"),
                ));
            }
            if !(1..=365 * DAY_MS).contains(ms) {
                out.push(Invalid::new(
                    format!("sagas.deadlines_ms.{name}"),
                    "must be between 1 and 31536000000 (a year)",
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

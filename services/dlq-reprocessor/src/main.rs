//! `dlq-reprocessor`: indexes the dead letters of every consumer group (`<group>.dlq`) in Redis and
//! serves the operator API to list, inspect, replay and discard them, each action recorded on the audit
//! topic.
//!
//! # Layout
//! - `config.rs`: the service's config file (`dlq-reprocessor.toml` beside Cargo.toml is the sample).
//! - `error.rs`: the service's errors.
//! - `reprocessor.rs`: the job: the consumer runner over the DLQ topics, the API, the depth metrics.
//! - `index.rs`: the index in Redis (what each dead letter is, its state, lists by filter).
//! - `records.rs`: records read back from Kafka at their offsets, and replays sent to their source.
//! - `actions.rs`: replay and discard (checks, loop guard, locks, state, metrics).
//! - `redrive.rs`: automatic redrive of transient classes, and release of records behind finished heads.
//! - `audit.rs`: the audit topic.
//! - `history.rs`: the event history (command results indexed; events read from their topic).
//! - `api.rs`: the HTTP API and its token check.
#![forbid(unsafe_code)]

mod actions;
mod api;
mod audit;
mod config;
mod error;
mod history;
mod index;
mod records;
mod redrive;
mod reprocessor;

use std::process::ExitCode;

use causeway_runtime::{ServiceInfo, service};

const INFO: ServiceInfo = ServiceInfo {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Indexes the dead letters of every consumer group (<group>.dlq topics) in Redis and serves the operator API (bearer token): GET /v1/dead-letters (filters: group, class, topic, key, state, since, until), GET /v1/dead-letters/{id} (headers, decoded payload), POST .../{id}/replay|discard and /v1/dead-letters/replay|discard by filter, with dry runs; a loop guard stops records replayed too often; every action goes to the audit topic. CLI: causeway dlq. PLANNED: automatic redrive, per-key parking, event history, web UI.",
};

fn main() -> ExitCode {
    service::run::<config::Config, _, _, _>(INFO, reprocessor::run)
}

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
    about: "Indexes the dead letters of every consumer group (<group>.dlq topics) in Redis and serves the operator API and web UI (GET / with a token): list with filters, inspect (headers with secrets redacted, the payload decoded), replay to the source partition or discard, one or by filter, with dry runs; a loop guard stops records replayed too often; transient classes are redriven with backoff; keys parked behind a dead letter (per-key order) come back in order; every action goes to the audit topic. Event history: GET /v1/history/{aggregate}/{id}, GET /v1/correlations/{id}. CLI: causeway dlq, causeway events.",
};

fn main() -> ExitCode {
    service::run::<config::Config, _, _, _>(INFO, reprocessor::run)
}

//! `saga-orchestrator`: runs the sagas of the domain its config names, exactly once per Kafka partition:
//! routers bring each saga's inputs (the events it reads, the results of the commands it sent) to its
//! inbox keyed by saga id; one transaction per batch holds the commands it sends, each instance's new
//! state on its compacted changelog and the offsets consumed. Deadlines and retries are part of the
//! state, so they fire after restarts and rebalances, once.
//!
//! # Layout
//! - `config.rs`: the service's config file (`saga-orchestrator.toml` beside Cargo.toml is the sample).
//! - `error.rs`: the service's errors.
//! - `meters.rs`: the saga metrics.
//! - `orchestrator.rs`: the service's job.
#![forbid(unsafe_code)]

mod config;
mod error;
mod meters;
mod orchestrator;

use std::process::ExitCode;

use causeway_runtime::{ServiceInfo, service};

const INFO: ServiceInfo = ServiceInfo {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Runs sagas exactly once per Kafka partition: commands, compensations in reverse order and durable deadlines, with each instance's state on a compacted changelog; hosts the sagas of the domain its config names.",
};

fn main() -> ExitCode {
    service::run::<config::Config, _, _, _>(INFO, orchestrator::run)
}

//! `saga-orchestrator`: Runs sagas (OrderFulfilment): reacts to events, issues commands, compensates in reverse order, keeps durable deadlines. Not built yet: today it connects to Kafka and idles, never ready; sagas arrive with the saga issue.
//!
//! # Layout
//! - `config.rs`: the service's config file (`saga-orchestrator.toml` beside Cargo.toml is the sample).
//! - `error.rs`: the service's errors.
//! - `orchestrator.rs`: the service's job.
#![forbid(unsafe_code)]

mod config;
mod error;
mod orchestrator;

use std::process::ExitCode;

use causeway_runtime::{ServiceInfo, service};

const INFO: ServiceInfo = ServiceInfo {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Runs sagas with compensations and durable deadlines. PLANNED: not built yet; today it connects to Kafka, idles and never reports ready.",
};

fn main() -> ExitCode {
    service::run::<config::Config, _, _, _>(INFO, orchestrator::run)
}

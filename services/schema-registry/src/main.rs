//! `schema-registry`: A Confluent-compatible schema registry stored in the compacted `_schemas` topic. Today it connects to Kafka and reports ready; the REST API arrives with the registry issue.
//!
//! # Layout
//! - `config.rs`: the service's config file (`schema-registry.toml` beside Cargo.toml is the sample).
//! - `error.rs`: the service's errors.
//! - `registry.rs`: the service's job.
#![forbid(unsafe_code)]

mod config;
mod error;
mod registry;

use std::process::ExitCode;

use causeway_runtime::{ServiceInfo, service};

const INFO: ServiceInfo = ServiceInfo {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
};

fn main() -> ExitCode {
    service::run::<config::Config, _, _, _>(INFO, registry::run)
}

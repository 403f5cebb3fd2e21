//! `command-gateway`: Accepts commands over HTTP, validates them against their Avro contracts and produces them onto the command topics (acks=all, idempotent). Today it connects to Kafka and reports ready; the HTTP API arrives with the command-processing issue.
//!
//! # Layout
//! - `config.rs`: the service's config file (`command-gateway.toml` beside Cargo.toml is the sample).
//! - `error.rs`: the service's errors.
//! - `gateway.rs`: the service's job.
#![forbid(unsafe_code)]

mod config;
mod error;
mod gateway;

use std::process::ExitCode;

use causeway_runtime::{ServiceInfo, service};

const INFO: ServiceInfo = ServiceInfo {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
};

fn main() -> ExitCode {
    service::run::<config::Config, _, _, _>(INFO, gateway::run)
}

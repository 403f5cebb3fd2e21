//! `command-gateway`: accepts commands over HTTP, validates them against their Avro contracts and
//! produces them onto the command topics (acks=all, idempotent producer); reports each command's result
//! from the results topic.
//!
//! # Layout
//! - `config.rs`: the service's config file (`command-gateway.toml` beside Cargo.toml is the sample).
//! - `error.rs`: the API's answers and the service's errors.
//! - `api.rs`: the command API (submit, status).
//! - `results.rs`: command results from the results topic, for the status API.
//! - `gateway.rs`: the service's job: wiring.
#![forbid(unsafe_code)]

mod api;
mod config;
mod error;
mod gateway;
mod results;

use std::process::ExitCode;

use causeway_runtime::{ServiceInfo, service};

const INFO: ServiceInfo = ServiceInfo {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "HTTP command API: POST /v1/commands/{aggregate}/{command} checked against the Avro contracts and produced to Kafka (202 once acknowledged); GET /v1/commands/{command_id} for the result.",
};

fn main() -> ExitCode {
    service::run::<config::Config, _, _, _>(INFO, gateway::run)
}

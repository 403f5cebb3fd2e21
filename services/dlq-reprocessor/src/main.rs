//! `dlq-reprocessor`: Reads the dead-letter topics and serves the operator API, web UI and CLI backend to inspect and redrive them. Not built yet: today it connects to Kafka and idles, never ready; the DLQ issue gives it its job.
//!
//! # Layout
//! - `config.rs`: the service's config file (`dlq-reprocessor.toml` beside Cargo.toml is the sample).
//! - `error.rs`: the service's errors.
//! - `reprocessor.rs`: the service's job.
#![forbid(unsafe_code)]

mod config;
mod error;
mod reprocessor;

use std::process::ExitCode;

use causeway_runtime::{ServiceInfo, service};

const INFO: ServiceInfo = ServiceInfo {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Lists, inspects and redrives dead letters (API, web UI). PLANNED: not built yet; today it connects to Kafka, idles and never reports ready.",
};

fn main() -> ExitCode {
    service::run::<config::Config, _, _, _>(INFO, reprocessor::run)
}

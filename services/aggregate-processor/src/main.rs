//! `aggregate-processor`: consumes the command topics of the aggregates it hosts and, in one Kafka
//! transaction per batch, emits events, new aggregate states and command results with the consumer
//! offsets (crates/kafka's processor). Poison records go to `<group>.dlq` with their reason.
//!
//! # Layout
//! - `config.rs`: the service's config file (`aggregate-processor.toml` beside Cargo.toml is the sample).
//! - `error.rs`: the service's errors.
//! - `processor.rs`: the service's job.
#![forbid(unsafe_code)]

mod config;
mod error;
mod processor;

use std::process::ExitCode;

use causeway_runtime::{ServiceInfo, service};

const INFO: ServiceInfo = ServiceInfo {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Processes commands exactly once per Kafka partition: events, changelog state, results and offsets in one transaction per batch; hosts the domain its config names.",
};

fn main() -> ExitCode {
    service::run::<config::Config, _, _, _>(INFO, processor::run)
}

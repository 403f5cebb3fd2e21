//! `schema-registry`: a Confluent-compatible schema registry whose state lives in the compacted
//! `_schemas` topic. The library (`lib.rs`) holds the parts; this is the wiring.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use causeway_runtime::{ServiceInfo, service};
use schema_registry::{config, registry};

const INFO: ServiceInfo = ServiceInfo {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "A Confluent-compatible schema registry (REST API, compatibility checks) stored in a Kafka topic.",
};

fn main() -> ExitCode {
    service::run::<config::Config, _, _, _>(INFO, registry::run)
}

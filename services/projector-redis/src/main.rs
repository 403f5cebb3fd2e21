//! `projector-redis`: keeps read models in Redis from the event topics, at least once in delivery and
//! exactly once in effect (version-checked atomic scripts).
//!
//! The service is a library plus this `main`, so that tests can use its Redis client.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use causeway_runtime::{ServiceInfo, service};
use projector_redis::{config, projector};

const INFO: ServiceInfo = ServiceInfo {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Keeps the read models of a domain's projections in Redis from its event topics: each event applied once in effect (version-checked, atomic, with its offset), poison events to <group_id>.dlq; serves them over HTTP (GET /v1/read/{projection}/{id}?min_version=N&wait_ms=M, index pages, /v1/openapi.json). Rebuild one with `causeway projections rebuild <name>`; lag: `causeway projections status`.",
};

fn main() -> ExitCode {
    service::run::<config::Config, _, _, _>(INFO, projector::run)
}

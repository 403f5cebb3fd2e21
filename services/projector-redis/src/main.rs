//! `projector-redis`: keeps read models in Redis from the event topics, at least once in delivery and
//! exactly once in effect (version-checked atomic scripts). Today it connects to Kafka and Redis and
//! idles, never ready; projections arrive with the projection issue.
//!
//! The service is a library plus this `main`, so that tests can use its Redis client.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use causeway_runtime::{ServiceInfo, service};
use projector_redis::{config, projector};

const INFO: ServiceInfo = ServiceInfo {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Keeps read models in Redis from the event topics. PLANNED: not built yet; today it connects to Kafka and Redis, idles and never reports ready.",
};

fn main() -> ExitCode {
    service::run::<config::Config, _, _, _>(INFO, projector::run)
}

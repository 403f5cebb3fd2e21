//! `projector-clickhouse`: writes analytics tables in ClickHouse from the event topics, at least once in
//! delivery and exactly once in effect (rows carry a version; ReplacingMergeTree deduplicates). Today it
//! connects to Kafka and ClickHouse and idles, never ready (not built yet); projections arrive with the projection issue.
//!
//! The service is a library plus this `main`, so that tests can use its ClickHouse client.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use causeway_runtime::{ServiceInfo, service};
use projector_clickhouse::{config, projector};

const INFO: ServiceInfo = ServiceInfo {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Writes analytics tables in ClickHouse from the event topics. PLANNED: not built yet; today it connects to Kafka and ClickHouse, idles and never reports ready.",
};

fn main() -> ExitCode {
    service::run::<config::Config, _, _, _>(INFO, projector::run)
}

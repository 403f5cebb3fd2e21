//! `projector-clickhouse`: writes analytics tables in ClickHouse from the event topics, at least once in
//! delivery and exactly once in effect (rows carry a version; ReplacingMergeTree deduplicates).
//!
//! The service is a library plus this `main`, so that tests can use its ClickHouse client.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use causeway_runtime::{ServiceInfo, service};
use projector_clickhouse::{config, projector};

const INFO: ServiceInfo = ServiceInfo {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Writes a domain's events and its projections' documents into ClickHouse tables (created and migrated at start), exactly once in effect (version columns, ReplacingMergeTree read with FINAL), with the domain's analytics views (e.g. daily_sales); poison events to <group_id>.dlq. Rebuild a projection's table with `causeway projections rebuild <name> --store clickhouse`; lag: `causeway projections status --group projector-clickhouse`.",
};

fn main() -> ExitCode {
    service::run::<config::Config, _, _, _>(INFO, projector::run)
}

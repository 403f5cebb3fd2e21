//! `make bench`: benchmarks that print figures beside a baseline measured in the same run, on the same
//! machine, against the local stack. Never assertions on time.
//!
//! # Layout
//! - `main.rs`: arguments and the report table.
//! - `registry.rs`: the schema registry: `GET /schemas/ids/{id}` and registration.
//! - `processor.rs`: the command path: processor throughput (1 and 2 instances) beside Kafka's own
//!   producer perf tool, the gateway, end-to-end latency, the processor's memory.
//! - `projectors.rs`: the read side: projector-redis beside redis-benchmark, projector-clickhouse beside
//!   a clickhouse-client bulk insert, a command until its read model shows it.
//! - `dlq.rs`: dead letters indexed per second and replayed per second by the dlq-reprocessor, beside the
//!   broker's producer ceiling.
//! - `sagas.rs`: OrderFulfilment sagas completed per second and their latency from OrderPlaced to a
//!   terminal state, beside the processor's own command throughput in the same run.
//! - `stats.rs`: latency percentiles and rates.
#![forbid(unsafe_code)]

mod dlq;
mod processor;
mod projectors;
mod registry;
mod sagas;
mod stats;

use clap::{Parser, Subcommand};

/// Causeway benchmarks.
#[derive(Debug, Parser)]
#[command(name = "causeway-bench", about)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// The schema registry: reads by id and registrations, against a release build of the registry.
    Registry(registry::Args),
    /// The command path: aggregate processor and command gateway (release builds).
    Processor(processor::Args),
    /// The read side: projector-redis and projector-clickhouse, and a command until its read model.
    Projectors(projectors::Args),
    /// Dead letters: indexing and replay by the dlq-reprocessor (release build).
    Dlq(dlq::Args),
    /// Sagas: OrderFulfilment completed per second and OrderPlaced to terminal, beside the processor.
    Sagas(sagas::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Registry(args) => registry::run(args).await,
        Bench::Processor(args) => processor::run(args).await,
        Bench::Projectors(args) => projectors::run(args).await,
        Bench::Dlq(args) => dlq::run(args).await,
        Bench::Sagas(args) => sagas::run(args).await,
    }
}

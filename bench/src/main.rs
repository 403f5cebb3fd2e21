//! `make bench`: benchmarks that print figures beside a baseline measured in the same run, on the same
//! machine, against the local stack. Never assertions on time.
//!
//! # Layout
//! - `main.rs`: arguments and the report table.
//! - `registry.rs`: the schema registry: `GET /schemas/ids/{id}` and registration.
//! - `processor.rs`: the command path: the processor beside the Kafka Streams baseline and Kafka's
//!   own ceilings, the gateway, end-to-end latency.
//! - `compare.rs`: either system started, drained, paced for latency, restarted and restored.
//! - `projectors.rs`: the read side: projector-redis beside redis-benchmark, projector-clickhouse beside
//!   a clickhouse-client bulk insert, a command until its read model shows it.
//! - `dlq.rs`: dead letters indexed per second and replayed per second by the dlq-reprocessor, beside the
//!   broker's producer ceiling.
//! - `sagas.rs`: OrderFulfilment sagas completed per second and their latency from OrderPlaced to a
//!   terminal state, beside the processor's own command throughput in the same run.
//! - `streams.rs`: the Kafka Streams baseline (bench/streams): built, started and stopped; the check
//!   that it writes the same events and results as the processor on one fixed input.
//! - `stats.rs`: latency percentiles and rates.
#![forbid(unsafe_code)]

mod compare;
mod dlq;
mod processor;
mod projectors;
mod registry;
mod sagas;
mod stats;
mod streams;

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
    /// The Kafka Streams baseline (bench/streams) and the processor on one fixed input: the same
    /// events and results, or a non-zero exit with the differences.
    BaselineCheck(streams::CheckArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Registry(args) => registry::run(args).await,
        Bench::Processor(args) => processor::run(args).await,
        Bench::Projectors(args) => projectors::run(args).await,
        Bench::Dlq(args) => dlq::run(args).await,
        Bench::Sagas(args) => sagas::run(args).await,
        Bench::BaselineCheck(args) => streams::check(args).await,
    }
}

//! `causeway`, the operator CLI. Each subcommand is a module; `main` parses and dispatches.
//!
//! Exit codes: 0 success; 1 failure (a broker unreachable, a request refused); 2 bad usage or input;
//! 3 the cluster differs from the declaration (`topics apply` found drift it will not fix).
#![forbid(unsafe_code)]

/// `println!` that does not panic when stdout is closed (`causeway ... | head`): output that nobody
/// reads is dropped, and the exit code still tells what happened.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod dlq;
mod projections;
mod saga;
mod schema;
mod topics;
mod when;

use std::process::ExitCode;

use causeway_kafka::KafkaConfig;
use clap::{Args, Parser, Subcommand};

/// Operate a Causeway deployment: topics, schemas, projections (lag, rebuild), dead letters (list, show, replay, discard), event history, sagas (show, list, stuck).
#[derive(Debug, Parser)]
#[command(name = "causeway", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Provision and inspect Kafka topics from a declarative topology file.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Check, lock and register the Avro contracts under avro/.
    #[command(subcommand)]
    Schema(schema::SchemaCommand),
    /// The read models (projections) of a domain: how far their projector is behind; rebuilds.
    #[command(subcommand)]
    Projections(projections::ProjectionsCommand),
    /// Dead letters, through the dlq-reprocessor's API: list, show, replay, discard (token from
    /// CAUSEWAY_DLQ_TOKEN).
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// What happened to one aggregate (its events in order, each with its command, result and trace id,
    /// and its dead letters), or to one flow (--correlation): through the dlq-reprocessor's API.
    Events(dlq::EventsArgs),
    /// Saga instances, read from their changelog: one instance's status, step, awaited commands,
    /// deadlines and history; instances by status and age; those stuck in one step.
    #[command(subcommand)]
    Saga(saga::SagaCommand),
}

/// How to reach Kafka; shared by every subcommand that talks to it.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Bootstrap servers (host:port,...). The default is the local stack of `make up`.
    #[arg(
        long,
        env = "CAUSEWAY_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:19092"
    )]
    pub bootstrap_servers: String,
    /// Any librdkafka property, as key=value (repeatable), e.g. -X security.protocol=SASL_SSL.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_property)]
    pub property: Vec<(String, String)>,
}

impl KafkaArgs {
    /// The client config these arguments describe, or a usage error naming the bad property.
    pub fn config(&self) -> Result<KafkaConfig, String> {
        let mut config = KafkaConfig::for_servers(self.bootstrap_servers.clone());
        config.client_id = "causeway-cli".into();
        config.properties.extend(self.property.iter().cloned());
        let problems = config.check("");
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems
                .iter()
                .map(|p| {
                    let key = p.key.trim_start_matches('.').replace("properties.", "-X ");
                    format!("{key}: {}", p.message)
                })
                .collect::<Vec<_>>()
                .join("; "))
        }
    }
}

fn parse_property(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("causeway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Topics(cmd) => topics::run(cmd).await,
            Command::Schema(cmd) => schema::run(cmd).await,
            Command::Projections(cmd) => projections::run(cmd).await,
            Command::Dlq(cmd) => dlq::run(cmd).await,
            Command::Events(args) => dlq::events(args).await,
            Command::Saga(cmd) => saga::run(cmd).await,
        }
    })
}

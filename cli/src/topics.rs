//! `causeway topics`: apply a topology file (create what is missing, report drift), or show the plan.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use causeway_kafka::topology::{self, ApplyReport, Topology};
use clap::{Args, Subcommand};

use crate::KafkaArgs;

/// Exit code when the cluster differs from the declaration.
const EXIT_DRIFT: u8 = 3;
/// Exit code for bad usage or input.
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the topics that are missing; report (and exit 3 on) any that differ from the file.
    Apply(ApplyArgs),
    /// Show what `apply` would create and which topics differ, changing nothing.
    Plan(ApplyArgs),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The topology file (TOML with [defaults] and [[topic]] entries).
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "domains/orders/topology.toml"
    )]
    file: PathBuf,
    /// Replication factor for topics that do not set their own (e.g. 1 on a single-broker cluster).
    #[arg(long, value_name = "N")]
    replication_factor: Option<i32>,
    /// Partition count for topics that do not set their own.
    #[arg(long, value_name = "N")]
    partitions: Option<i32>,
    /// How long to wait for the brokers, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    timeout: u64,
    #[command(flatten)]
    kafka: KafkaArgs,
}

pub async fn run(cmd: TopicsCommand) -> ExitCode {
    let (args, dry_run) = match cmd {
        TopicsCommand::Apply(args) => (args, false),
        TopicsCommand::Plan(args) => (args, true),
    };
    let config = match args.kafka.config() {
        Ok(c) => c,
        Err(e) => return usage(&e),
    };
    let mut topology = match Topology::load(&args.file) {
        Ok(t) => t,
        Err(e) => return usage(&e.to_string()),
    };
    if let Some(rf) = args.replication_factor {
        topology.defaults.replication_factor = rf;
    }
    if let Some(p) = args.partitions {
        topology.defaults.partitions = p;
    }
    let timeout = Duration::from_secs(args.timeout);
    if let Err(e) = causeway_kafka::client::check_broker(&config, timeout).await {
        eprintln!("causeway: {e}");
        return ExitCode::FAILURE;
    }
    match topology::apply(&config, &topology, dry_run, timeout).await {
        Ok(report) => {
            print_report(&topology, &report, dry_run);
            if report.in_sync() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_DRIFT)
            }
        }
        Err(e) => {
            eprintln!("causeway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("causeway: {message}");
    ExitCode::from(EXIT_USAGE)
}

fn print_report(topology: &Topology, report: &ApplyReport, dry_run: bool) {
    let verb = if dry_run { "would create" } else { "created" };
    for name in &report.created {
        let described = topology
            .topics
            .iter()
            .find(|t| &t.name == name)
            .map(|t| {
                let configs: Vec<String> = t
                    .configs()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!(
                    " ({} partitions, replication {}, {})",
                    topology.partitions_of(t),
                    topology.replication_of(t),
                    configs.join(", ")
                )
            })
            .unwrap_or_default();
        say!("{verb:<12} {name}{described}");
    }
    for name in &report.unchanged {
        say!("{:<12} {name}", "in sync");
    }
    for drift in &report.drift {
        say!("{:<12} {drift}", "DRIFT");
    }
    say!(
        "{} {}, {} in sync, {} drifted{}",
        report.created.len(),
        verb,
        report.unchanged.len(),
        report
            .drift
            .iter()
            .map(|d| &d.topic)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        if report.in_sync() {
            ""
        } else {
            " (not changed: partition counts, replication and configs are fixed by an operator, \
             since changing them moves keys or data)"
        }
    );
}

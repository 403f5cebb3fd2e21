//! `causeway schema`: check the contracts under `avro/` against their published versions (CI runs this
//! through `make lint`), record new versions in the lock file, and register every contract with a
//! schema registry, idempotently.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use causeway_contracts::catalog::{CONTRACT_LEVEL, Catalog};
use causeway_contracts::lock::Lock;
use causeway_contracts::registry::RegistryClient;
use clap::{Args, Subcommand};

/// Exit code for usage and input errors.
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Compare every contract with each published version (the lock file) under FULL_TRANSITIVE; exit 1
    /// naming subject, field and rule when one breaks, or when a published contract was removed.
    Check(Files),
    /// Record the current text of every new or changed contract in the lock file (after `check` passes).
    Lock(Files),
    /// Register every contract with a schema registry (shared types first, then each subject with
    /// FULL_TRANSITIVE), idempotently: a contract already registered keeps its id.
    Register(RegisterArgs),
}

#[derive(Debug, Args)]
pub struct Files {
    /// The contracts folder.
    #[arg(long, default_value = "avro", value_name = "DIR")]
    dir: PathBuf,
    /// The lock file of published versions.
    #[arg(long, default_value = "avro/contracts.lock.json", value_name = "FILE")]
    lock: PathBuf,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The contracts folder.
    #[arg(long, default_value = "avro", value_name = "DIR")]
    dir: PathBuf,
    /// The registry's URL. The default is the local stack of `make up`.
    #[arg(
        long,
        env = "CAUSEWAY_REGISTRY_URL",
        default_value = "http://127.0.0.1:18081"
    )]
    registry: String,
}

pub async fn run(cmd: SchemaCommand) -> ExitCode {
    match cmd {
        SchemaCommand::Check(files) => check(&files),
        SchemaCommand::Lock(files) => lock(&files),
        SchemaCommand::Register(args) => register(&args).await,
    }
}

fn load(dir: &Path) -> Result<Catalog, ExitCode> {
    Catalog::load(dir).map_err(|e| {
        eprintln!("causeway: {e}");
        ExitCode::from(EXIT_USAGE)
    })
}

fn load_lock(path: &Path) -> Result<Lock, ExitCode> {
    Lock::load(path).map_err(|e| {
        eprintln!("causeway: {e}");
        ExitCode::from(EXIT_USAGE)
    })
}

fn check(files: &Files) -> ExitCode {
    let (catalog, lock) = match (load(&files.dir), load_lock(&files.lock)) {
        (Ok(c), Ok(l)) => (c, l),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let report = lock.check(&catalog);
    for name in &report.new {
        say!("{:<13} {name}", "new");
    }
    for name in &report.changed {
        say!(
            "{:<13} {name} (compatible; record it with `causeway schema lock`)",
            "changed"
        );
    }
    for (subject, problems) in &report.incompatible {
        say!("{:<13} {subject}", "INCOMPATIBLE");
        for p in problems {
            say!("{:<13}   {p}", "");
        }
    }
    for name in &report.removed {
        say!(
            "{:<13} {name}: published but its file is gone; readers of existing data need it (add a new record instead)",
            "REMOVED"
        );
    }
    say!(
        "{} contracts: {} unchanged, {} new, {} changed compatibly, {} incompatible, {} removed ({})",
        catalog.all().count(),
        report.unchanged.len(),
        report.new.len(),
        report.changed.len(),
        report.incompatible.len(),
        report.removed.len(),
        CONTRACT_LEVEL.as_str()
    );
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn lock(files: &Files) -> ExitCode {
    let (catalog, mut lock) = match (load(&files.dir), load_lock(&files.lock)) {
        (Ok(c), Ok(l)) => (c, l),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let report = lock.check(&catalog);
    if !report.ok() {
        eprintln!(
            "causeway: `causeway schema check` fails; fix the contracts before recording them"
        );
        return ExitCode::FAILURE;
    }
    let recorded = lock.record(&catalog);
    if let Err(e) = lock.save(&files.lock) {
        eprintln!("causeway: {e}");
        return ExitCode::FAILURE;
    }
    say!(
        "recorded {recorded} new versions in {}",
        files.lock.display()
    );
    ExitCode::SUCCESS
}

async fn register(args: &RegisterArgs) -> ExitCode {
    let catalog = match load(&args.dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let client = RegistryClient::new(&args.registry);
    let registered = client
        .register_catalog(&catalog, |r| {
            say!(
                "{:<6} {:<3} {}",
                format!("id {}", r.id),
                format!("v{}", r.version),
                r.subject
            );
        })
        .await;
    match registered {
        Ok(all) => {
            say!("{} contracts registered with {}", all.len(), client.base());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("causeway: {e}");
            ExitCode::FAILURE
        }
    }
}

//! `causeway schema`: check the contracts under `avro/` against their published versions (CI runs this
//! through `make lint`), record new versions in the lock file, and register every contract with a
//! schema registry, idempotently.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use causeway_contracts::catalog::{CONTRACT_LEVEL, Catalog, Contract};
use causeway_contracts::lock::Lock;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

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
    let client = Registry {
        http: reqwest::Client::new(),
        base: args.registry.trim_end_matches('/').to_string(),
    };
    let mut versions: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    for contract in catalog.all() {
        match client.register(contract, &versions).await {
            Ok((id, version)) => {
                say!(
                    "{:<6} {:<3} {}",
                    format!("id {id}"),
                    format!("v{version}"),
                    contract.subject()
                );
                versions.insert(contract.full_name.clone(), version);
            }
            Err(e) => {
                eprintln!("causeway: {}: {e}", contract.subject());
                return ExitCode::FAILURE;
            }
        }
    }
    say!(
        "{} contracts registered with {}",
        catalog.all().count(),
        client.base
    );
    ExitCode::SUCCESS
}

struct Registry {
    http: reqwest::Client,
    base: String,
}

impl Registry {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("the registry at {} did not answer: {e}", self.base))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!(
                "the registry answered {status}: {}",
                value["message"].as_str().unwrap_or("(no message)")
            ))
        }
    }

    /// Register `contract` (its subject set to FULL_TRANSITIVE first); returns its id and version.
    async fn register(
        &self,
        contract: &Contract,
        versions: &std::collections::HashMap<String, i64>,
    ) -> Result<(i64, i64), String> {
        let subject = encode(&contract.subject());
        self.call(
            reqwest::Method::PUT,
            &format!("/config/{subject}"),
            json!({ "compatibility": CONTRACT_LEVEL.as_str() }),
        )
        .await?;
        let references: Vec<Value> = contract
            .references
            .iter()
            .map(|name| {
                json!({ "name": name, "subject": name, "version": versions.get(name).copied().unwrap_or(1) })
            })
            .collect();
        let body =
            json!({ "schema": contract.schema, "schemaType": "AVRO", "references": references });
        let registered = self
            .call(
                reqwest::Method::POST,
                &format!("/subjects/{subject}/versions"),
                body.clone(),
            )
            .await?;
        let found = self
            .call(reqwest::Method::POST, &format!("/subjects/{subject}"), body)
            .await?;
        match (registered["id"].as_i64(), found["version"].as_i64()) {
            (Some(id), Some(version)) => Ok((id, version)),
            _ => Err(format!("unexpected answers: {registered} / {found}")),
        }
    }
}

/// A subject in a URL path: subjects may hold `/` (and anything else), so everything but unreserved
/// characters is percent-encoded.
fn encode(subject: &str) -> String {
    subject
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

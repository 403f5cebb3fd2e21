//! Service bootstrap. A service's `main` is one call:
//!
//! ```text
//! fn main() -> std::process::ExitCode {
//!     causeway_runtime::service::run::<Config, _, _, _>(INFO, |config, ctx| job(config, ctx))
//! }
//! ```
//!
//! [`run`] reads `--config <file>` (or `CAUSEWAY_CONFIG`), loads and validates the config (a bad one
//! exits 2 with a message naming the key, before anything connects), installs logging and tracing, starts
//! the admin server, then runs the job until it returns. The job watches [`ServiceContext::shutdown`],
//! which fires on SIGTERM/SIGINT, and returns once its work is drained; the process then exits 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use causeway_core::Classify;
use causeway_observe::{AdminServer, Metrics, Readiness, Telemetry};
use clap::Parser;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{self, AdminConfig, Validate};
use crate::shutdown::Shutdown;

/// Exit code for a config that cannot be used (sysexits' EX_CONFIG is 78; 2 is what CLIs use for usage
/// errors, and what operators grep for). Chosen once here for every service.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure after start-up.
pub const EXIT_FAILURE: u8 = 1;

/// Name and version of a service binary.
#[derive(Debug, Clone, Copy)]
pub struct ServiceInfo {
    /// The service name, as in services/<name> and in metric labels.
    pub name: &'static str,
    /// The crate version.
    pub version: &'static str,
    /// One paragraph for `--help`: what the service does.
    pub about: &'static str,
}

/// A config type a service can be started with.
pub trait ServiceConfig: DeserializeOwned + Serialize + Validate + Send + 'static {
    /// The admin server section.
    fn admin(&self) -> &AdminConfig;
}

/// What the bootstrap hands a service's job.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    /// Name and version.
    pub info: ServiceInfo,
    /// Fires on SIGTERM/SIGINT; the job returns once it has drained.
    pub shutdown: Shutdown,
    /// The service's metrics registry (served on `/metrics`).
    pub metrics: Metrics,
    readiness: Readiness,
}

impl ServiceContext {
    /// Report ready (or not) on `/readyz` and in `causeway_service_ready`.
    pub fn set_ready(&self, ready: bool) {
        self.readiness.set(ready);
        self.metrics.set_ready(ready);
    }

    /// Report healthy (or stuck: `/healthz` answers 503, so an orchestrator restarts the process).
    pub fn set_healthy(&self, healthy: bool) {
        self.readiness.set_healthy(healthy);
    }

    /// Retry `check` with backoff while it fails with a transient error. Returns `Ok(true)` once it
    /// succeeds, `Ok(false)` if shutdown fires first, and the error itself when it is not transient (a
    /// bad credential will not fix itself). Each failure is logged with the dependency's name, so an
    /// operator sees what the service is waiting for.
    pub async fn wait_for<F, Fut, E>(&self, dependency: &str, mut check: F) -> Result<bool, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Classify + std::fmt::Display,
    {
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 0u32;
        loop {
            if self.shutdown.is_triggered() {
                return Ok(false);
            }
            attempt += 1;
            // A check can take seconds against an unreachable host; shutdown does not wait for it.
            let outcome = tokio::select! {
                outcome = check() => outcome,
                _ = self.shutdown.wait() => return Ok(false),
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(dependency, attempt, "dependency answers");
                    return Ok(true);
                }
                Err(error) if error.class().is_retryable() => {
                    tracing::warn!(dependency, attempt, %error, retry_in_ms = backoff.as_millis() as u64,
                        "dependency not reachable yet");
                }
                Err(error) => return Err(error),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.wait() => return Ok(false),
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

#[derive(Debug, Parser)]
struct Args {
    /// The service's TOML config file. Keys can be overridden with CAUSEWAY__SECTION__KEY variables.
    #[arg(long, short, env = "CAUSEWAY_CONFIG", value_name = "FILE")]
    config: PathBuf,
    /// Load and validate the config, print it (secrets redacted), and exit.
    #[arg(long)]
    check_config: bool,
}

/// Start the service: see the module documentation.
pub fn run<C, F, Fut, E>(info: ServiceInfo, job: F) -> ExitCode
where
    C: ServiceConfig + std::fmt::Debug,
    F: FnOnce(C, ServiceContext) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<anyhow::Error>,
{
    use clap::{CommandFactory, FromArgMatches};
    let matches = Args::command()
        .name(info.name)
        .about(info.about)
        .version(info.version)
        .get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    let config: C = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", info.name);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check_config {
        println!(
            "{}: config {} is valid\n{config:#?}",
            info.name,
            args.config.display()
        );
        return ExitCode::SUCCESS;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(info.name)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", info.name);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(serve(info, config, job));
    // Tasks still running (a stuck client call) must not hold the process past its drain.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e:#}", info.name);
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

async fn serve<C, F, Fut, E>(info: ServiceInfo, config: C, job: F) -> anyhow::Result<()>
where
    C: ServiceConfig + std::fmt::Debug,
    F: FnOnce(C, ServiceContext) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<anyhow::Error>,
{
    let telemetry = Telemetry::init(info.name)?;
    let shutdown = Shutdown::on_signals()?;
    let metrics = Metrics::new(info.name, info.version)?;
    let readiness = Readiness::default();
    let admin_listen = config.admin().listen;
    let admin = {
        let shutdown = shutdown.clone();
        AdminServer::start(
            admin_listen,
            readiness.clone(),
            metrics.clone(),
            async move { shutdown.wait().await },
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot bind the admin server to {admin_listen} (admin.listen): {e}")
        })?
    };
    tracing::info!(
        service = info.name,
        version = info.version,
        admin = %admin.local_addr(),
        otlp = telemetry.exporting(),
        "service starting"
    );
    let ctx = ServiceContext {
        info,
        shutdown: shutdown.clone(),
        metrics,
        readiness,
    };
    let outcome = job(config, ctx.clone()).await.map_err(Into::into);
    ctx.set_ready(false);
    // The job may have ended on its own (an error); the admin server stops with it.
    shutdown.trigger();
    admin.join().await?;
    match &outcome {
        Ok(()) => tracing::info!(service = info.name, "service stopped"),
        Err(e) => tracing::error!(service = info.name, error = %format!("{e:#}"), "service failed"),
    }
    drop(telemetry);
    outcome
}

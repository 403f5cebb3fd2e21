//! The test stack: Apache Kafka, Redis, ClickHouse and the schema registry for integration tests, and helpers to run the
//! suite's binaries as processes.
//!
//! One stack serves every test: [`stack`] starts it on first use (through `native/stack.sh up`, the same
//! script `make up` runs; a no-op when it already runs) and hands out its endpoints. Tests keep apart by
//! naming their own topics, groups, keys and tables with [`unique`].
//!
//! Backends, chosen with `CAUSEWAY_STACK`:
//! - `native` (default, and CI's): real processes on 127.0.0.1, see `native/stack.sh`;
//! - `docker`: containers through testcontainers-rs, for machines with a Docker engine. Build with
//!   `--features causeway-testcontainers/docker`. See `docker.rs`.
//!
//! A missing component fails the test with a message saying which; no test passes by skipping.
//!
//! # Layout
//! - [`native`]: the native backend (drives `native/stack.sh`).
//! - [`faulty`]: a fault-injecting proxy to put between a service and a real component.
//! - [`process`]: start a service binary with a config, wait for `/readyz`, stop it with SIGTERM.
//! - `docker` (feature `docker`): the Docker backend.
#![forbid(unsafe_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(feature = "docker")]
pub mod docker;
pub mod faulty;
pub mod manifests;
pub mod native;
pub mod process;

/// Endpoints of a running stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// Kafka bootstrap servers (`host:port`).
    pub kafka_bootstrap: String,
    /// Redis URL (`redis://host:port`).
    pub redis_url: String,
    /// ClickHouse HTTP URL (`http://host:port`).
    pub clickhouse_url: String,
    /// The schema registry's REST API (`http://host:port`).
    pub registry_url: String,
}

/// Which backend runs the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Native processes (`native/stack.sh`).
    Native,
    /// Docker containers (testcontainers-rs).
    Docker,
}

impl Backend {
    /// The backend `CAUSEWAY_STACK` selects (`native` when unset).
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("CAUSEWAY_STACK").as_deref() {
            Err(_) | Ok("") | Ok("native") => Ok(Backend::Native),
            Ok("docker") => Ok(Backend::Docker),
            Ok(other) => Err(format!(
                "CAUSEWAY_STACK={other:?} is not a backend: use `native` or `docker`"
            )),
        }
    }
}

/// The shared stack, started on first use. Panics (failing the test) with the reason when a component
/// cannot be started or does not answer.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let started = Backend::from_env().and_then(|backend| match backend {
            Backend::Native => native::up(),
            Backend::Docker => start_docker(),
        });
        match started {
            Ok(stack) => stack,
            Err(reason) => panic!("the test stack is not available: {reason}"),
        }
    })
}

#[cfg(feature = "docker")]
fn start_docker() -> Result<Stack, String> {
    docker::up()
}

#[cfg(not(feature = "docker"))]
fn start_docker() -> Result<Stack, String> {
    Err(
        "CAUSEWAY_STACK=docker needs the Docker backend compiled in: \
         run the tests with `--features causeway-testcontainers/docker`"
            .into(),
    )
}

/// A name no other test (in this or any earlier run) uses: `<prefix>-<pid>-<n>-<millis>`. Use it for
/// topics, consumer groups, transactional ids, keys and tables.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{millis}", std::process::id())
}

//! How a Causeway service starts, is configured and stops. Every binary under services/ is a `main` that
//! calls [`service::run`] with its config type and its job; everything they share lives here.
//!
//! # Layout
//! - [`config`]: one TOML file per service plus `CAUSEWAY__SECTION__KEY` environment overrides, unknown
//!   keys rejected, start-up validation whose errors name the key and where it came from.
//! - [`shutdown`]: the shutdown signal (SIGTERM, SIGINT) shared by all tasks.
//! - [`service`]: bootstrap: arguments, config, telemetry, admin server, readiness, graceful exit.
#![forbid(unsafe_code)]

pub mod config;
pub mod service;
pub mod shutdown;

pub use config::{AdminConfig, ConfigError, Invalid, Validate};
pub use service::{ServiceConfig, ServiceContext, ServiceInfo};
pub use shutdown::Shutdown;

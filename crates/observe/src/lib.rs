//! What every Causeway service exposes to operators: JSON logs, OTLP traces, Prometheus metrics and the
//! admin HTTP server (`/metrics`, `/healthz`, `/readyz`), plus W3C trace context for Kafka headers.
//!
//! # Layout
//! - [`admin`]: the admin HTTP server and the readiness flag it reports.
//! - [`http`]: the request metrics every service's HTTP API wears (route, method, status, latency).
//! - [`metrics`]: the Prometheus registry and every metric name, in one place.
//! - [`telemetry`]: the tracing subscriber (JSON logs) and OTLP export when configured.
//! - [`propagation`]: `traceparent`/`tracestate` injected into and extracted from record headers.
#![forbid(unsafe_code)]

pub mod admin;
pub mod http;
pub mod metrics;
pub mod propagation;
pub mod telemetry;

pub use admin::{AdminServer, Readiness};
pub use metrics::Metrics;
pub use telemetry::{Telemetry, TelemetryError};

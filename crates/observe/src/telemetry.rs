//! Logs and traces. Logs are JSON lines on stderr, filtered by `RUST_LOG` (default `info`). When
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are also exported over OTLP/gRPC with the service name as
//! the resource's `service.name`; the exporter reads the other standard `OTEL_*` variables itself.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable that turns OTLP export on.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Default log filter. The exporter's own crates are held at `warn` so that exporting spans never
/// feeds back into the log it is exporting.
const DEFAULT_FILTER: &str =
    "info,opentelemetry=warn,opentelemetry_sdk=warn,h2=warn,tonic=warn,hyper=warn,hyper_util=warn";

/// Why telemetry could not be set up. Always fatal: the service refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` is not a valid filter.
    #[error("RUST_LOG is not a valid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// The OTLP exporter could not be built from the `OTEL_*` environment.
    #[error("cannot build the OTLP exporter for {OTLP_ENDPOINT_ENV}: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber was already installed.
    #[error("a log subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}

/// Installed telemetry. Dropping it flushes and shuts down the span exporter.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Install the global subscriber (and the W3C trace-context propagator) for `service`.
    /// Must be called inside a Tokio runtime when OTLP export is on.
    pub fn init(service: &'static str) -> Result<Self, TelemetryError> {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let filter = match std::env::var("RUST_LOG") {
            Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(spec)?,
            _ => EnvFilter::try_new(DEFAULT_FILTER)?,
        };
        let fmt = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr);

        let endpoint_set = std::env::var_os(OTLP_ENDPOINT_ENV).is_some_and(|v| !v.is_empty());
        if !endpoint_set {
            tracing_subscriber::registry()
                .with(filter)
                .with(fmt)
                .try_init()?;
            return Ok(Self { provider: None });
        }

        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(service).build())
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer(service);
        opentelemetry::global::set_tracer_provider(provider.clone());
        crate::propagation::set_exporting();
        tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .with(tracing_opentelemetry::layer().with_tracer(tracer))
            .try_init()?;
        Ok(Self {
            provider: Some(provider),
        })
    }

    /// Whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Flushes what is buffered; an unreachable collector must not block shutdown for long,
            // and the batch exporter's own timeout bounds this.
            if let Err(e) = provider.shutdown() {
                eprintln!("telemetry: flushing spans at shutdown failed: {e}");
            }
        }
    }
}

//! The admin HTTP server. `/healthz` answers 200 while the process runs and has not declared itself
//! stuck (503 then: a restart is the better cure); `/readyz` answers 200 only once
//! the service says it is ready (its dependencies answer, its state is restored) and 503 before that or
//! while it drains; `/metrics` is the Prometheus text exposition of the service's registry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// Whether the service can take work, and whether it is stuck. Cheap to clone; every clone sees the
/// same flags.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    stuck: Arc<AtomicBool>,
}

impl Readiness {
    /// Mark the service ready (`true`) or not (`false`).
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the service is ready now.
    pub fn get(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Mark the service healthy (`true`, the default) or stuck (`false`: `/healthz` answers 503).
    pub fn set_healthy(&self, healthy: bool) {
        self.stuck.store(!healthy, Ordering::Release);
    }

    /// Whether the service is healthy now.
    pub fn healthy(&self) -> bool {
        !self.stuck.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone)]
struct AdminState {
    readiness: Readiness,
    metrics: Metrics,
}

/// A running admin server.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    /// Bind `listen` and serve until `shutdown` completes.
    pub async fn start(
        listen: SocketAddr,
        readiness: Readiness,
        metrics: Metrics,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_text))
            .with_state(AdminState { readiness, metrics });
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        });
        Ok(Self { local_addr, task })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Wait for the server to finish after its shutdown future completed.
    pub async fn join(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        }
    }
}

async fn healthz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.readiness.healthy() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "stuck\n")
    }
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.readiness.get() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics_text(State(state): State<AdminState>) -> impl IntoResponse {
    match state.metrics.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding metrics failed: {e}\n"),
        ),
    }
}

//! Metrics of an HTTP API, as one axum layer every service's API wears: requests by route (the matched
//! path template, so ids do not make series), method and status, and their latency.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::metrics::names;

/// The request metrics of one API.
#[derive(Debug, Clone)]
pub struct HttpMeters {
    requests: IntCounterVec,
    seconds: HistogramVec,
}

impl HttpMeters {
    /// Registered in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                names::HTTP_REQUESTS_TOTAL,
                "HTTP requests answered, by route (the path template), method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                names::HTTP_REQUEST_SECONDS,
                "Time to answer an HTTP request, by route (the path template) and method, in seconds.",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16)?),
            &["route", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(seconds.clone()))?;
        Ok(Self { requests, seconds })
    }

    /// `router` with every request it answers measured.
    pub fn around<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        router.layer(axum::middleware::from_fn_with_state(self.clone(), measure))
    }
}

async fn measure(State(meters): State<HttpMeters>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().as_str().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    meters
        .requests
        .with_label_values(&[&route, &method, &status])
        .inc();
    meters
        .seconds
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    response
}

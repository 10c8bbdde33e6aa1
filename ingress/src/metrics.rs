//! Ingress metrics, in their own Prometheus [`Registry`] served at `/metrics`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use flashsale_schemas::Outcome;

/// Route label of requests that matched no route; a fixed value, so random
/// URLs cannot grow the label set.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Counters, histograms and gauges of one ingress instance.
#[derive(Clone)]
pub struct IngressMetrics {
    /// Where the metrics are registered; rendered by `/metrics`.
    pub registry: Registry,
    /// HTTP answers by route template and status code.
    pub http_requests: IntCounterVec,
    /// HTTP latency by route template and status code, in seconds.
    pub http_duration: HistogramVec,
    /// Answers derived from outcomes (or their absence), by status
    /// (`accepted`, `rejected`, `pending` = timed out) and reason code.
    pub outcomes: IntCounterVec,
    /// Requests currently registered and waiting for their outcome.
    pub pending_waiters: IntGauge,
    /// Outcome records the listener could not decode.
    pub outcome_decode_errors: prometheus::IntCounter,
}

impl IngressMetrics {
    /// Creates the metrics in a fresh registry.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let m = Self {
            http_requests: IntCounterVec::new(
                Opts::new("flashsale_http_requests_total", "HTTP requests answered"),
                &["route", "status"],
            )?,
            http_duration: HistogramVec::new(
                HistogramOpts::new(
                    "flashsale_http_request_duration_seconds",
                    "HTTP request latency",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["route", "status"],
            )?,
            outcomes: IntCounterVec::new(
                Opts::new(
                    "flashsale_ingress_outcomes_total",
                    "Answers given from outcomes, by status and reason (pending: timed out)",
                ),
                &["status", "reason"],
            )?,
            pending_waiters: IntGauge::new(
                "flashsale_ingress_pending_waiters",
                "Requests waiting for their outcome",
            )?,
            outcome_decode_errors: prometheus::IntCounter::new(
                "flashsale_ingress_outcome_decode_errors_total",
                "Outcome records that could not be decoded",
            )?,
            registry,
        };
        m.registry.register(Box::new(m.http_requests.clone()))?;
        m.registry.register(Box::new(m.http_duration.clone()))?;
        m.registry.register(Box::new(m.outcomes.clone()))?;
        m.registry.register(Box::new(m.pending_waiters.clone()))?;
        m.registry
            .register(Box::new(m.outcome_decode_errors.clone()))?;
        Ok(m)
    }

    /// Counts an answer given from a decided outcome.
    pub fn count_outcome(&self, outcome: &Outcome) {
        let status = outcome.status.code();
        let reason = outcome.reason.map_or("", |r| r.code());
        self.outcomes.with_label_values(&[status, reason]).inc();
    }

    /// Counts an answer given because the outcome did not arrive in time.
    pub fn count_pending(&self) {
        self.outcomes.with_label_values(&["pending", ""]).inc();
    }

    /// The metrics as Prometheus text.
    pub fn render(&self) -> String {
        flashsale_runtime::ops::render_metrics(&self.registry)
    }
}

/// Middleware recording every answer's count and latency by route template
/// (never the raw path: IDs would explode the label set) and status.
pub async fn track(
    State(metrics): State<IngressMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [route.as_str(), status.as_str()];
    metrics.http_requests.with_label_values(&labels).inc();
    metrics
        .http_duration
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

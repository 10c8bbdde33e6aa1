//! Process plumbing every service shares: logging, the shutdown tree and the
//! ops endpoint (`/health`, `/metrics`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::config::LogArgs;

/// Installs the global `tracing` subscriber.
pub fn init_tracing(args: &LogArgs) {
    let filter = args
        .log
        .as_deref()
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second init (tests) is harmless; ignore the "already set" error.
    let _ = if args.log_json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The root of the shutdown tree: cancelled on SIGTERM or SIGINT. Every task
/// takes a child token, drains, commits what it has made durable, and exits.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; draining");
        trigger.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; only Ctrl-C stops this process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// What the ops endpoint reports.
#[derive(Clone)]
pub struct Ops {
    /// Metrics rendered at `/metrics`.
    pub registry: Registry,
    /// `/health` answers 200 while true, 503 otherwise (e.g. while restoring).
    pub healthy: Arc<AtomicBool>,
}

impl Ops {
    /// A fresh, healthy ops state with an empty metrics registry.
    pub fn new() -> Self {
        Self {
            registry: Registry::new(),
            healthy: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl Default for Ops {
    fn default() -> Self {
        Self::new()
    }
}

/// Renders a registry as Prometheus text.
pub fn render_metrics(registry: &Registry) -> String {
    let mut buf = Vec::new();
    // Encoding to a Vec cannot fail for well-formed metric families.
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::warn!(error = %e, "metrics encoding failed");
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The ops router: `/health` and `/metrics`.
pub fn ops_router(ops: Ops) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

async fn health(State(ops): State<Ops>) -> (StatusCode, &'static str) {
    if ops.healthy.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(ops): State<Ops>) -> String {
    render_metrics(&ops.registry)
}

/// Serves the ops router on `addr` until `shutdown` is cancelled.
pub async fn serve_ops(
    addr: SocketAddr,
    ops: Ops,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "ops endpoint listening");
    axum::serve(listener, ops_router(ops))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Starts the ops endpoint on `addr` in the background, when one is
/// configured; it stops with `shutdown`. A failure to serve is logged, not
/// fatal: the service's work does not depend on being observed.
pub fn spawn_ops(addr: Option<SocketAddr>, ops: Ops, shutdown: &CancellationToken) {
    let Some(addr) = addr else {
        return;
    };
    let token = shutdown.child_token();
    tokio::spawn(async move {
        if let Err(e) = serve_ops(addr, ops, token).await {
            tracing::error!(error = %e, "ops endpoint failed");
        }
    });
}

/// A service's exit status from the result of its run: success, or the
/// error logged (as `"{service} failed"`) and a failure status, so a
/// supervisor restarts it.
pub fn exit_code<E: std::fmt::Display>(
    service: &str,
    result: Result<(), E>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, service, "{service} failed");
            std::process::ExitCode::FAILURE
        }
    }
}

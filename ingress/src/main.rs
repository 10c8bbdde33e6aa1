//! `flashsale-ingress`: see the crate docs of `flashsale_ingress`.
//!
//! Start order: schemas registered (retried while the registry comes up),
//! read model prepared (lazily connected), outcome listener positioned at
//! the outcomes topic's high watermarks, and only then the HTTP server
//! accepts requests. Shutdown (SIGTERM/SIGINT): the server stops accepting
//! and drains in-flight requests, which still receive their outcomes because
//! the listener is stopped only after the drain; then the producer flushes.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rdkafka::producer::{FutureProducer, Producer};
use tokio_util::sync::CancellationToken;

use flashsale_ingress::config::IngressConfig;
use flashsale_ingress::extract::Limits;
use flashsale_ingress::metrics::IngressMetrics;
use flashsale_ingress::outcomes::{OutcomeListener, Waiters};
use flashsale_ingress::read_model::StoreReadModel;
use flashsale_ingress::submit::{KafkaPublisher, WaitingSubmitter};
use flashsale_ingress::{app, AppState};
use flashsale_runtime::kafka::producer_config;
use flashsale_runtime::ops::{exit_code, init_tracing, shutdown_on_signals, spawn_ops, Ops};
use flashsale_runtime::retry::{retry, Backoff};
use flashsale_schemas::registry::Contract;

/// Each start-up step while its dependency comes up: 30 tries 1 s apart.
const START_BACKOFF: Backoff = Backoff::fixed(30, Duration::from_secs(1));
/// Longest wait for the producer's queue to drain at shutdown.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = IngressConfig::parse();
    init_tracing(&cfg.log);
    let shutdown = shutdown_on_signals();
    exit_code("ingress", run(cfg, shutdown).await)
}

async fn run(cfg: IngressConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let instance = cfg.instance();
    let metrics = IngressMetrics::new()?;
    let topics = cfg.topics.contract_topics();
    let url = cfg.registry.schema_registry_url.clone();
    let contract = retry("schema registration", START_BACKOFF, &shutdown, || {
        Contract::register(&url, &topics)
    })
    .await?;
    let read_model = StoreReadModel::connect_lazy(&cfg.store.mysql_url, &cfg.store.redis_url)?;
    let waiters = Waiters::new(cfg.pending_max, metrics.pending_waiters.clone());
    let listener = retry(
        "outcome listener positioning",
        START_BACKOFF,
        &shutdown,
        || async {
            tokio::task::block_in_place(|| {
                OutcomeListener::positioned(
                    &cfg.kafka.brokers,
                    &format!("{instance}-outcomes"),
                    &cfg.topics.outcomes_topic,
                    contract.clone(),
                    waiters.clone(),
                    metrics.clone(),
                )
            })
        },
    )
    .await?;
    let producer: FutureProducer = producer_config(&cfg.kafka.brokers, &instance).create()?;
    let publisher = KafkaPublisher::new(
        producer.clone(),
        contract,
        cfg.topics.requests_topic.clone(),
    );
    let state = AppState {
        submitter: Arc::new(WaitingSubmitter::new(
            waiters,
            Arc::new(publisher),
            cfg.wait(),
        )),
        read_model: Arc::new(read_model),
        metrics: metrics.clone(),
        limits: Limits {
            body_bytes_max: cfg.body_bytes_max,
            quantity_max: cfg.quantity_max,
        },
    };
    let listener_stop = CancellationToken::new();
    let listener_task = tokio::spawn(listener.run(listener_stop.clone()));
    let ops = Ops {
        registry: metrics.registry.clone(),
        ..Ops::new()
    };
    spawn_ops(cfg.metrics_listen, ops, &shutdown);
    serve(&cfg, state, shutdown).await?;
    listener_stop.cancel();
    if let Err(e) = listener_task.await {
        tracing::warn!(error = %e, "outcome listener task failed");
    }
    if let Err(e) = producer.flush(FLUSH_TIMEOUT) {
        tracing::warn!(error = %e, "producer flush at shutdown failed");
    }
    tracing::info!("ingress stopped");
    Ok(())
}

/// Serves the API until `shutdown`, then drains in-flight requests.
async fn serve(
    cfg: &IngressConfig,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    tracing::info!(addr = %cfg.listen, wait_ms = cfg.wait_ms, pending_max = cfg.pending_max, "ingress listening");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

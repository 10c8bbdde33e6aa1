//! `flashsale-sink`: see the crate docs of `flashsale_sinks`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use flashsale_schemas::registry::Contract;
use flashsale_schemas::runtime::{init_tracing, serve_ops, shutdown_on_signals, Ops};
use flashsale_sinks::config::{SinkConfig, StoreKind};
use flashsale_sinks::metrics::SinkMetrics;
use flashsale_sinks::mysql::MysqlStore;
use flashsale_sinks::redis_store::RedisStore;
use flashsale_sinks::runner::{SinkRunner, Store};

/// Attempts at start-up steps (registry, store connection), 1 s apart.
const START_ATTEMPTS_MAX: u32 = 60;

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = SinkConfig::parse();
    init_tracing(&cfg.log);
    let shutdown = shutdown_on_signals();
    match run(cfg, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sink failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: SinkConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let ops = Ops::new();
    let metrics = SinkMetrics::register(&ops.registry)?;
    if let Some(addr) = cfg.metrics_listen {
        let token = shutdown.child_token();
        let ops = ops.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_ops(addr, ops, token).await {
                tracing::error!(error = %e, "ops endpoint failed");
            }
        });
    }
    let topics = cfg.topics.contract_topics();
    let url = cfg.registry.schema_registry_url.clone();
    let contract = retry("schema registration", || Contract::register(&url, &topics)).await?;
    let store = match cfg.store {
        StoreKind::Mysql => {
            let store = MysqlStore::connect_lazy(&cfg.stores.mysql_url)?;
            retry("mysql migrations", || store.migrate()).await?;
            Store::Mysql(store)
        }
        StoreKind::Redis => {
            let (url, ttl) = (cfg.stores.redis_url.clone(), cfg.outcome_ttl_s);
            Store::Redis(retry("redis connection", || RedisStore::connect(&url, ttl)).await?)
        }
    };
    SinkRunner::new(cfg, contract, store, metrics)?
        .run(shutdown)
        .await?;
    Ok(())
}

async fn retry<T, E, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    E: std::fmt::Display + Send + Sync + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < START_ATTEMPTS_MAX => {
                tracing::warn!(attempt, error = %e, "{what} failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => anyhow::bail!("{what}: {e}"),
        }
    }
}

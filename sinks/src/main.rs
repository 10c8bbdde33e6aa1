//! `flashsale-sink`: see the crate docs of `flashsale_sinks`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use flashsale_runtime::ops::{exit_code, init_tracing, shutdown_on_signals, spawn_ops, Ops};
use flashsale_runtime::retry::{retry, Backoff};
use flashsale_schemas::registry::Contract;
use flashsale_sinks::config::{SinkConfig, StoreKind};
use flashsale_sinks::metrics::SinkMetrics;
use flashsale_sinks::mysql::MysqlStore;
use flashsale_sinks::redis_store::RedisStore;
use flashsale_sinks::runner::{SinkRunner, Store};

/// Start-up steps (registry, store connection): 60 tries 1 s apart.
const START_BACKOFF: Backoff = Backoff::fixed(60, Duration::from_secs(1));

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = SinkConfig::parse();
    init_tracing(&cfg.log);
    let shutdown = shutdown_on_signals();
    exit_code("sink", run(cfg, shutdown).await)
}

async fn run(cfg: SinkConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let ops = Ops::new();
    let metrics = SinkMetrics::register(&ops.registry)?;
    spawn_ops(cfg.metrics_listen, ops.clone(), &shutdown);
    let topics = cfg.topics.contract_topics();
    let url = cfg.registry.schema_registry_url.clone();
    let contract = retry("schema registration", START_BACKOFF, &shutdown, || {
        Contract::register(&url, &topics)
    })
    .await?;
    let store = match cfg.store {
        StoreKind::Mysql => {
            let store = MysqlStore::connect_lazy(&cfg.stores.mysql_url)?;
            retry("mysql migrations", START_BACKOFF, &shutdown, || {
                store.migrate()
            })
            .await?;
            Store::Mysql(store)
        }
        StoreKind::Redis => {
            let (url, ttl) = (cfg.stores.redis_url.clone(), cfg.outcome_ttl_s);
            Store::Redis(
                retry("redis connection", START_BACKOFF, &shutdown, || {
                    RedisStore::connect(&url, ttl)
                })
                .await?,
            )
        }
    };
    SinkRunner::new(cfg, contract, store, metrics)?
        .run(shutdown)
        .await?;
    Ok(())
}

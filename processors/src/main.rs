//! `flashsale-processor`: see the crate docs of `flashsale_processors`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use flashsale_processors::config::ProcessorConfig;
use flashsale_processors::metrics::ProcessorMetrics;
use flashsale_processors::runner::Runner;
use flashsale_runtime::ops::{exit_code, init_tracing, shutdown_on_signals, spawn_ops, Ops};
use flashsale_runtime::retry::{retry, Backoff};
use flashsale_schemas::registry::Contract;

/// mimalloc: the decision core's small per-decision allocations (IDs copied
/// into outcomes and the dedupe memory) are its largest cost after cache misses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Schema registration at start, while the registry comes up: 30 tries 1 s apart.
const REGISTER_BACKOFF: Backoff = Backoff::fixed(30, Duration::from_secs(1));

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = ProcessorConfig::parse();
    init_tracing(&cfg.log);
    let shutdown = shutdown_on_signals();
    exit_code("processor", run(cfg, shutdown).await)
}

async fn run(
    cfg: ProcessorConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let ops = Ops::new();
    let metrics = ProcessorMetrics::register(&ops.registry)?;
    spawn_ops(cfg.metrics_listen, ops.clone(), &shutdown);
    let topics = cfg.topics.contract_topics();
    let url = &cfg.registry.schema_registry_url;
    let contract = retry("schema registration", REGISTER_BACKOFF, &shutdown, || {
        Contract::register(url, &topics)
    })
    .await?;
    let runner = Runner::new(cfg, contract, metrics)?;
    runner.run(shutdown).await?;
    Ok(())
}

//! `flashsale-processor`: see the crate docs of `flashsale_processors`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use flashsale_processors::config::ProcessorConfig;
use flashsale_processors::metrics::ProcessorMetrics;
use flashsale_processors::runner::Runner;
use flashsale_schemas::registry::Contract;
use flashsale_schemas::runtime::{init_tracing, serve_ops, shutdown_on_signals, Ops};

/// mimalloc: the decision core's small per-decision allocations (IDs copied
/// into outcomes and the dedupe memory) are its largest cost after cache misses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Attempts to register schemas at start while the registry comes up (1 s apart).
const REGISTER_ATTEMPTS_MAX: u32 = 30;

#[tokio::main]
async fn main() -> ExitCode {
    let cfg = ProcessorConfig::parse();
    init_tracing(&cfg.log);
    let shutdown = shutdown_on_signals();
    match run(cfg, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "processor failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    cfg: ProcessorConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let ops = Ops::new();
    let metrics = ProcessorMetrics::register(&ops.registry)?;
    if let Some(addr) = cfg.metrics_listen {
        let token = shutdown.child_token();
        let ops = ops.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_ops(addr, ops, token).await {
                tracing::error!(error = %e, "ops endpoint failed");
            }
        });
    }
    let contract = register(&cfg).await?;
    let runner = Runner::new(cfg, contract, metrics)?;
    runner.run(shutdown).await?;
    Ok(())
}

async fn register(cfg: &ProcessorConfig) -> anyhow::Result<Contract> {
    let topics = cfg.topics.contract_topics();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match Contract::register(&cfg.registry.schema_registry_url, &topics).await {
            Ok(c) => return Ok(c),
            Err(e) if attempt < REGISTER_ATTEMPTS_MAX => {
                tracing::warn!(attempt, error = %e, "schema registration failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

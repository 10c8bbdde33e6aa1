//! `flashsale-baseline`: one of the old design's strategies behind the
//! pipeline's HTTP purchase shape, for side-by-side benchmarks.
//!
//! ```sh
//! flashsale-baseline --strategy pessimistic --listen 127.0.0.1:18090
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use flashsale_load::baseline::{self, BaselineConfig, Strategy};

/// Serves one baseline strategy over MariaDB/MySQL and Redis.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Which of the old design's strategies to run.
    #[arg(long, value_enum)]
    strategy: Strategy,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18090")]
    listen: SocketAddr,
    /// Stores and per-strategy patience.
    #[command(flatten)]
    config: BaselineConfig,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flashsale-baseline: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (shared, worker) = baseline::connect(args.strategy, &args.config).await?;
    let router = baseline::http::router(shared.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!(
        "flashsale-baseline {} listening on http://{}",
        args.strategy.name(),
        listener.local_addr()?
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            // Ctrl-C stops accepting; in-flight requests finish.
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // redis-lua: let the worker persist what is queued, then say how many
    // accepted orders made it to MySQL (a crash would have lost the rest).
    let stats = shared.stats.clone();
    drop(shared);
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    println!("{}", serde_json::to_string(&stats.view(args.strategy))?);
    Ok(())
}

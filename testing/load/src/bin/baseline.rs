//! `flashsale-baseline`: one of the old design's strategies behind the
//! pipeline's HTTP purchase shape, for side-by-side benchmarks.
//!
//! ```sh
//! flashsale-baseline --strategy pessimistic --listen 127.0.0.1:18090
//! ```
//!
//! `flashsale-bench` runs each baseline this way, as its own process, and
//! reads the address from the `... listening on http://ADDR` line; SIGINT
//! or SIGTERM stops it gracefully.

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
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:18090")]
    listen: SocketAddr,
    /// Tokio worker threads (default: one per CPU).
    #[arg(long)]
    worker_threads: Option<usize>,
    /// Stores and per-strategy patience.
    #[command(flatten)]
    config: BaselineConfig,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.worker_threads {
        runtime.worker_threads(n.max(1));
    }
    let outcome = runtime
        .enable_all()
        .build()
        .context("building the runtime")
        .and_then(|rt| rt.block_on(run(args)));
    match outcome {
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
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    println!(
        "flashsale-baseline {} listening on http://{}",
        args.strategy.name(),
        listener.local_addr()?
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            // Ctrl-C (SIGINT, what flashsale-bench sends) or SIGTERM stops
            // accepting; in-flight requests finish.
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        })
        .await?;
    // redis-lua(-flag): let the worker persist what is queued, then say how
    // many accepted orders made it to MySQL (a crash would have lost the
    // rest).
    let stats = shared.stats.clone();
    drop(shared);
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    println!("{}", serde_json::to_string(&stats.view(args.strategy))?);
    Ok(())
}

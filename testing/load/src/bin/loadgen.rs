//! `flashsale-loadgen`: drives any server with the flash-sale purchase shape
//! (the pipeline's ingress or a `flashsale-baseline`) and reports what it
//! answered and how fast.
//!
//! ```sh
//! flashsale-loadgen --rate 1000 --requests 20000 --products 50 --json out.json
//! flashsale-loadgen --connections 64 --base-url http://127.0.0.1:18090
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use futures::stream::{self, TryStreamExt};

use flashsale_load::{DriverConfig, Mode, Target, Workload, WorkloadSpec};
use flashsale_testkit::unique;

/// Load generator for flash-sale purchase APIs.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Base URL of the system under test.
    #[arg(
        long,
        env = "FLASHSALE_INGRESS_URL",
        default_value = "http://127.0.0.1:18080"
    )]
    base_url: String,
    /// Open loop: send this many requests per second, whatever the answers
    /// (latency measured from each request's scheduled time). Without it the
    /// run is closed-loop over `--connections`.
    #[arg(long)]
    rate: Option<f64>,
    /// Closed loop: concurrent connections, each sending its next request as
    /// soon as it has an answer.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Purchase requests to send (retries and duplicates not counted).
    #[arg(long, default_value_t = 10_000)]
    requests: u64,
    /// Products on sale.
    #[arg(long, default_value_t = 10)]
    products: usize,
    /// Units of each product (when this run configures the sales).
    #[arg(long, default_value_t = 100)]
    stock: i64,
    /// Most units one user may buy of one product.
    #[arg(long, default_value_t = 2)]
    per_user_limit: i32,
    /// Distinct buyers.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Zipf exponent of product popularity (0 uniform, 1 classic hot products).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Each request asks for 1..=N units.
    #[arg(long, default_value_t = 2)]
    quantity_max: i32,
    /// Fraction of clients that retry (same request ID) on error, timeout or 202.
    #[arg(long, default_value_t = 0.1)]
    retry_fraction: f64,
    /// Retries such a client makes at most.
    #[arg(long, default_value_t = 3)]
    retry_attempts: u32,
    /// Backoff before the n-th retry: n times this (ms).
    #[arg(long, default_value_t = 200)]
    retry_backoff_ms: u64,
    /// Fraction of requests sent once more after their answer (same request ID).
    #[arg(long, default_value_t = 0.01)]
    duplicate_fraction: f64,
    /// Per-attempt HTTP timeout (ms).
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
    /// Open loop: most requests outstanding at once.
    #[arg(long, default_value_t = 20_000)]
    max_in_flight: usize,
    /// Product IDs are PREFIX0..PREFIX{n-1}; default: a fresh prefix per run.
    #[arg(long)]
    product_prefix: Option<String>,
    /// Do not configure the sales (they already exist under --product-prefix).
    #[arg(long)]
    no_setup: bool,
    /// Generator seed (same seed, same demand).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flashsale-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let prefix = args
        .product_prefix
        .clone()
        .unwrap_or_else(|| format!("{}-p", unique("lg")));
    let products: Vec<String> = (0..args.products).map(|i| format!("{prefix}{i}")).collect();
    let target = Target::new(&args.base_url, Duration::from_millis(args.timeout_ms))?;
    if !args.no_setup {
        stream::iter(products.iter().map(Ok))
            .try_for_each_concurrent(16, |p| target.configure(p, args.stock, args.per_user_limit))
            .await?;
    }
    let workload = Workload::new(WorkloadSpec {
        run: prefix.trim_end_matches(['-', 'p']).to_owned(),
        products,
        requests: args.requests,
        users: args.users,
        sequential_users: false,
        zipf_exponent: args.zipf,
        quantity_max: args.quantity_max,
        retry_fraction: args.retry_fraction,
        duplicate_fraction: args.duplicate_fraction,
        seed: args.seed,
    });
    let mode = match args.rate {
        Some(rate) => Mode::Open { rate },
        None => Mode::Closed {
            connections: args.connections,
        },
    };
    let config = DriverConfig {
        mode,
        retry_attempts: args.retry_attempts,
        retry_backoff: Duration::from_millis(args.retry_backoff_ms),
        max_in_flight: args.max_in_flight,
        progress: !args.quiet,
    };
    let tally = flashsale_load::run(&target, &workload, &config).await?;
    let stock = (!args.no_setup).then_some(args.stock);
    let report = tally.report(&args.base_url, stock);
    report.print();
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

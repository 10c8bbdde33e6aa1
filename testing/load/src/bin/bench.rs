//! `flashsale-bench`: the same flash-sale workloads, in one run on one
//! machine, against each of the old design's strategies (baselines started
//! in-process, each on its own runtime) and then against the pipeline (the
//! running ingress). Writes `results.json` and `results.svg` to `--out`.
//!
//! Scenarios: `old` is the old design's own test (100 distinct users, 10
//! items, 1 product, quantity 1, all at once); `large` is many products with
//! Zipf-skewed demand far above stock, some clients retrying.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde::Serialize;

use flashsale_load::baseline::{BaselineConfig, BaselineServer, Strategy};
use flashsale_load::scenario::{run_scenario, Scenario, ScenarioResult, SystemUnderTest};
use flashsale_load::{chart, Mode};
use flashsale_testkit::{unique, Env};

/// Benchmarks the old design's strategies against the pipeline.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Directory for results.json and results.svg.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// Scenarios to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [ScenarioName::Old, ScenarioName::Large])]
    scenarios: Vec<ScenarioName>,
    /// Baseline strategies to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Strategy::ALL)]
    strategies: Vec<Strategy>,
    /// Skip the pipeline (benchmark the baselines only).
    #[arg(long)]
    no_pipeline: bool,
    /// The pipeline's ingress.
    #[arg(
        long,
        env = "FLASHSALE_INGRESS_URL",
        default_value = "http://127.0.0.1:18080"
    )]
    ingress_url: String,
    /// large: purchase requests.
    #[arg(long, default_value_t = 200_000)]
    large_requests: u64,
    /// large: products on sale.
    #[arg(long, default_value_t = 100)]
    large_products: usize,
    /// large: units of each product.
    #[arg(long, default_value_t = 100)]
    large_stock: i64,
    /// large: distinct buyers.
    #[arg(long, default_value_t = 100_000)]
    large_users: u64,
    /// large: closed loop over this many connections (unless --large-rate).
    #[arg(long, default_value_t = 128)]
    large_connections: usize,
    /// large: open loop at this many requests/s instead of closed loop.
    #[arg(long)]
    large_rate: Option<f64>,
    /// large: Zipf exponent of product popularity.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// large: fraction of clients retrying (same request ID) on error/timeout/202.
    #[arg(long, default_value_t = 0.1)]
    retry_fraction: f64,
    /// large: fraction of requests sent twice (same request ID).
    #[arg(long, default_value_t = 0.01)]
    duplicate_fraction: f64,
    /// Per-attempt HTTP timeout (ms).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Longest wait for asynchronous stores to catch up after a run (s).
    #[arg(long, default_value_t = 60)]
    settle_timeout_s: u64,
    /// Worker threads of each in-process baseline's runtime.
    #[arg(long, default_value_t = 2)]
    baseline_threads: usize,
    /// Workload seed (every system gets the same demand).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Stores and per-strategy patience of the baselines.
    #[command(flatten)]
    baseline: BaselineConfig,
}

/// A scenario to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScenarioName {
    /// The old design's test: 100 users, 10 items, 1 product, all at once.
    Old,
    /// Many products, Zipf demand far above stock.
    Large,
}

/// What `results.json` holds.
#[derive(Debug, Serialize)]
struct Results {
    /// This run's ID (prefix of every product ID it created).
    run: String,
    /// Where it ran.
    machine: Machine,
    /// Every (system, scenario) result, in run order.
    results: Vec<ScenarioResult>,
    /// Pipeline figure divided by each baseline's, per scenario.
    ratios: Vec<Ratio>,
}

/// The machine the figures come from.
#[derive(Debug, Serialize)]
struct Machine {
    /// Logical CPUs.
    cpus: usize,
    /// `model name` from /proc/cpuinfo.
    cpu_model: String,
    /// `MemTotal` from /proc/meminfo (GiB).
    memory_gib: f64,
    /// /proc/loadavg when the run started: other work on the machine skews
    /// every figure, so the results say how busy it was.
    loadavg_at_start: String,
    /// /proc/loadavg when the run ended.
    loadavg_at_end: String,
}

/// Pipeline ÷ baseline for one scenario.
#[derive(Debug, Serialize)]
struct Ratio {
    /// Scenario.
    scenario: String,
    /// The baseline divided by.
    baseline: String,
    /// Throughput: above 1, the pipeline answered more requests per second.
    throughput: f64,
    /// p50 latency: below 1, the pipeline was faster.
    p50_latency: f64,
    /// p99 latency: below 1, the pipeline was faster.
    p99_latency: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flashsale-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let run = unique("bench");
    let loadavg_at_start = loadavg();
    let scenarios: Vec<Scenario> = args.scenarios.iter().map(|w| scenario(&args, *w)).collect();
    println!("flashsale-bench {run}: {} scenario(s)", scenarios.len());
    let mut results = Vec::new();
    for strategy in &args.strategies {
        let listen: SocketAddr = "127.0.0.1:0".parse()?;
        let server =
            BaselineServer::start(*strategy, &args.baseline, listen, args.baseline_threads).await?;
        let system = SystemUnderTest::baseline(*strategy, &server.base_url());
        let outcome = run_all(&system, &scenarios, &run, &args).await;
        server.stop().await?;
        results.extend(outcome?);
    }
    if !args.no_pipeline {
        let env = Env::from_env();
        let system = SystemUnderTest::pipeline(&args.ingress_url, env.mysql().await?);
        results.extend(run_all(&system, &scenarios, &run, &args).await?);
    }
    let results = Results {
        run,
        machine: machine(loadavg_at_start),
        ratios: ratios(&results),
        results,
    };
    summarise(&results);
    write(&args, &results)
}

fn scenario(args: &Args, which: ScenarioName) -> Scenario {
    let common = Scenario {
        name: String::new(),
        products: 1,
        stock: 10,
        per_user_limit: 1,
        requests: 100,
        users: 100,
        sequential_users: true,
        zipf_exponent: 0.0,
        quantity_max: 1,
        retry_fraction: 0.0,
        duplicate_fraction: 0.0,
        mode: Mode::Closed { connections: 100 },
        timeout: Duration::from_millis(args.timeout_ms),
        seed: args.seed,
        settle_timeout: Duration::from_secs(args.settle_timeout_s),
    };
    match which {
        ScenarioName::Old => Scenario {
            name: "old".to_owned(),
            ..common
        },
        ScenarioName::Large => Scenario {
            name: "large".to_owned(),
            products: args.large_products,
            stock: args.large_stock,
            per_user_limit: 2,
            requests: args.large_requests,
            users: args.large_users,
            sequential_users: false,
            zipf_exponent: args.zipf,
            quantity_max: 2,
            retry_fraction: args.retry_fraction,
            duplicate_fraction: args.duplicate_fraction,
            mode: match args.large_rate {
                Some(rate) => Mode::Open { rate },
                None => Mode::Closed {
                    connections: args.large_connections,
                },
            },
            ..common
        },
    }
}

async fn run_all(
    system: &SystemUnderTest,
    scenarios: &[Scenario],
    run: &str,
    args: &Args,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let mut out = Vec::new();
    for scenario in scenarios {
        println!("\n-- {} / {}", system.name, scenario.name);
        let result = run_scenario(system, scenario, run, !args.quiet)
            .await
            .with_context(|| format!("{} / {}", system.name, scenario.name))?;
        result.report.print();
        println!(
            "  stored units {} at load end, {} settled ({:.1} s); oversold by orders {}; unsold despite demand {}",
            result.stored_units_at_end,
            result.stored_units,
            result.settle_s,
            result.oversold_units_by_orders,
            result.unsold_units_with_excess_demand
        );
        if let Some(units) = result.accepted_outcome_units {
            println!("  accepted purchases recorded in the outcomes table: {units} units");
        }
        out.push(result);
    }
    Ok(out)
}

fn ratios(results: &[ScenarioResult]) -> Vec<Ratio> {
    let pipeline = |scenario: &str| {
        results
            .iter()
            .find(|r| r.system == "pipeline" && r.scenario == scenario)
    };
    let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    results
        .iter()
        .filter(|r| r.system != "pipeline")
        .filter_map(|b| {
            let p = pipeline(&b.scenario)?;
            Some(Ratio {
                scenario: b.scenario.clone(),
                baseline: b.system.clone(),
                throughput: div(p.report.throughput_rps, b.report.throughput_rps),
                p50_latency: div(p.report.latency_ms.p50, b.report.latency_ms.p50),
                p99_latency: div(p.report.latency_ms.p99, b.report.latency_ms.p99),
            })
        })
        .collect()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine(loadavg_at_start: String) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown".to_owned(), |m| m.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        memory_gib: (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        loadavg_at_start,
        loadavg_at_end: loadavg(),
    }
}

fn summarise(results: &Results) {
    let m = &results.machine;
    println!(
        "\n== summary ({} on {} CPUs, {}; load average {} at start, {} at end)",
        results.run, m.cpus, m.cpu_model, m.loadavg_at_start, m.loadavg_at_end
    );
    println!(
        "  {:<6} {:<12} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "scen.",
        "system",
        "req/s",
        "p50 ms",
        "p99 ms",
        "accepted",
        "stored",
        "oversold",
        "unsold",
        "errors"
    );
    for r in &results.results {
        let errors: u64 = r.report.errors.values().sum();
        println!(
            "  {:<6} {:<12} {:>9.0} {:>9.1} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>8}",
            r.scenario,
            r.system,
            r.report.throughput_rps,
            r.report.latency_ms.p50,
            r.report.latency_ms.p99,
            r.report.accepted_units,
            r.stored_units,
            r.oversold_units_by_answers.max(r.oversold_units_by_orders),
            r.unsold_units_with_excess_demand,
            errors
        );
    }
    for q in &results.ratios {
        println!(
            "  pipeline / {:<12} ({:<5}) throughput x{:.2}  p50 x{:.2}  p99 x{:.2}",
            q.baseline, q.scenario, q.throughput, q.p50_latency, q.p99_latency
        );
    }
}

fn write(args: &Args, results: &Results) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let json = args.out.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(results)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let svg = args.out.join("results.svg");
    chart::render(&results.results, &svg)?;
    println!("\nwrote {} and {}", json.display(), svg.display());
    Ok(())
}

//! `flashsale-bench`: the same flash-sale workloads, in one run on one
//! machine, against each baseline strategy (each a `flashsale-baseline`
//! child process, or in-process with `--baseline-in-process`) and then
//! against the pipeline (the running ingress). Writes `results.json` and
//! `results.svg` to `--out`.
//!
//! Each (system, scenario) also gets its cost: CPU seconds per 1 000
//! requests and peak RSS of every process involved (the baseline server, or
//! the pipeline's processor, sinks and ingress, plus the stores: Kafka for
//! the pipeline, MariaDB and Redis for both), read from `/proc` with the
//! stack's PIDs from `--pids-dir` (see `flashsale_load::cost`).
//!
//! Scenarios: `old` is the old design's own test (100 distinct users, 10
//! items, 1 product, quantity 1, all at once); `large` is many products with
//! Zipf-skewed demand far above stock, some clients retrying.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde::Serialize;

use flashsale_load::baseline::{BaselineConfig, BaselineProcess, BaselineServer, Strategy};
use flashsale_load::cost::{self, Role, Watchlist};
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
    /// Worker threads of each baseline's runtime.
    #[arg(long, default_value_t = 2)]
    baseline_threads: usize,
    /// Run the baselines inside this process (own thread and runtime), as
    /// before: quicker to start, but their CPU is then the load
    /// generator's, so the cost figures lack the baseline server.
    #[arg(long)]
    baseline_in_process: bool,
    /// The `flashsale-baseline` binary (default: beside this one).
    #[arg(long)]
    baseline_bin: Option<PathBuf>,
    /// Where the local stack keeps `<name>.pid` files (default: `.dev/pids`
    /// here, else beside the target directory this binary is in).
    #[arg(long, env = "FLASHSALE_DEV_PIDS_DIR")]
    pids_dir: Option<PathBuf>,
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
    /// p99.9 latency: below 1, the pipeline was faster.
    p99_9_latency: f64,
    /// CPU seconds per 1 000 requests over every measured process (the
    /// system's and its stores'): below 1, the pipeline spent less CPU per
    /// request. `None` when either side was not measured.
    cpu_s_per_1k_requests: Option<f64>,
}

/// A baseline server for the length of its scenarios.
enum Baseline {
    /// Its own `flashsale-baseline` process (the default).
    Child(BaselineProcess),
    /// A thread and runtime inside this process.
    InProcess(BaselineServer),
}

impl Baseline {
    async fn start(args: &Args, strategy: Strategy) -> anyhow::Result<Self> {
        let listen: SocketAddr = "127.0.0.1:0".parse()?;
        let (config, threads) = (&args.baseline, args.baseline_threads);
        if args.baseline_in_process {
            let server = BaselineServer::start(strategy, config, listen, threads).await?;
            return Ok(Baseline::InProcess(server));
        }
        let binary = match &args.baseline_bin {
            Some(path) => path.clone(),
            None => BaselineProcess::binary_beside_current_exe()?,
        };
        let process = BaselineProcess::spawn(&binary, strategy, config, listen, threads).await?;
        Ok(Baseline::Child(process))
    }

    fn base_url(&self) -> String {
        match self {
            Baseline::Child(p) => p.base_url(),
            Baseline::InProcess(s) => s.base_url(),
        }
    }

    /// The processes a scenario against it measures: its own (when it has
    /// one) and the stores.
    fn watchlist(&self, pids_dir: &Path) -> Watchlist {
        let mut watch = Watchlist::from_pid_files(pids_dir, &cost::BASELINE_STORES);
        match self {
            Baseline::Child(p) => watch.add("baseline", p.pid, Role::System),
            Baseline::InProcess(_) => {
                watch.unmeasured.insert(
                    "baseline".to_owned(),
                    "in-process: its CPU is in load_generator".to_owned(),
                );
            }
        }
        watch
    }

    async fn stop(self) -> anyhow::Result<()> {
        match self {
            Baseline::Child(p) => p.stop().await.map(|_| ()),
            Baseline::InProcess(s) => s.stop().await,
        }
    }
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
    let pids_dir = pids_dir(&args);
    let mut results = Vec::new();
    for strategy in &args.strategies {
        let server = Baseline::start(&args, *strategy)
            .await
            .with_context(|| format!("starting baseline {}", strategy.name()))?;
        let system = SystemUnderTest::baseline(*strategy, &server.base_url())
            .with_watch(server.watchlist(&pids_dir));
        let outcome = run_all(&system, &scenarios, &run, &args).await;
        server.stop().await?;
        results.extend(outcome?);
    }
    if !args.no_pipeline {
        let env = Env::from_env();
        let watch = Watchlist::from_pid_files(&pids_dir, &cost::PIPELINE_PROCESSES);
        let system =
            SystemUnderTest::pipeline(&args.ingress_url, env.mysql().await?).with_watch(watch);
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

/// `--pids-dir`, else `.dev/pids` under the working directory (`dev/bench`
/// runs from the repository root), else `.dev/pids` beside the `target`
/// directory holding this binary (`target/<profile>/flashsale-bench`).
fn pids_dir(args: &Args) -> PathBuf {
    if let Some(dir) = &args.pids_dir {
        return dir.clone();
    }
    let here = PathBuf::from(".dev/pids");
    if here.is_dir() {
        return here;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join(".dev/pids")))
        .filter(|dir| dir.is_dir())
        .unwrap_or(here)
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
        if let Some(flagged) = result.baseline_stats.as_ref().map(|s| s.flag_answers) {
            if flagged > 0 {
                println!("  answered from the in-process sold-out flag: {flagged}");
            }
        }
        if let Some(cost) = &result.cost {
            cost.print();
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
    let cpu = |r: &ScenarioResult| r.cost.as_ref().map(|c| c.cpu_s_per_1k_requests);
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
                p99_9_latency: div(p.report.latency_ms.p99_9, b.report.latency_ms.p99_9),
                cpu_s_per_1k_requests: cpu(p).zip(cpu(b)).map(|(p, b)| div(p, b)),
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
        "  {:<6} {:<14} {:>8} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8}",
        "scen.",
        "system",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "accepted",
        "stored",
        "oversold",
        "unsold",
        "errors",
        "cpu s/1k",
        "own s/1k",
        "store/1k"
    );
    for r in &results.results {
        let errors: u64 = r.report.errors.values().sum();
        let l = &r.report.latency_ms;
        let cpu = |f: fn(&cost::CostReport) -> f64| {
            r.cost
                .as_ref()
                .map_or_else(|| "-".to_owned(), |c| format!("{:.3}", f(c)))
        };
        println!(
            "  {:<6} {:<14} {:>8.0} {:>7.1} {:>7.1} {:>7.1} {:>8.1} {:>8.1} {:>8} {:>7} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8}",
            r.scenario,
            r.system,
            r.report.throughput_rps,
            l.p50,
            l.p90,
            l.p99,
            l.p99_9,
            l.max,
            r.report.accepted_units,
            r.stored_units,
            r.oversold_units_by_answers.max(r.oversold_units_by_orders),
            r.unsold_units_with_excess_demand,
            errors,
            cpu(|c| c.cpu_s_per_1k_requests),
            cpu(|c| c.system_cpu_s_per_1k_requests),
            cpu(|c| c.stores_cpu_s_per_1k_requests),
        );
    }
    for q in &results.ratios {
        let cpu = q
            .cpu_s_per_1k_requests
            .map_or_else(String::new, |c| format!("  cpu/1k x{c:.2}"));
        println!(
            "  pipeline / {:<14} ({:<5}) throughput x{:.2}  p50 x{:.2}  p99 x{:.2}  p99.9 x{:.2}{cpu}",
            q.baseline, q.scenario, q.throughput, q.p50_latency, q.p99_latency, q.p99_9_latency
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

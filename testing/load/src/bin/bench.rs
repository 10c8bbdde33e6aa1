//! `flashsale-bench`: the same flash-sale workloads, in one run on one
//! machine, against each baseline strategy (each a `flashsale-baseline`
//! child process, or in-process with `--baseline-in-process`) and then
//! against the pipeline (the running ingress). Writes `results.json`,
//! `results.svg` (when a scenario ran) and `sweep.svg` (when the sweep ran)
//! to `--out`.
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
//!
//! Then the open-loop sweep (`--sweep-*`, see `flashsale_load::sweep`): for
//! each of `--sweep-systems` (by default the pipeline, `redis-lua` and
//! `redis-lua-flag`), fresh `large`-shaped sales at a rising offered rate
//! until p99 passes the limit, an answer is undecided or the client cannot
//! send the rate; then one step at half the highest sustainable rate.
//! Written into `results.json` (`sweep`, `sweep_config`) and `sweep.svg`.
//! `--only sweep` skips the scenarios, `--no-sweep` the sweep.
//!
//! `--pipeline-label` names the pipeline's figures: a run against the same
//! ingress with another processor behind it (`pipeline-kstreams`) is the
//! pipeline under another name, and its results say which it was.

use std::collections::BTreeMap;
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
use flashsale_load::sweep::{self, SweepConfig, SweepSettings, SystemSweep};
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
    /// Skip the pipeline (benchmark the baselines only), in the scenarios
    /// and the sweep.
    #[arg(long)]
    no_pipeline: bool,
    /// Skip every baseline (benchmark the pipeline only), in the scenarios
    /// and the sweep: e.g. a second run over another processor, whose
    /// baselines the first run already measured.
    #[arg(long, conflicts_with = "no_pipeline")]
    no_baselines: bool,
    /// The name the pipeline's figures carry: e.g. `pipeline-kstreams` for a
    /// run against the same ingress with another processor behind it.
    #[arg(long, default_value = "pipeline")]
    pipeline_label: String,
    /// Run one part only: `scenarios` (no sweep) or `sweep` (no scenarios).
    #[arg(long, value_enum, conflicts_with = "no_sweep")]
    only: Option<Part>,
    /// Skip the open-loop sweep.
    #[arg(long)]
    no_sweep: bool,
    /// Sweep: the systems to sweep, `pipeline` (or its --pipeline-label)
    /// and baseline strategies, whatever --strategies says.
    #[arg(long, value_delimiter = ',', default_values = ["pipeline", "redis-lua", "redis-lua-flag"])]
    sweep_systems: Vec<String>,
    /// Sweep: offered rate of the first step (requests/s).
    #[arg(long, default_value_t = 500.0)]
    sweep_start_rps: f64,
    /// Sweep: each step offers this many times the previous step's rate.
    #[arg(long, default_value_t = 1.5)]
    sweep_factor: f64,
    /// Sweep: length of each step's load (s).
    #[arg(long, default_value_t = 10.0)]
    sweep_step_s: f64,
    /// Sweep: most steps per system (its load lasts at most steps × step).
    #[arg(long, default_value_t = 12)]
    sweep_steps_max: usize,
    /// Sweep: a step fails when its p99 exceeds this (ms).
    #[arg(long, default_value_t = 100.0)]
    sweep_p99_ms_max: f64,
    /// Sweep: a step sent at under this fraction of its offered rate (the
    /// in-flight cap never full) stops the sweep: the client is the limit.
    #[arg(long, default_value_t = 0.9)]
    sweep_sent_fraction_min: f64,
    /// Sweep: demanded units ÷ stock of each step's sale; stock scales with
    /// the step's demand so every step has the same mix of answers.
    #[arg(long, default_value_t = 10.0)]
    sweep_demand_per_stock: f64,
    /// Length of the step at half the highest sustainable rate after each
    /// system's sweep (s; default twice --sweep-step-s).
    #[arg(long)]
    half_rate_s: Option<f64>,
    /// No half-rate step.
    #[arg(long)]
    no_half_rate: bool,
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

/// A part of the run `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// The scenarios (`--scenarios`), no sweep.
    Scenarios,
    /// The open-loop sweep, no scenarios.
    Sweep,
}

/// What `results.json` holds.
#[derive(Debug, Serialize)]
struct Results {
    /// This run's ID (prefix of every product ID it created).
    run: String,
    /// Where it ran.
    machine: Machine,
    /// The name the pipeline's figures carry (`--pipeline-label`).
    pipeline_label: String,
    /// Every (system, scenario) result, in run order.
    results: Vec<ScenarioResult>,
    /// Pipeline figure divided by each baseline's, per scenario.
    ratios: Vec<Ratio>,
    /// How the sweep ran; `None` when it did not.
    sweep_config: Option<SweepSettings>,
    /// Each swept system's steps, highest sustainable rate, stop reason and
    /// half-rate step, by system name.
    sweep: BTreeMap<String, SystemSweep>,
}

/// What this run does, resolved from the arguments.
struct RunPlan {
    /// The scenarios to run (empty with `--only sweep`).
    scenarios: Vec<Scenario>,
    /// The sweep's settings; `None`: no sweep.
    sweep: Option<SweepConfig>,
    /// Whether the sweep covers the pipeline.
    sweep_pipeline: bool,
    /// The baselines the sweep covers.
    sweep_baselines: Vec<Strategy>,
}

/// What the systems produced so far.
#[derive(Default)]
struct Collected {
    /// Scenario results, in run order.
    results: Vec<ScenarioResult>,
    /// Sweeps, by system name.
    sweeps: BTreeMap<String, SystemSweep>,
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
    let plan = RunPlan::new(&args)?;
    plan.announce(&run);
    let pids_dir = pids_dir(&args);
    let mut collected = Collected::default();
    for strategy in plan.baselines(&args) {
        run_baseline(&args, &plan, strategy, &pids_dir, &run, &mut collected).await?;
    }
    if !args.no_pipeline && (!plan.scenarios.is_empty() || plan.sweep_pipeline) {
        run_pipeline(&args, &plan, &pids_dir, &run, &mut collected).await?;
    }
    let results = Results {
        run,
        machine: machine(loadavg_at_start),
        pipeline_label: args.pipeline_label.clone(),
        ratios: ratios(&collected.results, &args.pipeline_label),
        results: collected.results,
        sweep_config: plan.sweep.as_ref().map(SweepConfig::settings),
        sweep: collected.sweeps,
    };
    summarise(&results);
    write(&args, &results)
}

impl RunPlan {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let label = args.pipeline_label.as_str();
        anyhow::ensure!(
            !label.is_empty() && Strategy::ALL.iter().all(|s| s.name() != label),
            "--pipeline-label {label:?}: must be non-empty and not a baseline's name"
        );
        let scenarios = match args.only {
            Some(Part::Sweep) => Vec::new(),
            _ => args.scenarios.iter().map(|w| scenario(args, *w)).collect(),
        };
        let swept = !args.no_sweep && args.only != Some(Part::Scenarios);
        let sweep = if swept {
            Some(sweep_config(args)?)
        } else {
            None
        };
        let (sweep_pipeline, sweep_baselines) = sweep_systems(args)?;
        Ok(Self {
            scenarios,
            sweep_pipeline: swept && sweep_pipeline && !args.no_pipeline,
            sweep_baselines: if swept && !args.no_baselines {
                sweep_baselines
            } else {
                Vec::new()
            },
            sweep,
        })
    }

    /// The baselines to start, in order: those the scenarios run, then
    /// those only the sweep needs.
    fn baselines(&self, args: &Args) -> Vec<Strategy> {
        let mut order = if self.scenarios.is_empty() || args.no_baselines {
            Vec::new()
        } else {
            args.strategies.clone()
        };
        for strategy in &self.sweep_baselines {
            if !order.contains(strategy) {
                order.push(*strategy);
            }
        }
        order
    }

    fn announce(&self, run: &str) {
        println!(
            "flashsale-bench {run}: {} scenario(s)",
            self.scenarios.len()
        );
        if let Some(config) = &self.sweep {
            let settings = config.settings();
            let mut systems: Vec<&str> = self.sweep_baselines.iter().map(|s| s.name()).collect();
            if self.sweep_pipeline {
                systems.push("the pipeline");
            }
            println!(
                "  sweep of {}: at most {:.0} s of load per system",
                systems.join(", "),
                settings.load_s_max_per_system
            );
        }
    }
}

/// `--sweep-systems`: whether the pipeline is among them (as `pipeline`
/// or its label), and which baselines, each once.
fn sweep_systems(args: &Args) -> anyhow::Result<(bool, Vec<Strategy>)> {
    let mut pipeline = false;
    let mut baselines = Vec::new();
    for name in args.sweep_systems.iter().map(|n| n.trim()) {
        if name == "pipeline" || name == args.pipeline_label {
            pipeline = true;
            continue;
        }
        let strategy = Strategy::from_str(name, true).map_err(|_| {
            let known: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
            anyhow::anyhow!(
                "--sweep-systems: no system {name:?} (pipeline, {})",
                known.join(", ")
            )
        })?;
        if !baselines.contains(&strategy) {
            baselines.push(strategy);
        }
    }
    Ok((pipeline, baselines))
}

/// The sweep's settings; its sales have the `large` scenario's shape.
fn sweep_config(args: &Args) -> anyhow::Result<SweepConfig> {
    let secs = |s: f64, flag: &str| {
        Duration::try_from_secs_f64(s)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("{flag}: not a positive number of seconds: {s}"))
    };
    let step = secs(args.sweep_step_s, "--sweep-step-s")?;
    let half_rate_step = match (args.no_half_rate, args.half_rate_s) {
        (true, _) => None,
        (false, Some(s)) => Some(secs(s, "--half-rate-s")?),
        (false, None) => Some(step * 2),
    };
    let config = SweepConfig {
        start_rps: args.sweep_start_rps,
        factor: args.sweep_factor,
        step,
        steps_max: args.sweep_steps_max,
        p99_max_ms: args.sweep_p99_ms_max,
        sent_fraction_min: args.sweep_sent_fraction_min,
        demand_per_stock: args.sweep_demand_per_stock,
        users_per_request: args.large_users as f64 / args.large_requests.max(1) as f64,
        half_rate_step,
        shape: scenario(args, ScenarioName::Large),
    };
    config.validate().context("the sweep's settings")?;
    Ok(config)
}

/// One baseline server for its scenarios (when --strategies names it) and
/// its sweep (when --sweep-systems does).
async fn run_baseline(
    args: &Args,
    plan: &RunPlan,
    strategy: Strategy,
    pids_dir: &Path,
    run: &str,
    collected: &mut Collected,
) -> anyhow::Result<()> {
    let server = Baseline::start(args, strategy)
        .await
        .with_context(|| format!("starting baseline {}", strategy.name()))?;
    let system = SystemUnderTest::baseline(strategy, &server.base_url())
        .with_watch(server.watchlist(pids_dir));
    let scenarios: &[Scenario] = if args.strategies.contains(&strategy) {
        &plan.scenarios
    } else {
        &[]
    };
    let outcome = run_all(&system, scenarios, run, args).await;
    let swept = match &plan.sweep {
        Some(config) if outcome.is_ok() && plan.sweep_baselines.contains(&strategy) => {
            Some(sweep::sweep(&system, config, run, !args.quiet).await)
        }
        _ => None,
    };
    server.stop().await?;
    collected.results.extend(outcome?);
    if let Some(swept) = swept {
        collected.sweeps.insert(system.name, swept);
    }
    Ok(())
}

/// The pipeline's running ingress, under --pipeline-label, for the
/// scenarios and (when --sweep-systems names it) the sweep.
async fn run_pipeline(
    args: &Args,
    plan: &RunPlan,
    pids_dir: &Path,
    run: &str,
    collected: &mut Collected,
) -> anyhow::Result<()> {
    let env = Env::from_env();
    let watch = Watchlist::from_pid_files(pids_dir, &cost::PIPELINE_PROCESSES);
    let system = SystemUnderTest::pipeline(&args.ingress_url, env.mysql().await?)
        .named(&args.pipeline_label)
        .with_watch(watch);
    collected
        .results
        .extend(run_all(&system, &plan.scenarios, run, args).await?);
    if let (Some(config), true) = (&plan.sweep, plan.sweep_pipeline) {
        let swept = sweep::sweep(&system, config, run, !args.quiet).await;
        collected.sweeps.insert(system.name, swept);
    }
    Ok(())
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

/// Pipeline ÷ baseline ratios, the pipeline being the system named
/// `pipeline_label`.
fn ratios(results: &[ScenarioResult], pipeline_label: &str) -> Vec<Ratio> {
    let pipeline = |scenario: &str| {
        results
            .iter()
            .find(|r| r.system == pipeline_label && r.scenario == scenario)
    };
    let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let cpu = |r: &ScenarioResult| r.cost.as_ref().map(|c| c.cpu_s_per_1k_requests);
    results
        .iter()
        .filter(|r| r.system != pipeline_label)
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
    if !results.results.is_empty() {
        print_scenarios(&results.results);
    }
    for q in &results.ratios {
        let cpu = q
            .cpu_s_per_1k_requests
            .map_or_else(String::new, |c| format!("  cpu/1k x{c:.2}"));
        println!(
            "  {} / {:<14} ({:<5}) throughput x{:.2}  p50 x{:.2}  p99 x{:.2}  p99.9 x{:.2}{cpu}",
            results.pipeline_label,
            q.baseline,
            q.scenario,
            q.throughput,
            q.p50_latency,
            q.p99_latency,
            q.p99_9_latency
        );
    }
    if let (Some(c), false) = (&results.sweep_config, results.sweep.is_empty()) {
        println!(
            "\n== sweep (open loop, {} s steps from {}/s x{}, demand {}x stock; a step fails at p99 > {} ms, any error, or sent < {:.0}% of offered)",
            c.step_s,
            c.start_rps,
            c.factor,
            c.demand_per_stock,
            c.p99_max_ms,
            100.0 * c.sent_fraction_min
        );
        sweep::print_table(&results.sweep);
    }
}

/// The scenario results, one row each.
fn print_scenarios(results: &[ScenarioResult]) {
    println!(
        "  {:<6} {:<17} {:>8} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8}",
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
    for r in results {
        let errors: u64 = r.report.errors.values().sum();
        let l = &r.report.latency_ms;
        let cpu = |f: fn(&cost::CostReport) -> f64| {
            r.cost
                .as_ref()
                .map_or_else(|| "-".to_owned(), |c| format!("{:.3}", f(c)))
        };
        println!(
            "  {:<6} {:<17} {:>8.0} {:>7.1} {:>7.1} {:>7.1} {:>8.1} {:>8.1} {:>8} {:>7} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8}",
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
}

/// Writes `results.json`, `results.svg` (when a scenario ran: a sweep-only
/// run leaves an earlier chart alone) and `sweep.svg` (when a sweep ran).
fn write(args: &Args, results: &Results) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let json = args.out.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(results)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let mut written = vec![json];
    if !results.results.is_empty() {
        let svg = args.out.join("results.svg");
        chart::render(&results.results, &svg)?;
        written.push(svg);
    }
    if let (Some(config), false) = (&results.sweep_config, results.sweep.is_empty()) {
        let svg = args.out.join("sweep.svg");
        let caption = format!(
            "open-loop sweep, {}: {} s steps from {}/s x{}; x = failed step, triangle = half rate",
            results.run, config.step_s, config.start_rps, config.factor
        );
        chart::render_sweep(&results.sweep, config.p99_max_ms, &caption, &svg)?;
        written.push(svg);
    }
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    println!("\nwrote {}", names.join(", "));
    Ok(())
}

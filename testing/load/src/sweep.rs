//! The open-loop sweep: one system at a rising offered rate, step by step,
//! until it stops keeping up; then one longer step at half the highest rate
//! it sustained.
//!
//! Each step is a fresh flash sale (new product IDs, so no step inherits a
//! sold-out product or a remembered request ID from another) with the shape
//! of the `large` scenario: many buyers, Zipf-skewed products, 1–2 units,
//! some clients retrying, a few duplicates. It is sent open loop (latency
//! from the intended send time, see [`crate::driver`]) at
//! `start × factor^k` requests/s for a fixed length.
//!
//! **The mix.** With a fixed stock, a faster step would sell out sooner and
//! answer a larger share `sold_out`, which most systems answer more cheaply
//! than a purchase (`redis-lua-flag` from memory, without Redis): each rate
//! would measure a different workload. So each step's stock scales with its
//! demand (`demand_per_stock` fixed: at 10, over 100 Zipf products, the
//! hottest sells out within the step's first percent and the coldest about
//! half-way, so most answers are `sold_out`, as in a real flash sale, but
//! never all), and every system gets the same requests (same seed). Each
//! step records its accepted and sold_out counts: the mix it measured.
//!
//! **Stopping.** A step fails on the first of: any undecided answer (error,
//! timeout, 202); the client sending less than `sent_fraction_min` of the
//! offered rate while the in-flight cap never filled, or p99 over
//! `p99_max_ms` from the intended send but within it from the actual send
//! (the load generator, starved of CPU, not the system, is then the limit:
//! [`StopReason::ClientLimit`]); p99 above `p99_max_ms`; the rate missed
//! because the system's backlog filled the cap. The sweep stops at
//! the first failed step; the highest sustainable rate is the last step
//! that passed. Load lasts at most `steps_max × step` per system, plus the
//! half-rate step; each step also configures its sale and waits for the
//! stores to settle (bounded by the scenario's settle timeout).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::client::Mode;
use crate::scenario::{run_scenario, Scenario, ScenarioResult, SystemUnderTest};
use crate::tally::Report;

/// The rejection a flash sale answers most.
const SOLD_OUT: &str = "sold_out";

/// How a sweep runs.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Offered rate of the first step (requests/s).
    pub start_rps: f64,
    /// Each step offers this many times the previous step's rate.
    pub factor: f64,
    /// Length of each step's load.
    pub step: Duration,
    /// Most steps per system: with `step`, the bound on its load time.
    pub steps_max: usize,
    /// A step passes only with its p99 at most this (ms).
    pub p99_max_ms: f64,
    /// Below this fraction of the offered rate sent (the in-flight cap
    /// never full), the client was the limit.
    pub sent_fraction_min: f64,
    /// Demanded units ÷ stock units of each step's sale.
    pub demand_per_stock: f64,
    /// Distinct buyers per request (`large`: 100 000 for 200 000).
    pub users_per_request: f64,
    /// Length of the step at half the highest sustainable rate; `None`: no
    /// such step.
    pub half_rate_step: Option<Duration>,
    /// Everything else about a step's sale and clients (products, skew,
    /// quantities, per-user limit, retries, duplicates, timeout, seed,
    /// settle timeout): the `large` scenario's. Its name, requests, users,
    /// stock and mode are replaced per step.
    pub shape: Scenario,
}

/// What `results.json` says about how the sweep ran.
#[derive(Debug, Clone, Serialize)]
pub struct SweepSettings {
    /// Offered rate of the first step (requests/s).
    pub start_rps: f64,
    /// Rate multiplier from one step to the next.
    pub factor: f64,
    /// Length of each step's load (s).
    pub step_s: f64,
    /// Most steps per system.
    pub steps_max: usize,
    /// The p99 limit (ms).
    pub p99_max_ms: f64,
    /// The sent fraction below which the client was the limit.
    pub sent_fraction_min: f64,
    /// Demanded units ÷ stock units of each step's sale.
    pub demand_per_stock: f64,
    /// Distinct buyers per request.
    pub users_per_request: f64,
    /// Length of the half-rate step (s); `None`: not run.
    pub half_rate_s: Option<f64>,
    /// Most load time per system (s): steps_max × step_s + half_rate_s.
    pub load_s_max_per_system: f64,
    /// Products on sale in each step.
    pub products: usize,
    /// Zipf exponent of product popularity.
    pub zipf_exponent: f64,
    /// Most units per user and product.
    pub per_user_limit: i32,
    /// Units per request: 1..=quantity_max.
    pub quantity_max: i32,
    /// Fraction of clients retrying undecided answers.
    pub retry_fraction: f64,
    /// Fraction of requests sent twice.
    pub duplicate_fraction: f64,
    /// Workload seed.
    pub seed: u64,
}

/// Why a step failed, or why a sweep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Some answers were undecided: errors, timeouts, 202s.
    Errors,
    /// The client sent less than the offered rate by itself, or its own
    /// send lag alone took p99 over the limit: the load generator, not the
    /// system, was the limit; the system's own limit is at least the last
    /// passing rate.
    ClientLimit,
    /// p99 above the limit.
    P99OverLimit,
    /// The offered rate was missed because the system's backlog filled the
    /// client's in-flight cap (with p99 somehow within the limit).
    Backlog,
    /// Every step passed: the limit is above the last step's rate.
    StepsMax,
    /// A step could not run (no /health, a sale not configured, ...).
    RunError,
}

/// A failed step's reason and its figures in words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// Which rule failed.
    pub reason: StopReason,
    /// The figures behind it.
    pub detail: String,
}

impl Failure {
    fn new(reason: StopReason, detail: String) -> Self {
        Self { reason, detail }
    }
}

/// One open-loop step of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepStep {
    /// Position in the sweep (0-based); `None` for the half-rate step.
    pub step: Option<usize>,
    /// Offered rate (requests/s).
    pub offered_rps: f64,
    /// Length of the load (s).
    pub duration_s: f64,
    /// Logical requests sent.
    pub requests: u64,
    /// Requests really sent per second (first send to last).
    pub achieved_rps: f64,
    /// Requests answered per second (first send to last answer).
    pub answered_rps: f64,
    /// Median latency from the intended send time (ms).
    pub p50_ms: f64,
    /// 90th percentile (ms).
    pub p90_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// 99.9th percentile (ms).
    pub p99_9_ms: f64,
    /// Slowest request (ms).
    pub max_ms: f64,
    /// 99th percentile of the client's own send lag (ms).
    pub send_lag_p99_ms: f64,
    /// 99th percentile from the actual send (ms): without the client's lag.
    pub service_p99_ms: f64,
    /// Times a request was due while the in-flight cap was full.
    pub in_flight_cap_waits: u64,
    /// Undecided requests (errors, timeouts, 202s).
    pub errors: u64,
    /// Those, by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Requests answered accepted.
    pub accepted: u64,
    /// Units in those.
    pub accepted_units: i64,
    /// Requests answered `sold_out`.
    pub sold_out: u64,
    /// Other rejections, by reason (`limit_exceeded`, ...).
    pub rejected_other: BTreeMap<String, u64>,
    /// Units of each product on sale.
    pub stock_per_product: i64,
    /// Units over all products.
    pub total_stock: i64,
    /// Units asked for.
    pub demand_units: i64,
    /// Units sold above stock, by the answers or the stored orders
    /// (whichever is more): anything but 0 is a correctness failure.
    pub oversold_units: i64,
    /// Units in stored orders once settled.
    pub stored_units: i64,
    /// How long the stores took to settle after the load (s).
    pub settle_s: f64,
    /// CPU seconds per 1 000 requests over the measured processes; `None`
    /// when not measured.
    pub cpu_s_per_1k_requests: Option<f64>,
    /// Common prefix of the step's product IDs.
    pub product_prefix: String,
    /// Whether the step passed every rule.
    pub passed: bool,
    /// Why not, when it did not.
    pub failure: Option<Failure>,
}

/// One system's sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SystemSweep {
    /// Every step run, the failed one (if any) last.
    pub steps: Vec<SweepStep>,
    /// Offered rate of the last step that passed; `None`: none did.
    pub highest_sustainable_rps: Option<f64>,
    /// The sweep ended without finding the system's limit (the client was
    /// the limit, or every step passed): the system sustains at least
    /// `highest_sustainable_rps`.
    pub highest_is_lower_bound: bool,
    /// Why the sweep ended.
    pub stop_reason: StopReason,
    /// The figures behind it.
    pub stop_detail: String,
    /// The longer step at half `highest_sustainable_rps`.
    pub half_rate: Option<SweepStep>,
    /// Why there is no half-rate step, when there is none.
    pub half_rate_note: Option<String>,
}

impl SweepConfig {
    /// Checks the settings make a finite, rising sweep.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        anyhow::ensure!(
            positive(self.start_rps),
            "the sweep's start rate must be positive"
        );
        anyhow::ensure!(
            self.factor.is_finite() && self.factor > 1.0,
            "the sweep's factor must be above 1"
        );
        anyhow::ensure!(self.steps_max >= 1, "the sweep needs at least one step");
        anyhow::ensure!(!self.step.is_zero(), "the sweep's steps need a length");
        anyhow::ensure!(positive(self.p99_max_ms), "the p99 limit must be positive");
        anyhow::ensure!(
            self.sent_fraction_min > 0.0 && self.sent_fraction_min <= 1.0,
            "the sent fraction must be in (0, 1]"
        );
        anyhow::ensure!(
            positive(self.demand_per_stock),
            "demand per stock must be positive"
        );
        anyhow::ensure!(
            positive(self.users_per_request),
            "users per request must be positive"
        );
        Ok(())
    }

    /// The offered rate of step `k` (0-based).
    pub fn rate_rps(&self, k: usize) -> f64 {
        self.start_rps * self.factor.powf(k as f64)
    }

    /// The sale and clients of one step: `rate_rps` for `length`, stock
    /// and buyers scaled to its requests so every step has the same mix.
    pub fn scenario(&self, name: &str, rate_rps: f64, length: Duration) -> Scenario {
        let requests = (rate_rps * length.as_secs_f64()).round().max(1.0);
        // Quantities are uniform over 1..=quantity_max.
        let mean_units = f64::from(1 + self.shape.quantity_max.max(1)) / 2.0;
        let products = self.shape.products.max(1) as f64;
        let stock = (requests * mean_units / (products * self.demand_per_stock))
            .round()
            .max(1.0);
        Scenario {
            name: name.to_owned(),
            requests: requests as u64,
            users: (requests * self.users_per_request).round().max(1.0) as u64,
            stock: stock as i64,
            mode: Mode::Open { rate: rate_rps },
            ..self.shape.clone()
        }
    }

    /// The settings as `results.json` records them.
    pub fn settings(&self) -> SweepSettings {
        let step_s = self.step.as_secs_f64();
        let half_rate_s = self.half_rate_step.map(|d| d.as_secs_f64());
        SweepSettings {
            start_rps: self.start_rps,
            factor: self.factor,
            step_s,
            steps_max: self.steps_max,
            p99_max_ms: self.p99_max_ms,
            sent_fraction_min: self.sent_fraction_min,
            demand_per_stock: self.demand_per_stock,
            users_per_request: self.users_per_request,
            half_rate_s,
            load_s_max_per_system: self.steps_max as f64 * step_s + half_rate_s.unwrap_or(0.0),
            products: self.shape.products,
            zipf_exponent: self.shape.zipf_exponent,
            per_user_limit: self.shape.per_user_limit,
            quantity_max: self.shape.quantity_max,
            retry_fraction: self.shape.retry_fraction,
            duplicate_fraction: self.shape.duplicate_fraction,
            seed: self.shape.seed,
        }
    }
}

/// Whether a step's report passes the sweep's rules; the failed rule if
/// not. Errors come first (an undecided answer is a failure at any
/// latency); then a client that fell behind on its own, since its lateness
/// is in every latency and would otherwise be blamed on the system: it sent
/// short of the rate, or p99 is over the limit only when counted from the
/// intended send (from the actual send it is within, the cap never full).
pub fn judge(report: &Report, config: &SweepConfig) -> Option<Failure> {
    let errors: u64 = report.errors.values().sum();
    if errors > 0 {
        let kinds: Vec<String> = report
            .errors
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let detail = format!("{errors} undecided answer(s): {}", kinds.join(", "));
        return Some(Failure::new(StopReason::Errors, detail));
    }
    let offered = report.rate_rps.unwrap_or(report.sent_rps);
    let sent = format!(
        "sent {:.0}/s of {offered:.0}/s offered ({:.0}%)",
        report.sent_rps,
        100.0 * report.sent_rps / offered.max(1e-9)
    );
    let short_of_rate = report.sent_rps < config.sent_fraction_min * offered;
    if short_of_rate && report.in_flight_cap_waits == 0 {
        let detail = format!(
            "the client {sent}, send lag p99 {:.1} ms",
            report.send_lag_p99_ms
        );
        return Some(Failure::new(StopReason::ClientLimit, detail));
    }
    let cap = if report.in_flight_cap_waits > 0 {
        format!(
            "; the backlog filled the in-flight cap {} time(s), {sent}",
            report.in_flight_cap_waits
        )
    } else {
        String::new()
    };
    let (p99, limit) = (report.latency_ms.p99, config.p99_max_ms);
    let lag = format!(
        "from the actual send p99 {:.1} ms, client send lag p99 {:.1} ms",
        report.service_p99_ms, report.send_lag_p99_ms
    );
    if p99 > limit && report.in_flight_cap_waits == 0 && report.service_p99_ms <= limit {
        // The system answered within the limit once the requests left; the
        // client's own lateness (a starved scheduler) pushed p99 over.
        let detail = format!("p99 {p99:.1} ms > {limit:.0} ms only with the client's lag: {lag}");
        return Some(Failure::new(StopReason::ClientLimit, detail));
    }
    if p99 > limit {
        let detail = format!("p99 {p99:.1} ms > {limit:.0} ms ({lag}){cap}");
        return Some(Failure::new(StopReason::P99OverLimit, detail));
    }
    if short_of_rate {
        let detail = cap.trim_start_matches("; ").to_owned();
        return Some(Failure::new(StopReason::Backlog, detail));
    }
    None
}

impl SweepStep {
    /// The step's figures from its scenario result and judgement.
    fn new(
        step: Option<usize>,
        offered_rps: f64,
        length: Duration,
        r: &ScenarioResult,
        failure: Option<Failure>,
    ) -> Self {
        let report = &r.report;
        let l = &report.latency_ms;
        let rejected_other = report
            .rejected
            .iter()
            .filter(|(reason, _)| reason.as_str() != SOLD_OUT)
            .map(|(reason, n)| (reason.clone(), *n))
            .collect();
        Self {
            step,
            offered_rps,
            duration_s: length.as_secs_f64(),
            requests: report.requests,
            achieved_rps: report.sent_rps,
            answered_rps: report.throughput_rps,
            p50_ms: l.p50,
            p90_ms: l.p90,
            p99_ms: l.p99,
            p99_9_ms: l.p99_9,
            max_ms: l.max,
            send_lag_p99_ms: report.send_lag_p99_ms,
            service_p99_ms: report.service_p99_ms,
            in_flight_cap_waits: report.in_flight_cap_waits,
            errors: report.errors.values().sum(),
            errors_by_kind: report.errors.clone(),
            accepted: report.accepted_requests,
            accepted_units: report.accepted_units,
            sold_out: report.rejected.get(SOLD_OUT).copied().unwrap_or(0),
            rejected_other,
            stock_per_product: r.stock_per_product,
            total_stock: r.total_stock,
            demand_units: report.demand_units,
            oversold_units: r.oversold_units_by_answers.max(r.oversold_units_by_orders),
            stored_units: r.stored_units,
            settle_s: r.settle_s,
            cpu_s_per_1k_requests: r.cost.as_ref().map(|c| c.cpu_s_per_1k_requests),
            product_prefix: r.product_prefix.clone(),
            passed: failure.is_none(),
            failure,
        }
    }
}

/// Runs one step (`step` `None`: the half-rate step) and judges it.
async fn run_step(
    system: &SystemUnderTest,
    config: &SweepConfig,
    run: &str,
    step: Option<usize>,
    rate_rps: f64,
    length: Duration,
    progress: bool,
) -> anyhow::Result<SweepStep> {
    let name = step.map_or_else(|| "swh".to_owned(), |k| format!("sw{k}"));
    let scenario = config.scenario(&name, rate_rps, length);
    let result = run_scenario(system, &scenario, run, progress).await?;
    let failure = judge(&result.report, config);
    let step = SweepStep::new(step, rate_rps, length, &result, failure);
    println!("{}", step_line(&system.name, &step));
    if step.oversold_units > 0 {
        println!("  OVERSOLD by {} units", step.oversold_units);
    }
    Ok(step)
}

/// Sweeps `system`: steps at a rising rate until one fails or `steps_max`
/// ran, then the half-rate step. A step that cannot run ends the sweep
/// with [`StopReason::RunError`] instead of failing the whole benchmark.
pub async fn sweep(
    system: &SystemUnderTest,
    config: &SweepConfig,
    run: &str,
    progress: bool,
) -> SystemSweep {
    println!(
        "\n-- {} / sweep: open loop, {:.0} s steps from {:.0}/s x{}, at most {} steps",
        system.name,
        config.step.as_secs_f64(),
        config.start_rps,
        config.factor,
        config.steps_max
    );
    print_header();
    let mut steps: Vec<SweepStep> = Vec::new();
    let last_rps = config.rate_rps(config.steps_max - 1);
    let mut stop = Failure::new(
        StopReason::StepsMax,
        format!("every step passed, up to {last_rps:.0}/s"),
    );
    for k in 0..config.steps_max {
        let rate = config.rate_rps(k);
        match run_step(system, config, run, Some(k), rate, config.step, progress).await {
            Ok(step) => {
                let failure = step.failure.clone();
                steps.push(step);
                if let Some(failure) = failure {
                    stop = failure;
                    break;
                }
            }
            Err(e) => {
                stop = Failure::new(StopReason::RunError, format!("at {rate:.0}/s: {e:#}"));
                println!("  step {k} could not run: {}", stop.detail);
                break;
            }
        }
    }
    // Steps stop at the first failure, so the last passing step is the
    // fastest that passed.
    let highest = steps.iter().rev().find(|s| s.passed).map(|s| s.offered_rps);
    let (half_rate, half_rate_note) = half_rate(system, config, run, highest, progress).await;
    SystemSweep {
        steps,
        highest_sustainable_rps: highest,
        highest_is_lower_bound: matches!(
            stop.reason,
            StopReason::ClientLimit | StopReason::StepsMax
        ),
        stop_reason: stop.reason,
        stop_detail: stop.detail,
        half_rate,
        half_rate_note,
    }
}

/// The step at half the highest sustainable rate, or why there is none.
async fn half_rate(
    system: &SystemUnderTest,
    config: &SweepConfig,
    run: &str,
    highest_rps: Option<f64>,
    progress: bool,
) -> (Option<SweepStep>, Option<String>) {
    let Some(length) = config.half_rate_step else {
        return (None, Some("not asked for".to_owned()));
    };
    let Some(highest_rps) = highest_rps else {
        return (None, Some("no step passed".to_owned()));
    };
    let rate = highest_rps / 2.0;
    match run_step(system, config, run, None, rate, length, progress).await {
        Ok(step) => (Some(step), None),
        Err(e) => {
            let note = format!("could not run at {rate:.0}/s: {e:#}");
            println!("  half-rate step {note}");
            (None, Some(note))
        }
    }
}

/// The column heads of [`step_line`].
fn print_header() {
    println!(
        "  {:<17} {:>4} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>6} {:>8} {:>8} {:>6}  result",
        "system",
        "step",
        "offered",
        "sent/s",
        "lag p99",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors",
        "accepted",
        "sold_out",
        "other"
    );
}

/// One table row: a step's figures and verdict.
fn step_line(system: &str, s: &SweepStep) -> String {
    let step = s.step.map_or_else(|| "half".to_owned(), |k| k.to_string());
    let other: u64 = s.rejected_other.values().sum();
    let verdict = match &s.failure {
        None => "pass".to_owned(),
        Some(f) => format!("FAIL {}", f.detail),
    };
    format!(
        "  {system:<17} {step:>4} {:>8.0} {:>8.0} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>8.1} {:>8.1} {:>6} {:>8} {:>8} {:>6}  {verdict}",
        s.offered_rps,
        s.achieved_rps,
        s.send_lag_p99_ms,
        s.p50_ms,
        s.p90_ms,
        s.p99_ms,
        s.p99_9_ms,
        s.max_ms,
        s.errors,
        s.accepted,
        s.sold_out,
        other
    )
}

/// The compact table of every system's sweep: each step, then one line
/// with the highest sustainable rate, why the sweep stopped, and the
/// half-rate step's latency.
pub fn print_table(sweeps: &BTreeMap<String, SystemSweep>) {
    print_header();
    for (system, sweep) in sweeps {
        for step in sweep.steps.iter().chain(&sweep.half_rate) {
            println!("{}", step_line(system, step));
        }
    }
    for (system, sweep) in sweeps {
        println!("  {}", verdict_line(system, sweep));
    }
}

/// `pipeline: highest sustainable 750/s (stopped: ...); half rate ...`.
fn verdict_line(system: &str, sweep: &SystemSweep) -> String {
    let highest = match sweep.highest_sustainable_rps {
        Some(r) if sweep.highest_is_lower_bound => format!("at least {r:.0}/s"),
        Some(r) => format!("{r:.0}/s"),
        None => "none (the first step failed)".to_owned(),
    };
    let half = match (&sweep.half_rate, &sweep.half_rate_note) {
        (Some(h), _) => format!(
            "half rate {:.0}/s for {:.0} s: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms{}",
            h.offered_rps,
            h.duration_s,
            h.p50_ms,
            h.p99_ms,
            h.p99_9_ms,
            if h.passed { "" } else { " (FAILED)" }
        ),
        (None, Some(note)) => format!("no half-rate step: {note}"),
        (None, None) => "no half-rate step".to_owned(),
    };
    let reason = serde_json::to_value(sweep.stop_reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{system}: highest sustainable {highest} (stopped: {reason}: {}); {half}",
        sweep.stop_detail
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::Latency;

    fn config() -> SweepConfig {
        SweepConfig {
            start_rps: 500.0,
            factor: 1.5,
            step: Duration::from_secs(10),
            steps_max: 12,
            p99_max_ms: 100.0,
            sent_fraction_min: 0.9,
            demand_per_stock: 10.0,
            users_per_request: 0.5,
            half_rate_step: Some(Duration::from_secs(20)),
            shape: Scenario {
                name: "large".into(),
                products: 100,
                stock: 100,
                per_user_limit: 2,
                requests: 200_000,
                users: 100_000,
                sequential_users: false,
                zipf_exponent: 1.0,
                quantity_max: 2,
                retry_fraction: 0.1,
                duplicate_fraction: 0.01,
                mode: Mode::Closed { connections: 128 },
                timeout: Duration::from_secs(10),
                seed: 1,
                settle_timeout: Duration::from_secs(60),
            },
        }
    }

    /// A passing open-loop report at `rate`, to be spoilt field by field.
    fn report(rate: f64) -> Report {
        Report {
            rate_rps: Some(rate),
            sent_rps: rate,
            latency_ms: Latency {
                p99: 20.0,
                ..Latency::default()
            },
            service_p99_ms: 18.0,
            ..Report::default()
        }
    }

    /// Proves each step's sale keeps the same shape: the rate rises by the
    /// factor, requests are rate × length, stock is demand ÷ 10 over 100
    /// products (mean 1.5 units a request) and buyers half the requests,
    /// so a step 1.5× faster has 1.5× the stock and the same mix.
    #[test]
    fn steps_scale_stock_with_demand() {
        let c = config();
        assert_eq!(c.rate_rps(0), 500.0);
        assert!((c.rate_rps(2) - 1125.0).abs() < 1e-9);
        let s = c.scenario("sw2", c.rate_rps(2), c.step);
        assert_eq!((s.requests, s.users, s.stock), (11_250, 5_625, 17));
        assert_eq!(s.mode, Mode::Open { rate: 1125.0 });
        assert_eq!((s.products, s.per_user_limit, s.quantity_max), (100, 2, 2));
        let tiny = c.scenario("sw0", 10.0, Duration::from_secs(1));
        assert_eq!((tiny.requests, tiny.users, tiny.stock), (10, 5, 1));
        assert_eq!(c.settings().load_s_max_per_system, 140.0);
        c.validate().unwrap();
        let flat = SweepConfig {
            factor: 1.0,
            ..config()
        };
        assert!(flat.validate().is_err());
    }

    /// Proves the rules and their order: a clean report passes; errors
    /// fail first; a client short of its rate with the cap never full is
    /// the client's limit even when p99 is over (its lateness is in every
    /// latency), and so is a p99 over the limit only with the client's send
    /// lag in it; p99 over the limit from the actual send fails (also with
    /// a full cap, where the backlog is the system's); a rate missed
    /// because the cap filled is the system's backlog, not the client's.
    #[test]
    fn judge_applies_the_rules_in_order() {
        let c = config();
        assert_eq!(judge(&report(1000.0), &c), None);

        let mut errors = report(1000.0);
        errors.errors.insert("timeout".into(), 2);
        errors.sent_rps = 100.0;
        let failed = judge(&errors, &c).unwrap();
        assert_eq!(failed.reason, StopReason::Errors);
        assert!(failed.detail.contains("timeout 2"), "{failed:?}");

        let mut slow_client = report(1000.0);
        slow_client.sent_rps = 850.0;
        slow_client.latency_ms.p99 = 400.0;
        assert_eq!(
            judge(&slow_client, &c).unwrap().reason,
            StopReason::ClientLimit
        );

        let mut lagging = report(1000.0);
        lagging.latency_ms.p99 = 140.0;
        lagging.send_lag_p99_ms = 60.0;
        lagging.service_p99_ms = 90.0;
        let failed = judge(&lagging, &c).unwrap();
        assert_eq!(failed.reason, StopReason::ClientLimit, "{failed:?}");

        let mut slow = report(1000.0);
        slow.latency_ms.p99 = 100.5;
        slow.service_p99_ms = 100.2;
        assert_eq!(judge(&slow, &c).unwrap().reason, StopReason::P99OverLimit);
        slow.sent_rps = 500.0;
        slow.in_flight_cap_waits = 7;
        let failed = judge(&slow, &c).unwrap();
        assert_eq!(failed.reason, StopReason::P99OverLimit);
        assert!(failed.detail.contains("cap 7 time(s)"), "{failed:?}");

        let mut backlog = report(1000.0);
        backlog.sent_rps = 500.0;
        backlog.in_flight_cap_waits = 1;
        assert_eq!(judge(&backlog, &c).unwrap().reason, StopReason::Backlog);

        let mut almost = report(1000.0);
        almost.sent_rps = 901.0;
        almost.latency_ms.p99 = 100.0;
        assert_eq!(judge(&almost, &c), None);
    }
}

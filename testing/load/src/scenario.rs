//! One benchmark scenario against one system, then the system's stores asked
//! what was really sold.
//!
//! Every run uses fresh product IDs with a common prefix, so reruns never
//! collide and the stored orders of exactly this run are one `LIKE 'prefix%'`
//! away. Oversold units are counted twice: from the HTTP answers (what
//! buyers were told) and from the stored orders (what the system will ship).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::stream::{self, TryStreamExt};
use serde::Serialize;
use sqlx::mysql::MySqlPool;

use crate::baseline::store::{self, StoredOrders};
use crate::baseline::{StatsView, Strategy};
use crate::client::{DriverConfig, Mode};
use crate::cost::{CostReport, Meter, Watchlist};
use crate::driver;
use crate::tally::{oversold, unsold_with_excess_demand, Report, Tally};
use crate::target::Target;
use crate::workload::{Workload, WorkloadSpec};

/// How often settling polls the stores.
const SETTLE_POLL: Duration = Duration::from_millis(500);
/// The pipeline's read model counts as settled once unchanged this long.
const SETTLE_QUIET: Duration = Duration::from_secs(3);

/// A system under test.
#[derive(Debug, Clone)]
pub enum SystemKind {
    /// A baseline server (its own HTTP routes expose stats and orders).
    Baseline(Strategy),
    /// The pipeline's ingress; its orders are in the read model's `orders`.
    Pipeline {
        /// The read-model database.
        pool: MySqlPool,
    },
}

/// A named system reachable over HTTP.
#[derive(Debug, Clone)]
pub struct SystemUnderTest {
    /// Name in reports (`redis-lock`, ..., `pipeline`, or the pipeline's
    /// label).
    pub name: String,
    /// What it is.
    pub kind: SystemKind,
    /// Base URL of its HTTP API.
    pub base_url: String,
    /// Processes whose CPU and memory each scenario measures; `None`: no
    /// cost is measured.
    pub watch: Option<Watchlist>,
}

impl SystemUnderTest {
    /// A baseline at `base_url`.
    pub fn baseline(strategy: Strategy, base_url: &str) -> Self {
        Self {
            name: strategy.name().to_owned(),
            kind: SystemKind::Baseline(strategy),
            base_url: base_url.to_owned(),
            watch: None,
        }
    }

    /// The pipeline's ingress at `base_url`, read model in `pool`.
    pub fn pipeline(base_url: &str, pool: MySqlPool) -> Self {
        Self {
            name: "pipeline".to_owned(),
            kind: SystemKind::Pipeline { pool },
            base_url: base_url.to_owned(),
            watch: None,
        }
    }

    /// Reports it as `name`: the same ingress in front of another
    /// processor (a future `pipeline-kstreams`) is the pipeline under
    /// another name, and the name is what tells two runs' figures apart.
    /// Product IDs keep the kind's tag; the run ID keeps them apart.
    pub fn named(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }

    /// Measures the cost of `watch`'s processes over every scenario.
    pub fn with_watch(mut self, watch: Watchlist) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Short tag used in product IDs (IDs are at most 64 bytes).
    fn tag(&self) -> &'static str {
        match &self.kind {
            SystemKind::Baseline(Strategy::RedisLock) => "rlock",
            SystemKind::Baseline(Strategy::Optimistic) => "optim",
            SystemKind::Baseline(Strategy::Pessimistic) => "pessi",
            SystemKind::Baseline(Strategy::RedisLua) => "rlua",
            SystemKind::Baseline(Strategy::RedisLuaFlag) => "rluaf",
            SystemKind::Pipeline { .. } => "pipe",
        }
    }

    /// Stored orders per product of this run.
    pub async fn stored(
        &self,
        http: &reqwest::Client,
        prefix: &str,
    ) -> anyhow::Result<BTreeMap<String, StoredOrders>> {
        match &self.kind {
            SystemKind::Pipeline { pool } => store::orders_by_prefix(pool, "orders", prefix).await,
            SystemKind::Baseline(_) => {
                // The prefix is [A-Za-z0-9-] only (built below): no escaping.
                let url = format!(
                    "{}/api/v1/baseline/orders?product_prefix={prefix}",
                    self.base_url
                );
                Ok(http
                    .get(url)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?)
            }
        }
    }

    /// Pipeline: units of accepted purchases in the `outcomes` table.
    pub async fn accepted_outcome_units(&self, prefix: &str) -> anyhow::Result<Option<i64>> {
        let SystemKind::Pipeline { pool } = &self.kind else {
            return Ok(None);
        };
        // The prefix is [A-Za-z0-9-] only (built below): no LIKE wildcards.
        let (units,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(quantity), 0) AS SIGNED) FROM outcomes
             WHERE product_id LIKE ? AND kind = 'purchase' AND status = 'accepted'",
        )
        .bind(format!("{prefix}%"))
        .fetch_one(pool)
        .await?;
        Ok(Some(units))
    }

    /// A baseline's counters; `None` for the pipeline.
    pub async fn stats(&self, http: &reqwest::Client) -> anyhow::Result<Option<StatsView>> {
        match &self.kind {
            SystemKind::Pipeline { .. } => Ok(None),
            SystemKind::Baseline(_) => {
                let url = format!("{}/api/v1/baseline/stats", self.base_url);
                Ok(Some(
                    http.get(url)
                        .send()
                        .await?
                        .error_for_status()?
                        .json()
                        .await?,
                ))
            }
        }
    }
}

/// A workload and the sales it runs against.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name in reports and product IDs (`[a-z0-9]`, short).
    pub name: String,
    /// Products on sale.
    pub products: usize,
    /// Units of each.
    pub stock: i64,
    /// Most units per user and product.
    pub per_user_limit: i32,
    /// Purchase requests.
    pub requests: u64,
    /// Distinct buyers.
    pub users: u64,
    /// See [`WorkloadSpec::sequential_users`].
    pub sequential_users: bool,
    /// Product popularity skew.
    pub zipf_exponent: f64,
    /// Units per request: 1..=quantity_max.
    pub quantity_max: i32,
    /// See [`WorkloadSpec::retry_fraction`].
    pub retry_fraction: f64,
    /// See [`WorkloadSpec::duplicate_fraction`].
    pub duplicate_fraction: f64,
    /// Pacing.
    pub mode: Mode,
    /// Per-attempt HTTP timeout.
    pub timeout: Duration,
    /// Generator seed: the same for every system, so all see the same demand.
    pub seed: u64,
    /// How long to wait for asynchronous stores to catch up.
    pub settle_timeout: Duration,
}

/// What one scenario did on one system.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// System name.
    pub system: String,
    /// Scenario name.
    pub scenario: String,
    /// Common prefix of this run's product IDs.
    pub product_prefix: String,
    /// Units per product.
    pub stock_per_product: i64,
    /// Units over all products.
    pub total_stock: i64,
    /// The load generator's report.
    pub report: Report,
    /// Units in orders stored when the load ended.
    pub stored_units_at_end: i64,
    /// Orders stored when the load ended.
    pub stored_orders_at_end: i64,
    /// Units in orders stored once the stores settled.
    pub stored_units: i64,
    /// Orders stored once the stores settled.
    pub stored_orders: i64,
    /// How long settling took (s).
    pub settle_s: f64,
    /// Accepted units above stock, by the answers.
    pub oversold_units_by_answers: i64,
    /// Stored units above stock, by the stored orders.
    pub oversold_units_by_orders: i64,
    /// Over products whose demand exceeded stock, stock left unsold (stored
    /// orders): sales a flash sale should have made.
    pub unsold_units_with_excess_demand: i64,
    /// Products whose demand exceeded their stock.
    pub products_with_excess_demand: usize,
    /// Baselines: the server's counters after settling.
    pub baseline_stats: Option<StatsView>,
    /// Pipeline: units of the accepted purchases recorded in the read
    /// model's `outcomes` table (keyed by request ID), after settling. Set
    /// beside `stored_units` (the `orders` table) it tells an order lost by
    /// the orders projection from one never decided.
    pub accepted_outcome_units: Option<i64>,
    /// CPU per 1 000 requests and peak RSS of each process, over the load
    /// and settling; `None` when the system has no watchlist.
    pub cost: Option<CostReport>,
}

/// What a run observed, before it is turned into a [`ScenarioResult`].
struct Observed {
    /// The load generator's report.
    report: Report,
    /// Stored orders when the load ended.
    at_end: BTreeMap<String, StoredOrders>,
    /// Stored orders once settled.
    settled: BTreeMap<String, StoredOrders>,
    /// How long settling took (s).
    settle_s: f64,
    /// Baselines: the counters.
    stats: Option<StatsView>,
    /// Pipeline: accepted units in `outcomes`.
    accepted_outcome_units: Option<i64>,
    /// The processes' cost.
    cost: Option<CostReport>,
}

/// A fresh prefix for one (run, system, scenario): letters, digits, dashes.
pub fn product_prefix(run: &str, system: &SystemUnderTest, scenario: &Scenario) -> String {
    format!("{run}-{}-{}-", system.tag(), scenario.name)
}

/// Configures the sales, runs the workload, settles, and measures. The
/// cost window (when the system has a watchlist) opens once the sales are
/// configured and closes once the stores settled.
pub async fn run_scenario(
    system: &SystemUnderTest,
    scenario: &Scenario,
    run: &str,
    progress: bool,
) -> anyhow::Result<ScenarioResult> {
    let prefix = product_prefix(run, system, scenario);
    let (target, workload) = prepare(system, scenario, &prefix).await?;
    let config = DriverConfig {
        mode: scenario.mode,
        retry_attempts: 3,
        retry_backoff: Duration::from_millis(200),
        max_in_flight: 20_000,
        progress,
    };
    let meter = system.watch.as_ref().map(Meter::start);
    let tally = driver::run(&target, &workload, &config).await?;
    let report = tally.report(&system.name, Some(scenario.stock));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let at_end = system.stored(&http, &prefix).await?;
    let settle_started = Instant::now();
    let accepted = report.accepted_units;
    let settled = settle(system, &http, &prefix, accepted, scenario.settle_timeout).await?;
    let settle_s = settle_started.elapsed().as_secs_f64();
    let cost = meter.map(|m| m.finish(report.requests));
    let observed = Observed {
        stats: system.stats(&http).await?,
        accepted_outcome_units: system.accepted_outcome_units(&prefix).await?,
        report,
        at_end,
        settled,
        settle_s,
        cost,
    };
    Ok(result(
        system, scenario, prefix, &workload, &tally, observed,
    ))
}

/// The figures of one run, from what it observed.
fn result(
    system: &SystemUnderTest,
    scenario: &Scenario,
    prefix: String,
    workload: &Workload,
    tally: &Tally,
    o: Observed,
) -> ScenarioResult {
    let demand_and_sold: Vec<(i64, i64)> = workload
        .spec
        .products
        .iter()
        .zip(&tally.products)
        // A unit is sold when the buyer was told so or the store holds it:
        // an order missing from a store is counted under "persisted", not
        // as stock left unsold.
        .map(|(p, t)| {
            let stored = o.settled.get(p).map_or(0, |s| s.units);
            (t.demand_units, stored.max(t.accepted_units))
        })
        .collect();
    let stock = scenario.stock;
    let units = |m: &BTreeMap<String, StoredOrders>| m.values().map(|s| s.units).sum();
    let orders = |m: &BTreeMap<String, StoredOrders>| m.values().map(|s| s.orders).sum();
    ScenarioResult {
        system: system.name.clone(),
        scenario: scenario.name.clone(),
        product_prefix: prefix,
        stock_per_product: stock,
        total_stock: stock * scenario.products as i64,
        oversold_units_by_answers: oversold(tally.products.iter().map(|t| t.accepted_units), stock),
        oversold_units_by_orders: oversold(o.settled.values().map(|s| s.units), stock),
        unsold_units_with_excess_demand: unsold_with_excess_demand(
            demand_and_sold.iter().copied(),
            stock,
        ),
        products_with_excess_demand: demand_and_sold.iter().filter(|(d, _)| *d > stock).count(),
        stored_units_at_end: units(&o.at_end),
        stored_orders_at_end: orders(&o.at_end),
        stored_units: units(&o.settled),
        stored_orders: orders(&o.settled),
        settle_s: o.settle_s,
        report: o.report,
        baseline_stats: o.stats,
        accepted_outcome_units: o.accepted_outcome_units,
        cost: o.cost,
    }
}

/// Checks the system answers, configures this run's sales, and builds the
/// workload over them.
async fn prepare(
    system: &SystemUnderTest,
    scenario: &Scenario,
    prefix: &str,
) -> anyhow::Result<(Target, Workload)> {
    let products: Vec<String> = (0..scenario.products)
        .map(|i| format!("{prefix}p{i}"))
        .collect();
    let target = Target::new(&system.base_url, scenario.timeout)?;
    anyhow::ensure!(
        target.healthy().await,
        "{} at {} is not answering /health",
        system.name,
        system.base_url
    );
    stream::iter(products.iter().map(Ok))
        .try_for_each_concurrent(16, |p| {
            target.configure(p, scenario.stock, scenario.per_user_limit)
        })
        .await?;
    let workload = Workload::new(WorkloadSpec {
        run: prefix.trim_end_matches('-').to_owned(),
        products,
        requests: scenario.requests,
        users: scenario.users,
        sequential_users: scenario.sequential_users,
        zipf_exponent: scenario.zipf_exponent,
        quantity_max: scenario.quantity_max,
        retry_fraction: scenario.retry_fraction,
        duplicate_fraction: scenario.duplicate_fraction,
        seed: scenario.seed,
    });
    Ok((target, workload))
}

/// Waits until the stores have caught up with the decisions, boundedly, and
/// returns the stored orders then. Baselines: until the redis-lua queue is
/// empty (the others store before answering). Pipeline: until the read
/// model holds at least the accepted units and stops changing.
async fn settle(
    system: &SystemUnderTest,
    http: &reqwest::Client,
    prefix: &str,
    accepted_units: i64,
    timeout: Duration,
) -> anyhow::Result<BTreeMap<String, StoredOrders>> {
    let deadline = Instant::now() + timeout;
    let mut last: Option<(i64, Instant)> = None;
    loop {
        let done = match &system.kind {
            SystemKind::Baseline(_) => system
                .stats(http)
                .await?
                .is_none_or(|s| s.queued_orders == 0),
            SystemKind::Pipeline { .. } => {
                let units: i64 = system
                    .stored(http, prefix)
                    .await?
                    .values()
                    .map(|s| s.units)
                    .sum();
                let quiet = match last {
                    Some((seen, since)) if seen == units => since.elapsed() >= SETTLE_QUIET,
                    _ => {
                        last = Some((units, Instant::now()));
                        false
                    }
                };
                units >= accepted_units && (units == accepted_units || quiet)
            }
        };
        if done || Instant::now() >= deadline {
            return system
                .stored(http, prefix)
                .await
                .with_context(|| format!("reading {}'s stored orders", system.name));
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

//! The benchmark's correctness half, CI-sized: the same load generator and
//! measurements as `flashsale-bench`, on small workloads, asserting only what
//! must hold whatever the machine's speed. No timing is asserted.
//!
//! Needs the local stack (`dev/up`): the baselines run in-process on
//! ephemeral ports over its MariaDB and Redis (and one as a child process,
//! as `flashsale-bench` runs them); the pipeline is the running ingress
//! (`FLASHSALE_INGRESS_URL`).

use std::path::Path;
use std::time::Duration;

use flashsale_load::baseline::{BaselineConfig, BaselineProcess, BaselineServer, Strategy};
use flashsale_load::cost::{self, Role, RssPeakSince, Watchlist};
use flashsale_load::scenario::{run_scenario, Scenario, ScenarioResult, SystemUnderTest};
use flashsale_load::Mode;
use flashsale_testkit::{unique, Env};

/// 2 products x 20 units; 240 single-unit requests from 240 distinct users,
/// spread evenly (about 120 per product: 6x the stock). Every client retries
/// undecided answers, and 10% send their request twice, so idempotency is
/// exercised under contention.
fn small() -> Scenario {
    Scenario {
        name: "ci".to_owned(),
        products: 2,
        stock: 20,
        per_user_limit: 1,
        requests: 240,
        users: 240,
        sequential_users: true,
        zipf_exponent: 0.0,
        quantity_max: 1,
        retry_fraction: 1.0,
        duplicate_fraction: 0.1,
        mode: Mode::Closed { connections: 32 },
        timeout: Duration::from_secs(10),
        seed: 7,
        // Only a bound: settling returns as soon as the stores match the
        // answers (seconds here). A loaded CI machine can hold the read
        // model back for a while; that is lag, not a wrong answer.
        settle_timeout: Duration::from_secs(90),
    }
}

/// The old design's own test: 100 distinct users, 10 items, all at once.
fn old() -> Scenario {
    Scenario {
        name: "old".to_owned(),
        products: 1,
        stock: 10,
        requests: 100,
        users: 100,
        duplicate_fraction: 0.0,
        mode: Mode::Closed { connections: 100 },
        ..small()
    }
}

/// Demand really exceeded stock on every product, so "sold exactly the
/// stock" is the right expectation.
fn assert_demand_exceeded(r: &ScenarioResult, scenario: &Scenario) {
    assert_eq!(
        r.products_with_excess_demand, scenario.products,
        "{}/{}: demand did not exceed stock everywhere: {r:#?}",
        r.system, r.scenario
    );
    assert!(r.report.demand_units >= 5 * r.total_stock, "{r:#?}");
}

/// No oversold unit by what buyers were told nor by what was stored.
fn assert_not_oversold(r: &ScenarioResult) {
    assert_eq!(
        r.oversold_units_by_answers, 0,
        "{}/{}: {r:#?}",
        r.system, r.scenario
    );
    assert_eq!(
        r.oversold_units_by_orders, 0,
        "{}/{}: {r:#?}",
        r.system, r.scenario
    );
}

/// Proves every baseline strategy (`Strategy::ALL`, redis-lua-flag
/// included), run in-process under contention with retries and duplicate
/// sends, never oversells: for each product, accepted units (from the HTTP
/// answers) and stored units (from `baseline_orders`, after the redis-lua
/// queues drained) stay within stock. It also checks that every stored unit
/// was answered accepted and vice versa (no lost or phantom orders), since
/// all answers arrive within the timeout here. For redis-lua-flag it checks
/// the flag really answered (most requests come after the sell-out) and
/// that no duplicate sent after the sell-out contradicted its first answer:
/// a repeat of an accepted request still gets its order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baselines_never_oversell() {
    let env = Env::from_env();
    let config = BaselineConfig::for_env(&env);
    let run = unique("bc");
    for strategy in Strategy::ALL {
        let listen = "127.0.0.1:0".parse().unwrap();
        let server = BaselineServer::start(strategy, &config, listen, 2)
            .await
            .unwrap();
        let system = SystemUnderTest::baseline(strategy, &server.base_url());
        for scenario in [small(), old()] {
            let r = run_scenario(&system, &scenario, &run, false).await.unwrap();
            assert_demand_exceeded(&r, &scenario);
            assert_not_oversold(&r);
            assert_eq!(
                r.stored_units, r.report.accepted_units,
                "{strategy:?}: {r:#?}"
            );
            if strategy == Strategy::RedisLuaFlag {
                let stats = r.baseline_stats.as_ref().unwrap();
                assert!(stats.flag_answers > 0, "the flag never answered: {r:#?}");
                assert_eq!(r.report.duplicate_flips, 0, "{r:#?}");
            }
        }
        server.stop().await.unwrap();
    }
}

/// Proves the pipeline, on the same workloads, sells exactly its stock when
/// demand exceeds it: accepted units by the answers and stored units in the
/// read model both equal the stock of every product (their sums equal the
/// total stock while no product is above its own stock), and none is
/// oversold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_sells_exactly_its_stock() {
    let env = Env::from_env();
    let system = SystemUnderTest::pipeline(&env.ingress_url, env.mysql().await.unwrap());
    let run = unique("bc");
    for scenario in [small(), old()] {
        let r = run_scenario(&system, &scenario, &run, false).await.unwrap();
        assert_demand_exceeded(&r, &scenario);
        assert_not_oversold(&r);
        assert_eq!(r.report.accepted_units, r.total_stock, "{r:#?}");
        assert_eq!(r.stored_units, r.total_stock, "{r:#?}");
        assert_eq!(r.unsold_units_with_excess_demand, 0, "{r:#?}");
    }
}

/// Proves the benchmark's default way of running a baseline: as its own
/// `flashsale-baseline` process (redis-lua-flag here), started and found by
/// its printed address, measured from `/proc` while it serves a scenario
/// (its CPU and peak RSS reported under `baseline`, reset to the scenario),
/// still never overselling, and stopped gracefully with its queue drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_baseline_is_measured() {
    let env = Env::from_env();
    let config = BaselineConfig::for_env(&env);
    let binary = Path::new(env!("CARGO_BIN_EXE_flashsale-baseline"));
    let listen = "127.0.0.1:0".parse().unwrap();
    let strategy = Strategy::RedisLuaFlag;
    let server = BaselineProcess::spawn(binary, strategy, &config, listen, 2)
        .await
        .unwrap();
    let pids = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.dev/pids");
    let mut watch = Watchlist::from_pid_files(&pids, &cost::BASELINE_STORES);
    watch.add("baseline", server.pid, Role::System);
    let system = SystemUnderTest::baseline(strategy, &server.base_url()).with_watch(watch);
    let scenario = old();
    let r = run_scenario(&system, &scenario, &unique("bc"), false)
        .await
        .unwrap();
    assert_not_oversold(&r);
    assert_eq!(r.stored_units, r.report.accepted_units, "{r:#?}");
    let cost = r.cost.as_ref().unwrap();
    let own = &cost.processes["baseline"];
    assert_eq!(own.pid, server.pid);
    assert!(own.rss_peak_mb.is_some_and(|m| m > 0.0), "{cost:#?}");
    assert_eq!(own.rss_peak_since, RssPeakSince::Scenario, "{cost:#?}");
    assert!(cost.load_generator.is_some(), "{cost:#?}");
    let last = server.stop().await.unwrap();
    assert!(
        last.is_some_and(|l| l.contains("\"queued_orders\":0")),
        "the stopped server printed no drained counters"
    );
}

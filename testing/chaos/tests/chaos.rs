//! Chaos test: crash, rebalance and zombie safety.
//!
//! **What it proves.** While processors and sinks are SIGKILLed and
//! restarted, processors join and leave the group, a processor is frozen
//! past its session timeout and then resumes as a zombie, the broker crashes
//! (SIGKILL) and restarts, and Redis and MySQL restart, the pipeline still
//!
//! * never oversells: no product accepts more units than its stock, and
//!   every product whose single-unit demand exceeded its stock sells all of
//!   it (no unit lost to a crash either);
//! * decides every request ID once: every outcome the log holds for a
//!   request ID, however often it was re-decided (client retries, replays
//!   after a crash, a zombie's late batch), is identical, and it is the
//!   decision the client was answered;
//! * loses and duplicates no order: every purchase a client was told was
//!   accepted is in MySQL `orders` exactly once, with its order ID, and no
//!   other order of the run exists (none for a purchase told "rejected");
//! * keeps the read models right: MySQL `stock.remaining` and Redis
//!   `flashsale:stock:{product}` equal the remaining of the newest (by input
//!   offset) outcome in the log, and `flashsale-admin reconcile` reports no
//!   drift.
//!
//! **How.** The run is isolated from the shared stack's own pipeline: it
//! creates its own topics (`chaos-<id>.*`, 8 partitions) and starts its own
//! processors, sinks (two per store) and ingress as child processes on them
//! (logs `.dev/logs/chaos-<id>-*.log`, pid files in `.dev/pids/`, all
//! stopped when the test ends, even on failure). The MySQL read model goes
//! to a database of its own (`chaos_<id>`, dropped when the run passes, as
//! are the run's Redis keys):
//! order IDs (`o-<partition>-<offset>`) are unique within one requests topic
//! only, so sharing the stack's `orders` table would make the run's orders
//! collide with other topics' ones. The broker, the MariaDB server and Redis
//! (keys by the run's unique product and request IDs) are shared.
//!
//! Sixteen clients buy from 24 products (stock 20, demand more than five
//! times that), each retrying with its own request ID after any error,
//! timeout or 202 until it is answered 200, and record what they were told. Meanwhile the faults of `flashsale_chaos::faults::CYCLE`
//! run on a schedule. Then the faults stop, everything keeps running until
//! every request has an outcome in the log, the processors' group has no lag
//! and the read models show what the log says (each wait bounded), and the
//! checks of `flashsale_chaos::verify::check` compare clients, log,
//! MySQL and Redis. Nothing is timed: waits are bounded only so a broken run
//! ends.
//!
//! `FLASHSALE_CHAOS_SECONDS` sets the load's length (default 90 s; longer
//! runs get more products and repeat the fault cycle);
//! `FLASHSALE_CHAOS_SEED` replays a run's plan and fault targets.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashsale_chaos::faults::{self, event, FaultCounts, FaultSpec};
use flashsale_chaos::fleet::{read_text, Fleet, FleetConfig, FleetGuard, Role};
use flashsale_chaos::rng::Rng;
use flashsale_chaos::verify::{self, GroupLag, OutcomeLog, Tally};
use flashsale_chaos::workload::{self, Plan, PlanSpec, RetryPolicy};
use flashsale_chaos::{
    admin, bin_dir, create_database, drop_database, free_port, repo_root, with_database, AdminRun,
};
use flashsale_testkit::{kafka, Api, Env};

/// Partitions of the run's topics.
const PARTITIONS: i32 = 8;
/// Load length when `FLASHSALE_CHAOS_SECONDS` is unset.
const LOAD_SECONDS_DEFAULT: u64 = 90;
/// Concurrent clients.
const CLIENTS: usize = 16;
/// Products per 90 s of load.
const PRODUCTS_PER_CYCLE: usize = 24;
/// How long after the planned load clients may still be retrying.
const LOAD_GRACE: Duration = Duration::from_secs(180);
/// Longest wait for the run's ingress to answer /health.
const STARTUP_MAX: Duration = Duration::from_secs(120);
/// Longest wait, after the load, for log, group and read models to settle.
const QUIESCE_MAX: Duration = Duration::from_secs(300);

fn seconds_from_env() -> u64 {
    std::env::var("FLASHSALE_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(LOAD_SECONDS_DEFAULT)
}

fn seed_from_env() -> u64 {
    std::env::var("FLASHSALE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let bytes = uuid::Uuid::new_v4().into_bytes();
            u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default())
        })
}

fn host_port(url: &str) -> String {
    let rest = url.split("://").last().unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// `partitions assigned` lines with a non-empty list in the processors'
/// logs: how often the run's group actually handed partitions over.
fn assignments_seen(fleet: &Fleet) -> usize {
    fleet
        .log_files()
        .iter()
        .filter(|p| p.to_string_lossy().contains("-processor-"))
        .map(|p| {
            read_text(p)
                .lines()
                .filter(|l| l.contains("partitions assigned") && !l.contains("partitions=[]"))
                .count()
        })
        .sum()
}

/// Lines saying a process panicked, in every log of the run.
fn panics(fleet: &Fleet) -> Vec<String> {
    fleet
        .log_files()
        .iter()
        .flat_map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            read_text(p)
                .lines()
                .filter(|l| l.contains("panicked at"))
                .map(|l| format!("{name}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "crashes the shared broker and restarts Redis and MariaDB, so dev/test runs it as its own last step; alone: cargo test -p flashsale-chaos --test chaos -- --ignored"]
async fn crash_rebalance_and_zombie_safety() {
    let wall = Instant::now();
    let base = Env::from_env();
    let root = repo_root();
    let bins = bin_dir(&root);
    let load = Duration::from_secs(seconds_from_env());
    let cycles = load.as_secs().div_ceil(LOAD_SECONDS_DEFAULT).max(1) as usize;
    let seed = seed_from_env();
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let run = format!("chaos-{id}");
    let logs_dir = root.join(".dev/logs");
    let events_log = logs_dir.join(format!("{run}-events.log"));
    std::fs::create_dir_all(&logs_dir).expect("creating .dev/logs");
    eprintln!(
        "chaos: run {run}, seed {seed}, load {load:?}; events in {}",
        events_log.display()
    );

    // ---- the run's own topics -------------------------------------------
    // ... and its own MySQL database (see chaos::create_database for why).
    let database = format!("chaos_{id}");
    create_database(&base.mysql_url, &database)
        .await
        .expect("creating the run's database (is the stack up? dev/up)");
    let env = Env {
        mysql_url: with_database(&base.mysql_url, &database),
        requests_topic: format!("{run}.requests"),
        outcomes_topic: format!("{run}.outcomes"),
        dead_letter_topic: format!("{run}.dead-letter"),
        snapshots_topic: format!("{run}.snapshots"),
        ..base.clone()
    };
    let partitions = PARTITIONS.to_string();
    let common_env: Vec<(String, String)> = [
        ("FLASHSALE_BROKERS", env.brokers.as_str()),
        ("FLASHSALE_SCHEMA_REGISTRY_URL", env.registry_url.as_str()),
        ("FLASHSALE_MYSQL_URL", env.mysql_url.as_str()),
        ("FLASHSALE_REDIS_URL", env.redis_url.as_str()),
        ("FLASHSALE_REQUESTS_TOPIC", env.requests_topic.as_str()),
        ("FLASHSALE_OUTCOMES_TOPIC", env.outcomes_topic.as_str()),
        (
            "FLASHSALE_DEAD_LETTER_TOPIC",
            env.dead_letter_topic.as_str(),
        ),
        ("FLASHSALE_SNAPSHOTS_TOPIC", env.snapshots_topic.as_str()),
        ("FLASHSALE_PARTITIONS", partitions.as_str()),
        ("FLASHSALE_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let created = admin(
        &bins,
        &common_env,
        &["create-topics"],
        Duration::from_secs(120),
    )
    .await
    .expect("flashsale-admin create-topics");
    assert_eq!(
        created.code,
        Some(0),
        "create-topics failed (is the stack up? dev/up):\n{}",
        created.output
    );

    // ---- the run's own processes ----------------------------------------
    let port = free_port().expect("a free port for the ingress");
    let pair = |k: &str, v: String| (k.to_owned(), v);
    let role_env = BTreeMap::from([
        (
            Role::Processor,
            vec![
                pair("FLASHSALE_PROCESSOR_GROUP", format!("{run}-processors")),
                pair("FLASHSALE_SNAPSHOT_EVERY_RECORDS", "100".to_owned()),
            ],
        ),
        (
            Role::SinkMysql,
            vec![pair("FLASHSALE_SINK_GROUP", format!("{run}-sink-mysql"))],
        ),
        (
            Role::SinkRedis,
            vec![pair("FLASHSALE_SINK_GROUP", format!("{run}-sink-redis"))],
        ),
        (
            Role::Ingress,
            vec![pair(
                "FLASHSALE_INGRESS_LISTEN",
                format!("127.0.0.1:{port}"),
            )],
        ),
    ]);
    let fleet = Fleet::new(FleetConfig {
        run_name: run.clone(),
        logs_dir: logs_dir.clone(),
        pids_dir: root.join(".dev/pids"),
        bin_dir: bins.clone(),
        common_env: common_env.clone(),
        role_env,
    });
    let _guard = FleetGuard(fleet.clone());
    for (suffix, role) in [
        ("processor-1", Role::Processor),
        ("processor-2", Role::Processor),
        ("sink-mysql-1", Role::SinkMysql),
        ("sink-mysql-2", Role::SinkMysql),
        ("sink-redis-1", Role::SinkRedis),
        ("sink-redis-2", Role::SinkRedis),
        ("ingress", Role::Ingress),
    ] {
        fleet
            .start(&fleet.child_name(suffix), role)
            .expect("starting a child");
    }
    // The supervisor: crash-only services are started again when they exit.
    let supervising = Arc::new(AtomicBool::new(true));
    let supervisor = {
        let (fleet, supervising, events_log) =
            (fleet.clone(), supervising.clone(), events_log.clone());
        tokio::spawn(async move {
            while supervising.load(Ordering::SeqCst) {
                for exit in fleet.supervise() {
                    event(
                        &events_log,
                        wall,
                        &format!(
                            "self-exit: {} (pid {}) {}; restarting it",
                            exit.name, exit.pid, exit.status
                        ),
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let ingress_url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(3))
        .pool_max_idle_per_host(64)
        .build()
        .expect("http client");
    let api = Api {
        client,
        base: ingress_url.clone(),
    };
    let healthy = flashsale_testkit::eventually(STARTUP_MAX, || {
        let api = api.clone();
        async move { Ok(api.get("/health").await?.status.is_success()) }
    })
    .await;
    assert!(healthy, "the run's ingress did not answer /health on {ingress_url}; see .dev/logs/{run}-ingress.log");

    // ---- the sale ------------------------------------------------------
    let mut rng = Rng::new(seed);
    let plan = Arc::new(Plan::new(
        &run,
        &PlanSpec {
            products: PRODUCTS_PER_CYCLE * cycles,
            stock: 20,
            per_user_limit: 2,
            demand_factor: 5,
            greedy_users: 5,
            greedy_requests: 3,
            load,
            partitions: PARTITIONS,
        },
        &mut rng,
    ));
    let policy = RetryPolicy {
        attempts_max: 60,
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        deadline: None,
    };
    workload::configure(&api, &plan, &policy)
        .await
        .expect("configuring the sales");
    event(
        &events_log,
        wall,
        &format!(
            "{} sales configured, {} purchases planned",
            plan.products.len(),
            plan.purchases.len()
        ),
    );

    // ---- load and faults, concurrently -----------------------------------
    let retries = Arc::new(AtomicU64::new(0));
    let load_done = Arc::new(AtomicBool::new(false));
    let chaos = tokio::spawn(faults::run(
        fleet.clone(),
        FaultSpec {
            // One cycle per 90 s of load, paced the same in every run.
            gap: (load.min(Duration::from_secs(LOAD_SECONDS_DEFAULT)) / 16)
                .max(Duration::from_secs(2)),
            pause: Duration::from_secs(15),
            down: Duration::from_secs(1),
            root: root.clone(),
            events_log: events_log.clone(),
            cycles_max: cycles + 1,
            broker_addr: host_port(&env.brokers),
            redis_addr: host_port(&env.redis_url),
            mysql_addr: host_port(&base.mysql_url),
            brokers: env.brokers.clone(),
            probe_topic: env.requests_topic.clone(),
        },
        load_done.clone(),
        seed.rotate_left(17),
        wall,
    ));
    let load_start = Instant::now();
    let load_policy = RetryPolicy {
        deadline: Some(load_start + load + LOAD_GRACE),
        ..policy
    };
    let clients = workload::run(
        api.clone(),
        plan.clone(),
        CLIENTS,
        load_policy,
        load_start,
        seed.rotate_left(31),
        retries.clone(),
    )
    .await;
    load_done.store(true, Ordering::SeqCst);
    event(&events_log, wall, "load finished");
    let counts: FaultCounts = match chaos.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("the faults could not be injected: {e:#}"),
        Err(e) => panic!("the fault task failed: {e}"),
    };
    event(&events_log, wall, &format!("faults over: {counts:?}"));

    // ---- quiesce: everything decided, no lag, read models caught up -------
    let contract = kafka::contract(&env).await.expect("registry");
    let mut log = OutcomeLog::open(&env.brokers, contract, &env.outcomes_topic, PARTITIONS)
        .expect("outcomes reader");
    let lag = GroupLag::new(
        &env.brokers,
        &format!("{run}-processors"),
        &env.requests_topic,
        PARTITIONS,
    )
    .expect("lag reader");
    let pool = env.mysql().await.expect("mysql");
    let mut redis = env.redis().await.expect("redis");
    let products: Vec<String> = plan.products.iter().map(|p| p.id.clone()).collect();
    let requests: Vec<String> = plan
        .purchases
        .iter()
        .map(|p| p.request_id.clone())
        .collect();
    let ids: Vec<&str> = plan
        .purchases
        .iter()
        .map(|p| p.request_id.as_str())
        .chain(plan.products.iter().map(|p| p.command_id.as_str()))
        .collect();
    let deadline = Instant::now() + QUIESCE_MAX;
    let mut waiting_for = Vec::new();
    loop {
        waiting_for.clear();
        match log.catch_up(Duration::from_secs(30)).await {
            Ok(true) => {}
            Ok(false) => waiting_for.push("the outcomes log to be read to its end".to_owned()),
            Err(e) => waiting_for.push(format!("the outcomes log ({e:#})")),
        }
        let by_request = log.by_request();
        let undecided = ids
            .iter()
            .filter(|id| !by_request.contains_key(**id))
            .count();
        if undecided > 0 {
            waiting_for.push(format!("{undecided} requests without an outcome"));
        }
        match lag.lag() {
            Ok(l) if l.iter().all(|x| *x == 0) => {}
            Ok(l) => waiting_for.push(format!("processor group lag {l:?}")),
            Err(e) => waiting_for.push(format!("processor group lag ({e:#})")),
        }
        match verify::read_stores(&pool, &mut redis, &products, &requests).await {
            Ok(s) if verify::stores_settled(&plan, &verify::fold_log(&log), &s) => {}
            Ok(_) => waiting_for.push("the read models to show what the log says".to_owned()),
            Err(e) => waiting_for.push(format!("the read models ({e:#})")),
        }
        if waiting_for.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    event(
        &events_log,
        wall,
        &format!("quiesced: still waiting for {waiting_for:?}"),
    );

    // ---- the checks ----------------------------------------------------
    let stores = verify::read_stores(&pool, &mut redis, &products, &requests)
        .await
        .expect("reading the read models");
    let (tally, mut violations) = verify::check(&plan, &clients, &log, &stores);
    violations.extend(
        waiting_for
            .iter()
            .map(|w| format!("did not settle within {QUIESCE_MAX:?}: {w}")),
    );
    let final_lag: i64 = lag.lag().map(|l| l.iter().sum()).unwrap_or(-1);
    let dead_letters =
        verify::record_count(&env.brokers, &env.dead_letter_topic, PARTITIONS).unwrap_or(-1);
    if dead_letters != 0 {
        violations.push(format!(
            "{dead_letters} records in {} (the ingress only writes valid ones)",
            env.dead_letter_topic
        ));
    }
    violations.extend(
        panics(&fleet)
            .into_iter()
            .map(|l| format!("a process panicked: {l}")),
    );
    let self_exits = fleet.self_exits();
    let reconcile = reconcile(&bins, &common_env, &run).await;
    if let Err(e) = &reconcile {
        violations.push(e.clone());
    }

    supervising.store(false, Ordering::SeqCst);
    let _ = supervisor.await;
    let client_retries = retries.load(Ordering::SeqCst);
    let summary = summary(&Facts {
        run: &run,
        seed,
        load,
        counts: &counts,
        assignments: assignments_seen(&fleet),
        self_exits: self_exits.len(),
        tally: &tally,
        client_retries,
        dead_letters,
        final_lag,
        reconciled: reconcile.is_ok(),
        wall,
    });
    // Straight to the process's stderr, past the test harness's capture, so
    // CI logs show the table of a passing run too.
    let _ = writeln!(std::io::stderr(), "{summary}");
    let report = logs_dir.join(format!("{run}-summary.txt"));
    let _ = std::fs::write(
        &report,
        format!("{summary}\nviolations:\n{}\n", violations.join("\n")),
    );
    for exit in &self_exits {
        eprintln!(
            "self-exit (restarted): {} pid {} {}",
            exit.name, exit.pid, exit.status
        );
    }

    assert!(counts.kills >= 5, "only {} kills happened", counts.kills);
    assert!(
        counts.pauses >= 1
            && counts.broker_restarts >= 1
            && counts.redis_restarts >= 1
            && counts.mysql_restarts >= 1
            && counts.rebalances >= 2,
        "not every fault happened: {counts:?}"
    );
    assert!(
        violations.is_empty(),
        "run {run} (seed {seed}): {} violations (all in {}; logs .dev/logs/{run}-*.log; \
         read model kept in database {database}, topics {run}.*):\n{}",
        violations.len(),
        report.display(),
        violations
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Passed: the run's database, topics and Redis keys are of no further
    // use (a failed run keeps them for inspection).
    let topics = [
        env.requests_topic.as_str(),
        env.outcomes_topic.as_str(),
        env.dead_letter_topic.as_str(),
        env.snapshots_topic.as_str(),
    ];
    if let Err(e) = kafka::delete_topics(&env, &topics).await {
        eprintln!("chaos: could not delete the run's topics: {e:#}");
    }
    if let Err(e) = drop_database(&base.mysql_url, &database).await {
        eprintln!("chaos: could not drop database {database}: {e:#}");
    }
    if let Err(e) = verify::delete_redis_keys(&mut redis, &format!("{run}-"), 10_000).await {
        eprintln!("chaos: could not delete the run's Redis keys: {e:#}");
    }
}

/// Runs `flashsale-admin reconcile` on the run's topics and products; the
/// error explains a drift or a missing subcommand.
async fn reconcile(
    bins: &std::path::Path,
    env: &[(String, String)],
    run: &str,
) -> Result<String, String> {
    let prefix = format!("{run}-");
    let help: AdminRun = admin(bins, env, &["help"], Duration::from_secs(30))
        .await
        .map_err(|e| format!("flashsale-admin: {e:#}"))?;
    if !help.output.contains("reconcile") {
        return Err("flashsale-admin has no `reconcile` subcommand: the drift check could not run (rebuild with `cargo build --workspace --bins`)".to_owned());
    }
    let out = admin(
        bins,
        env,
        &["reconcile", "--product-prefix", &prefix],
        Duration::from_secs(180),
    )
    .await
    .map_err(|e| format!("flashsale-admin reconcile: {e:#}"))?;
    eprintln!(
        "flashsale-admin reconcile --product-prefix {prefix}:\n{}",
        out.output.trim_end()
    );
    if out.code == Some(0) {
        Ok(out.output)
    } else {
        Err(format!(
            "flashsale-admin reconcile exited with {:?}:\n{}",
            out.code,
            out.output.trim_end()
        ))
    }
}

/// Everything the report table shows.
struct Facts<'a> {
    run: &'a str,
    seed: u64,
    load: Duration,
    counts: &'a FaultCounts,
    assignments: usize,
    self_exits: usize,
    tally: &'a Tally,
    client_retries: u64,
    dead_letters: i64,
    final_lag: i64,
    reconciled: bool,
    wall: Instant,
}

fn summary(f: &Facts<'_>) -> String {
    let (c, t) = (f.counts, f.tally);
    let mut rows: Vec<(&str, String)> = vec![
        ("kills (SIGKILL + restart)", c.kills.to_string()),
        (
            "rebalances (processor added/removed)",
            c.rebalances.to_string(),
        ),
        (
            "partition assignments in the logs",
            f.assignments.to_string(),
        ),
        (
            "pauses (SIGSTOP past session timeout)",
            c.pauses.to_string(),
        ),
        ("restarts: broker (SIGKILL)", c.broker_restarts.to_string()),
        ("restarts: redis", c.redis_restarts.to_string()),
        ("restarts: mysql", c.mysql_restarts.to_string()),
        ("self-exits (restarted)", f.self_exits.to_string()),
        ("requests", t.requests.to_string()),
        ("accepted", t.accepted.to_string()),
        ("rejected", t.rejected_total().to_string()),
    ];
    let reasons: Vec<(String, String)> = t
        .rejected
        .iter()
        .map(|(reason, n)| (format!("  rejected: {reason}"), n.to_string()))
        .collect();
    rows.extend(reasons.iter().map(|(k, v)| (k.as_str(), v.clone())));
    rows.extend([
        ("undecided", t.undecided.to_string()),
        ("client retries", f.client_retries.to_string()),
        ("outcome records in the log", t.log_records.to_string()),
        ("oversold (units)", t.oversold.to_string()),
        ("lost (orders)", t.lost.to_string()),
        ("duplicated (orders)", t.duplicated.to_string()),
        ("conflicting decisions", t.conflicting.to_string()),
        ("products drifted", t.drifted.to_string()),
        ("request decisions drifted", t.decisions_drifted.to_string()),
        ("dead letters", f.dead_letters.to_string()),
        ("processor lag at the end", f.final_lag.to_string()),
        (
            "reconcile: no drift",
            if f.reconciled { "yes" } else { "NO" }.to_owned(),
        ),
        ("load (s)", f.load.as_secs().to_string()),
        ("wall time (s)", f.wall.elapsed().as_secs().to_string()),
    ]);
    let rows: Vec<(String, String)> = rows.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    format!(
        "chaos run {} (seed {})\n{}",
        f.run,
        f.seed,
        verify::table(&rows)
    )
}

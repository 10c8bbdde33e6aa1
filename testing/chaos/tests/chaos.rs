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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use sqlx::mysql::MySqlPool;

use flashsale_chaos::faults::{self, event, FaultCounts, FaultSpec};
use flashsale_chaos::fleet::{read_text, Fleet, FleetConfig, FleetGuard, Role, SelfExit};
use flashsale_chaos::rng::seeded;
use flashsale_chaos::verify::{self, CheckTally, GroupLag, OutcomeLog, Stores};
use flashsale_chaos::workload::{self, ClientOutcome, RetryPolicy, SalePlan, SalePlanSpec};
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

/// The load's length in seconds: `FLASHSALE_CHAOS_SECONDS`, else 90.
fn seconds_from_env() -> u64 {
    std::env::var("FLASHSALE_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(LOAD_SECONDS_DEFAULT)
}

/// The run's seed: `FLASHSALE_CHAOS_SEED`, else a random one.
fn seed_from_env() -> u64 {
    std::env::var("FLASHSALE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let bytes = uuid::Uuid::new_v4().into_bytes();
            u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default())
        })
}

/// The `host:port` of a URL (credentials and path dropped).
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
    // Set-up: the run's names, topics, database and processes.
    let run = Run::new();
    create_database_and_topics(&run).await;
    let port = free_port().expect("a free port for the ingress");
    let fleet = new_fleet(&run, port);
    let _guard = FleetGuard(fleet.clone());
    start_children(&fleet);
    let supervisor = Supervisor::spawn(&run, &fleet);
    let api = ingress_api(&run, port).await;
    // Run: the sale, its load and the faults, concurrently.
    let (plan, policy) = configure_sale(&run, &api).await;
    let load = load_under_faults(&run, &fleet, &api, &plan, policy).await;
    // Verification: once everything settled, the checks.
    let mut readers = Readers::open(&run, &plan).await;
    let waiting_for = quiesce(&mut readers, &plan).await;
    run.event(&format!("quiesced: still waiting for {waiting_for:?}"));
    let verdict = judge(&run, &fleet, &mut readers, &plan, &load, &waiting_for).await;
    supervisor.stop().await;
    let report = write_report(&run, &fleet, &load, &verdict);
    assert_passed(&run, &load.counts, &verdict, &report);
    // Tear-down (a passing run only).
    tear_down(&run, &mut readers.redis).await;
}

/// A run's names, settings and environment, fixed at set-up.
struct Run {
    /// When the run started.
    wall: Instant,
    /// The shared stack's environment.
    base: Env,
    /// The repository root.
    root: PathBuf,
    /// The workspace binaries.
    bins: PathBuf,
    /// How long the load lasts.
    load: Duration,
    /// Fault cycles (one per 90 s of load).
    cycles: usize,
    /// The seed of the plan and the fault targets.
    seed: u64,
    /// `chaos-<id>`: prefix of the run's topics, groups, products and logs.
    name: String,
    /// `chaos_<id>`: the run's MySQL database.
    database: String,
    /// `.dev/logs`.
    logs_dir: PathBuf,
    /// Where every event of the run is logged.
    events_log: PathBuf,
    /// The run's environment: its own topics and database.
    env: Env,
    /// The environment every child process and `flashsale-admin` gets.
    common_env: Vec<(String, String)>,
}

impl Run {
    /// Names the run, reads its settings from the environment and creates
    /// `.dev/logs`.
    fn new() -> Self {
        let wall = Instant::now();
        let base = Env::from_env();
        let root = repo_root();
        let bins = bin_dir(&root);
        let load = Duration::from_secs(seconds_from_env());
        let cycles = load.as_secs().div_ceil(LOAD_SECONDS_DEFAULT).max(1) as usize;
        let seed = seed_from_env();
        let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let name = format!("chaos-{id}");
        let logs_dir = root.join(".dev/logs");
        let events_log = logs_dir.join(format!("{name}-events.log"));
        std::fs::create_dir_all(&logs_dir).expect("creating .dev/logs");
        eprintln!(
            "chaos: run {name}, seed {seed}, load {load:?}; events in {}",
            events_log.display()
        );
        // The run's own topics and its own MySQL database (see
        // chaos::create_database for why).
        let database = format!("chaos_{id}");
        let env = Env {
            mysql_url: with_database(&base.mysql_url, &database),
            requests_topic: format!("{name}.requests"),
            outcomes_topic: format!("{name}.outcomes"),
            dead_letter_topic: format!("{name}.dead-letter"),
            snapshots_topic: format!("{name}.snapshots"),
            ..base.clone()
        };
        let common_env = common_env(&env);
        Self {
            wall,
            base,
            root,
            bins,
            load,
            cycles,
            seed,
            name,
            database,
            logs_dir,
            events_log,
            env,
            common_env,
        }
    }

    /// Records an event on stderr and in the events log.
    fn event(&self, text: &str) {
        event(&self.events_log, self.wall, text);
    }
}

/// The environment of the run's processes: endpoints, topics, partitions.
fn common_env(env: &Env) -> Vec<(String, String)> {
    let partitions = PARTITIONS.to_string();
    [
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
    .collect()
}

/// Creates the run's MySQL database, then its topics (`flashsale-admin
/// create-topics`).
async fn create_database_and_topics(run: &Run) {
    create_database(&run.base.mysql_url, &run.database)
        .await
        .expect("creating the run's database (is the stack up? dev/up)");
    let created = admin(
        &run.bins,
        &run.common_env,
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
}

/// Extra environment per role: the run's groups, snapshots, the ingress port.
fn role_env(run: &str, port: u16) -> BTreeMap<Role, Vec<(String, String)>> {
    let pair = |k: &str, v: String| (k.to_owned(), v);
    BTreeMap::from([
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
    ])
}

/// The run's own processes, none started yet (the ingress will listen on
/// `port`).
fn new_fleet(run: &Run, port: u16) -> Arc<Fleet> {
    Fleet::new(FleetConfig {
        run_name: run.name.clone(),
        logs_dir: run.logs_dir.clone(),
        pids_dir: run.root.join(".dev/pids"),
        bin_dir: run.bins.clone(),
        common_env: run.common_env.clone(),
        role_env: role_env(&run.name, port),
    })
}

/// Starts two processors, two sinks per store and the ingress.
fn start_children(fleet: &Fleet) {
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
}

/// The supervisor: crash-only services are started again when they exit.
struct Supervisor {
    /// Cleared to stop it.
    supervising: Arc<AtomicBool>,
    /// Its task.
    task: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// Starts supervising `fleet` every 500 ms, logging each self-exit.
    fn spawn(run: &Run, fleet: &Arc<Fleet>) -> Self {
        let supervising = Arc::new(AtomicBool::new(true));
        let (fleet, flag, events_log, wall) = (
            fleet.clone(),
            supervising.clone(),
            run.events_log.clone(),
            run.wall,
        );
        let task = tokio::spawn(async move {
            while flag.load(Ordering::SeqCst) {
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
        });
        Self { supervising, task }
    }

    /// Stops supervising and waits for the task to end.
    async fn stop(self) {
        self.supervising.store(false, Ordering::SeqCst);
        let _ = self.task.await;
    }
}

/// A client of the run's ingress on `port`, once it answers /health.
async fn ingress_api(run: &Run, port: u16) -> Api {
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
    let run = &run.name;
    assert!(healthy, "the run's ingress did not answer /health on {ingress_url}; see .dev/logs/{run}-ingress.log");
    api
}

/// Plans the sale from the seed and configures every product's sale; also
/// returns the clients' retry policy.
async fn configure_sale(run: &Run, api: &Api) -> (Arc<SalePlan>, RetryPolicy) {
    let mut rng = seeded(run.seed);
    let plan = Arc::new(SalePlan::new(
        &run.name,
        &SalePlanSpec {
            products: PRODUCTS_PER_CYCLE * run.cycles,
            stock: 20,
            per_user_limit: 2,
            demand_factor: 5,
            greedy_users: 5,
            greedy_requests: 3,
            load: run.load,
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
    workload::configure(api, &plan, &policy)
        .await
        .expect("configuring the sales");
    run.event(&format!(
        "{} sales configured, {} purchases planned",
        plan.products.len(),
        plan.purchases.len()
    ));
    (plan, policy)
}

/// How the faults are paced and where they log, for this run.
fn fault_spec(run: &Run) -> FaultSpec {
    FaultSpec {
        // One cycle per 90 s of load, paced the same in every run.
        gap: (run.load.min(Duration::from_secs(LOAD_SECONDS_DEFAULT)) / 16)
            .max(Duration::from_secs(2)),
        pause: Duration::from_secs(15),
        down: Duration::from_secs(1),
        root: run.root.clone(),
        events_log: run.events_log.clone(),
        cycles_max: run.cycles + 1,
        broker_addr: host_port(&run.env.brokers),
        redis_addr: host_port(&run.env.redis_url),
        mysql_addr: host_port(&run.base.mysql_url),
        brokers: run.env.brokers.clone(),
        probe_topic: run.env.requests_topic.clone(),
    }
}

/// What the load and the faults did.
struct LoadDone {
    /// Every purchase's result, as its client saw it.
    clients: Vec<ClientOutcome>,
    /// The faults injected.
    counts: FaultCounts,
    /// POSTs the clients re-sent.
    client_retries: u64,
}

/// Runs the clients' load while the faults run, until both are over.
async fn load_under_faults(
    run: &Run,
    fleet: &Arc<Fleet>,
    api: &Api,
    plan: &Arc<SalePlan>,
    policy: RetryPolicy,
) -> LoadDone {
    let retries = Arc::new(AtomicU64::new(0));
    let load_done = Arc::new(AtomicBool::new(false));
    let chaos = tokio::spawn(faults::run(
        fleet.clone(),
        fault_spec(run),
        load_done.clone(),
        run.seed.rotate_left(17),
        run.wall,
    ));
    let load_start = Instant::now();
    let load_policy = RetryPolicy {
        deadline: Some(load_start + run.load + LOAD_GRACE),
        ..policy
    };
    let clients = workload::run(
        api.clone(),
        plan.clone(),
        CLIENTS,
        load_policy,
        load_start,
        run.seed.rotate_left(31),
        retries.clone(),
    )
    .await;
    load_done.store(true, Ordering::SeqCst);
    run.event("load finished");
    let counts: FaultCounts = match chaos.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("the faults could not be injected: {e:#}"),
        Err(e) => panic!("the fault task failed: {e}"),
    };
    run.event(&format!("faults over: {counts:?}"));
    LoadDone {
        clients,
        counts,
        client_retries: retries.load(Ordering::SeqCst),
    }
}

/// What the run is judged by: the outcomes log, the processors' group lag
/// and the read models, with the IDs to read them for.
struct Readers {
    /// The run's outcomes topic, read from the beginning.
    log: OutcomeLog,
    /// The processors' consumer-group lag on the requests topic.
    lag: GroupLag,
    /// The run's MySQL database.
    pool: MySqlPool,
    /// Redis.
    redis: ConnectionManager,
    /// The run's product IDs.
    products: Vec<String>,
    /// The run's purchase request IDs.
    requests: Vec<String>,
}

impl Readers {
    /// Opens every reader of the run.
    async fn open(run: &Run, plan: &SalePlan) -> Self {
        let env = &run.env;
        let contract = kafka::contract(env).await.expect("registry");
        let log = OutcomeLog::open(&env.brokers, contract, &env.outcomes_topic, PARTITIONS)
            .expect("outcomes reader");
        let lag = GroupLag::new(
            &env.brokers,
            &format!("{}-processors", run.name),
            &env.requests_topic,
            PARTITIONS,
        )
        .expect("lag reader");
        let pool = env.mysql().await.expect("mysql");
        let redis = env.redis().await.expect("redis");
        let products: Vec<String> = plan.products.iter().map(|p| p.id.clone()).collect();
        let requests: Vec<String> = plan
            .purchases
            .iter()
            .map(|p| p.request_id.clone())
            .collect();
        Self {
            log,
            lag,
            pool,
            redis,
            products,
            requests,
        }
    }

    /// Reads both read models for the run's products and requests.
    async fn stores(&mut self) -> anyhow::Result<Stores> {
        verify::read_stores(&self.pool, &mut self.redis, &self.products, &self.requests).await
    }
}

/// Waits (at most [`QUIESCE_MAX`]) until every request has an outcome in
/// the log, the processors' group has no lag and the read models show what
/// the log says; returns what it was still waiting for (empty: settled).
async fn quiesce(readers: &mut Readers, plan: &SalePlan) -> Vec<String> {
    let ids: Vec<&str> = plan
        .purchases
        .iter()
        .map(|p| p.request_id.as_str())
        .chain(plan.products.iter().map(|p| p.command_id.as_str()))
        .collect();
    let deadline = Instant::now() + QUIESCE_MAX;
    loop {
        let waiting_for = still_waiting_for(readers, plan, &ids).await;
        if waiting_for.is_empty() || Instant::now() >= deadline {
            return waiting_for;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One round of [`quiesce`]: reads the log further, then says what has not
/// settled yet.
async fn still_waiting_for(readers: &mut Readers, plan: &SalePlan, ids: &[&str]) -> Vec<String> {
    let mut waiting_for = Vec::new();
    match readers.log.catch_up(Duration::from_secs(30)).await {
        Ok(true) => {}
        Ok(false) => waiting_for.push("the outcomes log to be read to its end".to_owned()),
        Err(e) => waiting_for.push(format!("the outcomes log ({e:#})")),
    }
    let by_request = readers.log.by_request();
    let undecided = ids
        .iter()
        .filter(|id| !by_request.contains_key(**id))
        .count();
    if undecided > 0 {
        waiting_for.push(format!("{undecided} requests without an outcome"));
    }
    match readers.lag.lag() {
        Ok(l) if l.iter().all(|x| *x == 0) => {}
        Ok(l) => waiting_for.push(format!("processor group lag {l:?}")),
        Err(e) => waiting_for.push(format!("processor group lag ({e:#})")),
    }
    match readers.stores().await {
        Ok(s) if verify::stores_settled(plan, &verify::fold_log(&readers.log), &s) => {}
        Ok(_) => waiting_for.push("the read models to show what the log says".to_owned()),
        Err(e) => waiting_for.push(format!("the read models ({e:#})")),
    }
    waiting_for
}

/// The run's judgement: the checks' tally, every violation, and the other
/// figures of the report.
struct Verdict {
    /// What [`verify::check`] counted.
    tally: CheckTally,
    /// Every violation found (empty: the run passed).
    violations: Vec<String>,
    /// Records the processors' group had not committed at the end (-1:
    /// unknown).
    final_lag: i64,
    /// Records in the run's dead-letter topic (-1: unknown).
    dead_letters: i64,
    /// Children that exited on their own (and were restarted).
    self_exits: Vec<SelfExit>,
    /// Whether `flashsale-admin reconcile` found no drift.
    reconciled: bool,
}

/// Runs the checks: [`verify::check`] on clients, log and read models, then
/// settling, dead letters, panics and `flashsale-admin reconcile`.
async fn judge(
    run: &Run,
    fleet: &Fleet,
    readers: &mut Readers,
    plan: &SalePlan,
    load: &LoadDone,
    waiting_for: &[String],
) -> Verdict {
    let stores = readers.stores().await.expect("reading the read models");
    let (tally, mut violations) = verify::check(plan, &load.clients, &readers.log, &stores);
    violations.extend(
        waiting_for
            .iter()
            .map(|w| format!("did not settle within {QUIESCE_MAX:?}: {w}")),
    );
    let final_lag: i64 = readers.lag.lag().map(|l| l.iter().sum()).unwrap_or(-1);
    let env = &run.env;
    let dead_letters =
        verify::record_count(&env.brokers, &env.dead_letter_topic, PARTITIONS).unwrap_or(-1);
    if dead_letters != 0 {
        violations.push(format!(
            "{dead_letters} records in {} (the ingress only writes valid ones)",
            env.dead_letter_topic
        ));
    }
    violations.extend(
        panics(fleet)
            .into_iter()
            .map(|l| format!("a process panicked: {l}")),
    );
    let self_exits = fleet.self_exits();
    let reconcile = reconcile(&run.bins, &run.common_env, &run.name).await;
    if let Err(e) = &reconcile {
        violations.push(e.clone());
    }
    Verdict {
        tally,
        violations,
        final_lag,
        dead_letters,
        self_exits,
        reconciled: reconcile.is_ok(),
    }
}

/// Prints the report table (past the test harness's capture), writes it
/// with the violations to `<run>-summary.txt` and returns that file's path.
fn write_report(run: &Run, fleet: &Fleet, load: &LoadDone, verdict: &Verdict) -> PathBuf {
    let summary = summary(&Facts {
        run: &run.name,
        seed: run.seed,
        load: run.load,
        counts: &load.counts,
        assignments: assignments_seen(fleet),
        self_exits: verdict.self_exits.len(),
        tally: &verdict.tally,
        client_retries: load.client_retries,
        dead_letters: verdict.dead_letters,
        final_lag: verdict.final_lag,
        reconciled: verdict.reconciled,
        wall: run.wall,
    });
    // Straight to the process's stderr, past the test harness's capture, so
    // CI logs show the table of a passing run too.
    let _ = writeln!(std::io::stderr(), "{summary}");
    let report = run.logs_dir.join(format!("{}-summary.txt", run.name));
    let _ = std::fs::write(
        &report,
        format!(
            "{summary}\nviolations:\n{}\n",
            verdict.violations.join("\n")
        ),
    );
    for exit in &verdict.self_exits {
        eprintln!(
            "self-exit (restarted): {} pid {} {}",
            exit.name, exit.pid, exit.status
        );
    }
    report
}

/// The run passed: every fault happened and nothing was violated.
fn assert_passed(run: &Run, counts: &FaultCounts, verdict: &Verdict, report: &Path) {
    assert!(counts.kills >= 5, "only {} kills happened", counts.kills);
    assert!(
        counts.pauses >= 1
            && counts.broker_restarts >= 1
            && counts.redis_restarts >= 1
            && counts.mysql_restarts >= 1
            && counts.rebalances >= 2,
        "not every fault happened: {counts:?}"
    );
    let (name, seed, database) = (&run.name, run.seed, &run.database);
    let violations = &verdict.violations;
    assert!(
        violations.is_empty(),
        "run {name} (seed {seed}): {} violations (all in {}; logs .dev/logs/{name}-*.log; \
         read model kept in database {database}, topics {name}.*):\n{}",
        violations.len(),
        report.display(),
        violations
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Passed: the run's database, topics and Redis keys are of no further use
/// (a failed run keeps them for inspection).
async fn tear_down(run: &Run, redis: &mut ConnectionManager) {
    let env = &run.env;
    let topics = [
        env.requests_topic.as_str(),
        env.outcomes_topic.as_str(),
        env.dead_letter_topic.as_str(),
        env.snapshots_topic.as_str(),
    ];
    if let Err(e) = kafka::delete_topics(env, &topics).await {
        eprintln!("chaos: could not delete the run's topics: {e:#}");
    }
    let database = &run.database;
    if let Err(e) = drop_database(&run.base.mysql_url, database).await {
        eprintln!("chaos: could not drop database {database}: {e:#}");
    }
    if let Err(e) = verify::delete_redis_keys(redis, &format!("{}-", run.name), 10_000).await {
        eprintln!("chaos: could not delete the run's Redis keys: {e:#}");
    }
}

/// Runs `flashsale-admin reconcile` on the run's topics and products; the
/// error explains a drift or a missing subcommand.
async fn reconcile(bins: &Path, env: &[(String, String)], run: &str) -> Result<String, String> {
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
    tally: &'a CheckTally,
    client_retries: u64,
    dead_letters: i64,
    final_lag: i64,
    reconciled: bool,
    wall: Instant,
}

/// The report: a heading and the table of [`Facts`].
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

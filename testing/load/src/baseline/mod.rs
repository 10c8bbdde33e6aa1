//! # Baselines: the old design's strategies, done correctly
//!
//! Each is an HTTP server with the pipeline's purchase shape over the same
//! MariaDB and Redis, on its own tables (`baseline_sales`,
//! `baseline_orders`) and keys (`baseline:*`), so the benchmark compares
//! strategies rather than APIs:
//!
//! | strategy | module | how it stays correct | what it costs |
//! |---|---|---|---|
//! | `redis-lock` | [`redis_lock`] | Redis lock + guarded decrement | a lock round trip per buyer, `busy` rejections |
//! | `optimistic` | [`optimistic`] | version-checked UPDATE, 3 tries | `conflict` rejections while stock remains |
//! | `pessimistic` | [`pessimistic`] | `SELECT ... FOR UPDATE` | hot rows serialise on MySQL |
//! | `redis-lua` | [`redis_lua`] | one atomic Lua script | orders persisted later: lost on a crash |
//! | `redis-lua-flag` | [`redis_lua_flag`] | redis-lua, plus an in-process sold-out flag per product | as redis-lua; the flag is per process and only a (re)configure through that server resets it |
//!
//! Every strategy enforces the per-user limit and answers a repeated
//! `request_id` with its original order (the old design did neither
//! reliably). Rejections are not remembered, as in the old design: a
//! repeated request that was rejected is decided again.
//!
//! `redis-lua-flag` is the strongest form of the Redis-Lua habit (the
//! popular seckill designs answer sold-out products from memory); it is not
//! one of the old design's four, but what a careful team would have built
//! from them.
//!
//! Routes: `POST /api/v1/sales` (201), `GET /api/v1/sales/{product}`,
//! `POST /api/v1/sales/{product}/purchases`, `GET /api/v1/baseline/stats`
//! (accepted, persisted, dropped, queued, lock, conflict and flag counters),
//! `GET /api/v1/baseline/orders?product_prefix=P` (stored orders per
//! product), `GET /health`.

pub mod http;
pub mod optimistic;
pub mod pessimistic;
pub mod process;
pub mod redis_lock;
pub mod redis_lua;
pub mod redis_lua_flag;
pub mod server;
pub mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use process::BaselineProcess;
pub use server::BaselineServer;
use store::NewOrder;

/// The local stack's MySQL (as `dev/env` prints it).
pub const DEFAULT_MYSQL_URL: &str = "mysql://flashsale:flashsale@127.0.0.1:13306/flashsale";
/// The local stack's Redis.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:16379/";

/// Which of the old design's strategies a baseline server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Redis `SET NX PX` lock around a MySQL read-check-decrement.
    RedisLock,
    /// MySQL version column, 3 tries, then `conflict`.
    Optimistic,
    /// MySQL `SELECT ... FOR UPDATE` transaction.
    Pessimistic,
    /// Redis Lua pre-deduction, orders persisted asynchronously.
    RedisLua,
    /// redis-lua plus an in-process sold-out flag per product.
    RedisLuaFlag,
}

impl Strategy {
    /// Every strategy, in the order the benchmark runs them.
    pub const ALL: [Strategy; 5] = [
        Strategy::RedisLock,
        Strategy::Optimistic,
        Strategy::Pessimistic,
        Strategy::RedisLua,
        Strategy::RedisLuaFlag,
    ];

    /// The name used in flags, tables and reports.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::RedisLock => "redis-lock",
            Strategy::Optimistic => "optimistic",
            Strategy::Pessimistic => "pessimistic",
            Strategy::RedisLua => "redis-lua",
            Strategy::RedisLuaFlag => "redis-lua-flag",
        }
    }

    /// Whether it decides with the Lua script in Redis (and so persists
    /// orders asynchronously, and reads the remaining stock from Redis).
    pub fn uses_lua(self) -> bool {
        matches!(self, Strategy::RedisLua | Strategy::RedisLuaFlag)
    }
}

/// Where the baselines keep their data and how patient each strategy is.
#[derive(Debug, Clone, clap::Args)]
pub struct BaselineConfig {
    /// MySQL URL; the baseline tables are created there at start.
    #[arg(long, env = "FLASHSALE_MYSQL_URL", default_value = DEFAULT_MYSQL_URL)]
    pub mysql_url: String,
    /// Redis URL; baseline keys start with `baseline:`.
    #[arg(long, env = "FLASHSALE_REDIS_URL", default_value = DEFAULT_REDIS_URL)]
    pub redis_url: String,
    /// MySQL connections per baseline server.
    #[arg(long, default_value_t = 32)]
    pub mysql_pool: u32,
    /// redis-lock: lock time-to-live (ms); must exceed the critical section.
    #[arg(long, default_value_t = 5000)]
    pub lock_ttl_ms: u64,
    /// redis-lock: tries to take the lock before answering `busy`.
    #[arg(long, default_value_t = 20)]
    pub lock_attempts: u32,
    /// redis-lock: mean wait between tries (ms), jittered +-50%.
    #[arg(long, default_value_t = 10)]
    pub lock_retry_ms: u64,
    /// optimistic: tries before answering `conflict` (the old design: 3).
    #[arg(long, default_value_t = 3)]
    pub optimistic_attempts: u32,
    /// optimistic: wait between tries (ms) (the old design: 10).
    #[arg(long, default_value_t = 10)]
    pub optimistic_backoff_ms: u64,
    /// redis-lua(-flag): capacity of the persistence queue; a full queue drops orders.
    #[arg(long, default_value_t = 100_000)]
    pub persist_queue: usize,
    /// redis-lua(-flag): most orders the worker writes per transaction.
    #[arg(long, default_value_t = 500)]
    pub persist_batch: usize,
}

impl BaselineConfig {
    /// The defaults above, with the endpoints of `env`.
    pub fn for_env(env: &flashsale_testkit::Env) -> Self {
        Self {
            mysql_url: env.mysql_url.clone(),
            redis_url: env.redis_url.clone(),
            mysql_pool: 32,
            lock_ttl_ms: 5000,
            lock_attempts: 20,
            lock_retry_ms: 10,
            optimistic_attempts: 3,
            optimistic_backoff_ms: 10,
            persist_queue: 100_000,
            persist_batch: 500,
        }
    }

    /// The `flashsale-baseline` flags that reproduce this configuration,
    /// except the store URLs, which go in the environment (`url_env`) so
    /// their passwords stay out of the process list.
    pub fn to_args(&self) -> Vec<String> {
        let flags: [(&str, String); 8] = [
            ("--mysql-pool", self.mysql_pool.to_string()),
            ("--lock-ttl-ms", self.lock_ttl_ms.to_string()),
            ("--lock-attempts", self.lock_attempts.to_string()),
            ("--lock-retry-ms", self.lock_retry_ms.to_string()),
            (
                "--optimistic-attempts",
                self.optimistic_attempts.to_string(),
            ),
            (
                "--optimistic-backoff-ms",
                self.optimistic_backoff_ms.to_string(),
            ),
            ("--persist-queue", self.persist_queue.to_string()),
            ("--persist-batch", self.persist_batch.to_string()),
        ];
        flags
            .into_iter()
            .flat_map(|(flag, value)| [flag.to_owned(), value])
            .collect()
    }

    /// The environment variables `flashsale-baseline` reads the store URLs
    /// from, with this configuration's values.
    pub fn url_env(&self) -> [(&'static str, String); 2] {
        [
            ("FLASHSALE_MYSQL_URL", self.mysql_url.clone()),
            ("FLASHSALE_REDIS_URL", self.redis_url.clone()),
        ]
    }
}

/// Counters since the server started, shown at `/api/v1/baseline/stats`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Purchases answered accepted (repeats not counted).
    pub accepted_orders: AtomicU64,
    /// Units in them.
    pub accepted_units: AtomicU64,
    /// Orders committed to MySQL.
    pub persisted_orders: AtomicU64,
    /// Units in them.
    pub persisted_units: AtomicU64,
    /// Accepted orders given up (full queue, MySQL failing): lost.
    pub dropped_orders: AtomicU64,
    /// Units in them.
    pub dropped_units: AtomicU64,
    /// redis-lock: buyers answered `busy` for want of the lock.
    pub lock_busy: AtomicU64,
    /// redis-lock: failed `SET NX` tries.
    pub lock_retries: AtomicU64,
    /// redis-lock: locks found expired at release or in the critical section.
    pub lock_lost: AtomicU64,
    /// optimistic: UPDATEs that found another version.
    pub version_conflicts: AtomicU64,
    /// optimistic: buyers answered `conflict` after the last try.
    pub conflict_rejections: AtomicU64,
    /// redis-lua-flag: purchases answered from the in-process flag (sold
    /// out, or a repeat of an order accepted here) without calling Redis.
    pub flag_answers: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    /// The strategy.
    pub strategy: String,
    /// See [`Stats::accepted_orders`].
    pub accepted_orders: u64,
    /// See [`Stats::accepted_units`].
    pub accepted_units: u64,
    /// See [`Stats::persisted_orders`].
    pub persisted_orders: u64,
    /// See [`Stats::persisted_units`].
    pub persisted_units: u64,
    /// See [`Stats::dropped_orders`].
    pub dropped_orders: u64,
    /// See [`Stats::dropped_units`].
    pub dropped_units: u64,
    /// Accepted orders neither persisted nor dropped yet: what a crash now
    /// would lose.
    pub queued_orders: u64,
    /// See [`Stats::lock_busy`].
    pub lock_busy: u64,
    /// See [`Stats::lock_retries`].
    pub lock_retries: u64,
    /// See [`Stats::lock_lost`].
    pub lock_lost: u64,
    /// See [`Stats::version_conflicts`].
    pub version_conflicts: u64,
    /// See [`Stats::conflict_rejections`].
    pub conflict_rejections: u64,
    /// See [`Stats::flag_answers`]; absent (0) from servers built before it.
    #[serde(default)]
    pub flag_answers: u64,
}

impl Stats {
    fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// An accepted purchase; `persisted` when its order is already committed.
    fn accepted(&self, quantity: i32, persisted: bool) {
        let units = u64::try_from(quantity).unwrap_or(0);
        Self::add(&self.accepted_orders, 1);
        Self::add(&self.accepted_units, units);
        if persisted {
            self.persisted(1, quantity);
        }
    }

    fn persisted(&self, orders: u64, units: i32) {
        Self::add(&self.persisted_orders, orders);
        Self::add(&self.persisted_units, u64::try_from(units).unwrap_or(0));
    }

    fn dropped(&self, quantity: i32) {
        Self::add(&self.dropped_orders, 1);
        Self::add(&self.dropped_units, u64::try_from(quantity).unwrap_or(0));
    }

    /// A consistent-enough snapshot (each counter read once).
    pub fn view(&self, strategy: Strategy) -> StatsView {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (accepted, persisted, dropped) = (
            get(&self.accepted_orders),
            get(&self.persisted_orders),
            get(&self.dropped_orders),
        );
        StatsView {
            strategy: strategy.name().to_owned(),
            accepted_orders: accepted,
            accepted_units: get(&self.accepted_units),
            persisted_orders: persisted,
            persisted_units: get(&self.persisted_units),
            dropped_orders: dropped,
            dropped_units: get(&self.dropped_units),
            queued_orders: accepted.saturating_sub(persisted + dropped),
            lock_busy: get(&self.lock_busy),
            lock_retries: get(&self.lock_retries),
            lock_lost: get(&self.lock_lost),
            version_conflicts: get(&self.version_conflicts),
            conflict_rejections: get(&self.conflict_rejections),
            flag_answers: get(&self.flag_answers),
        }
    }
}

/// What every handler shares.
pub struct Shared {
    /// The strategy this server runs.
    pub strategy: Strategy,
    /// Patience settings.
    pub config: BaselineConfig,
    /// MySQL, READ COMMITTED (each read sees the latest commits).
    pub pool: MySqlPool,
    /// Redis, multiplexed.
    pub redis: ConnectionManager,
    /// Counters.
    pub stats: Arc<Stats>,
    /// redis-lua(-flag): the persistence queue.
    pub persist: Option<mpsc::Sender<NewOrder>>,
    /// redis-lock: compare-and-delete.
    pub unlock: redis::Script,
    /// redis-lua(-flag): the pre-deduction script.
    pub lua: redis::Script,
    /// redis-lua-flag: this process's sold-out flags (empty otherwise).
    pub sold_out: redis_lua_flag::SoldOutFlags,
}

/// A validated purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseInput {
    /// What.
    pub product: String,
    /// Who.
    pub user: String,
    /// How many, 1..=[`http::QUANTITY_MAX`].
    pub quantity: i32,
    /// Idempotency key.
    pub request_id: String,
}

/// A strategy's answer to a purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Sold.
    Accepted {
        /// The order.
        order_id: String,
        /// Stock left after it, when known.
        remaining: Option<i64>,
        /// A repeated request ID answered from its stored order.
        repeat: bool,
    },
    /// Not sold.
    Rejected {
        /// Stable reason code.
        reason: &'static str,
        /// Stock left, when known.
        remaining: Option<i64>,
    },
    /// No sale for the product: answered 404.
    UnknownProduct,
}

impl Decision {
    fn accepted(order_id: String, remaining: i64) -> Self {
        Decision::Accepted {
            order_id,
            remaining: Some(remaining),
            repeat: false,
        }
    }

    fn repeat(order_id: String) -> Self {
        Decision::Accepted {
            order_id,
            remaining: None,
            repeat: true,
        }
    }

    fn rejected(reason: &'static str, remaining: i64) -> Self {
        Decision::Rejected {
            reason,
            remaining: Some(remaining),
        }
    }

    fn rejected_unknown_remaining(reason: &'static str) -> Self {
        Decision::Rejected {
            reason,
            remaining: None,
        }
    }

    /// The stored order of `request_id` after an insert hit the UNIQUE key.
    async fn existing(shared: &Shared, request_id: &str) -> anyhow::Result<Decision> {
        let mut conn = shared.pool.acquire().await?;
        let order = store::order_for_request(&mut conn, request_id).await?;
        order
            .map(Decision::repeat)
            .with_context(|| format!("request {request_id} hit the UNIQUE key but has no order"))
    }
}

impl NewOrder {
    /// A fresh order for an accepted purchase.
    fn for_purchase(p: &PurchaseInput) -> Self {
        NewOrder {
            order_id: format!("b-{}", uuid::Uuid::now_v7().simple()),
            request_id: p.request_id.clone(),
            product_id: p.product.clone(),
            user_id: p.user.clone(),
            quantity: p.quantity,
        }
    }
}

/// Decides with the server's strategy.
pub async fn decide(shared: &Shared, p: &PurchaseInput) -> anyhow::Result<Decision> {
    match shared.strategy {
        Strategy::RedisLock => redis_lock::purchase(shared, p).await,
        Strategy::Optimistic => optimistic::purchase(shared, p).await,
        Strategy::Pessimistic => pessimistic::purchase(shared, p).await,
        Strategy::RedisLua => redis_lua::purchase(shared, p).await,
        Strategy::RedisLuaFlag => redis_lua_flag::purchase(shared, p).await,
    }
}

/// Connects, creates the tables, starts the redis-lua(-flag) worker if
/// needed.
/// Returns the shared state and the worker's handle (it ends once the state
/// is dropped and the queue drained).
pub async fn connect(
    strategy: Strategy,
    config: &BaselineConfig,
) -> anyhow::Result<(Arc<Shared>, Option<JoinHandle<()>>)> {
    let pool = MySqlPoolOptions::new()
        .max_connections(config.mysql_pool.max(1))
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .execute(conn)
                    .await
                    .map(|_| ())
            })
        })
        .connect(&config.mysql_url)
        .await
        .with_context(|| format!("connecting to MySQL at {}", config.mysql_url))?;
    store::create_schema(&pool).await?;
    let client = redis::Client::open(config.redis_url.as_str())?;
    let redis = ConnectionManager::new(client)
        .await
        .with_context(|| format!("connecting to Redis at {}", config.redis_url))?;
    let stats = Arc::new(Stats::default());
    let (persist, worker) = if strategy.uses_lua() {
        let (tx, handle) = redis_lua::spawn_persister(
            pool.clone(),
            stats.clone(),
            strategy,
            config.persist_queue,
            config.persist_batch,
        );
        (Some(tx), Some(handle))
    } else {
        (None, None)
    };
    let shared = Shared {
        strategy,
        config: config.clone(),
        pool,
        redis,
        stats,
        persist,
        unlock: redis_lock::unlock_script(),
        lua: redis_lua::purchase_script(),
        sold_out: redis_lua_flag::SoldOutFlags::default(),
    };
    Ok((Arc::new(shared), worker))
}

/// The baseline's HTTP API for `strategy`: connects to MySQL and Redis,
/// creates the tables, and (redis-lua, redis-lua-flag) starts the
/// persistence worker.
pub async fn app(strategy: Strategy, config: &BaselineConfig) -> anyhow::Result<Router> {
    let (shared, _worker) = connect(strategy, config).await?;
    Ok(http::router(shared))
}

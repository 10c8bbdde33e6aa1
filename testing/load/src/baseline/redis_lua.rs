//! Strategy `redis-lua`: the old design's seckill path. One Lua script
//! checks the buyer's units and the stock and does `DECRBY` in one atomic
//! step; the buyer is answered at once and the order is written to MySQL
//! later, by a background worker fed through a bounded queue.
//!
//! Redis alone decides, atomically, so it never oversells. What it gives up
//! is durability: an accepted order lives only in Redis and in the queue
//! until the worker commits it. A crash (or a full queue: the order is then
//! dropped and counted) loses accepted orders; `GET /api/v1/baseline/stats`
//! shows how many were accepted, persisted, dropped and still queued.
//!
//! Keys share the `{product}` hash tag so the script stays single-slot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use sqlx::mysql::MySqlPool;
use sqlx::QueryBuilder;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::store::NewOrder;
use super::{Decision, PurchaseInput, Shared, Stats, Strategy};

/// How long the per-user and per-request keys live, as the old `SETEX 86400`.
const KEY_TTL_S: u64 = 86_400;
/// Tries per batch before its orders are given up as lost.
const PERSIST_TRIES: u32 = 3;

/// KEYS: stock, limit, user units, request. ARGV: quantity, TTL (s), order ID.
/// Returns `{code, value}`: 1 accepted (remaining), 2 repeat (order ID),
/// 0 rejected (reason), -1 unknown product.
pub const PURCHASE: &str = r"
local seen = redis.call('GET', KEYS[4])
if seen then return {2, seen} end
local limit = redis.call('GET', KEYS[2])
if not limit then return {-1, 'unknown_product'} end
local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
local quantity = tonumber(ARGV[1])
if stock <= 0 then return {0, 'sold_out'} end
local bought = tonumber(redis.call('GET', KEYS[3]) or '0')
if bought + quantity > tonumber(limit) then return {0, 'limit_exceeded'} end
if stock < quantity then return {0, 'insufficient_stock'} end
local remaining = redis.call('DECRBY', KEYS[1], quantity)
redis.call('SET', KEYS[3], bought + quantity, 'EX', ARGV[2])
redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[2])
return {1, tostring(remaining)}
";

/// The purchase script, loaded once per server.
pub fn purchase_script() -> Script {
    Script::new(PURCHASE)
}

/// Redis key of a product's remaining stock.
pub fn stock_key(product: &str) -> String {
    format!("baseline:lua:{{{product}}}:stock")
}

fn limit_key(product: &str) -> String {
    format!("baseline:lua:{{{product}}}:limit")
}

/// Puts a new sale's stock and limit into Redis.
pub async fn configure(
    shared: &Shared,
    product: &str,
    stock: i64,
    limit: i32,
) -> anyhow::Result<()> {
    let mut redis = shared.redis.clone();
    redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(stock_key(product))
        .arg(stock)
        .ignore()
        .cmd("SET")
        .arg(limit_key(product))
        .arg(limit)
        .ignore()
        .query_async::<()>(&mut redis)
        .await?;
    Ok(())
}

/// Remaining stock as Redis (the decider) knows it.
pub async fn remaining(shared: &Shared, product: &str) -> anyhow::Result<Option<i64>> {
    let mut redis = shared.redis.clone();
    Ok(redis::cmd("GET")
        .arg(stock_key(product))
        .query_async(&mut redis)
        .await?)
}

/// What the purchase script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptAnswer {
    /// Sold: the stock left after it.
    Accepted {
        /// Units left.
        remaining: i64,
    },
    /// The request ID was seen before: its order.
    Repeat {
        /// The original order's ID.
        order_id: String,
    },
    /// Not sold, with the script's reason.
    Rejected {
        /// `sold_out`, `limit_exceeded` or `insufficient_stock`.
        reason: &'static str,
    },
    /// No sale for the product in Redis.
    UnknownProduct,
}

/// Decides one purchase and queues its order for persistence.
pub async fn purchase(shared: &Shared, p: &PurchaseInput) -> anyhow::Result<Decision> {
    let order_id = NewOrder::for_purchase(p).order_id;
    let answer = run_script(shared, p, &order_id).await?;
    Ok(decision(shared, p, order_id, answer))
}

/// Runs the purchase script once; `order_id` becomes the order's ID if the
/// script accepts.
pub async fn run_script(
    shared: &Shared,
    p: &PurchaseInput,
    order_id: &str,
) -> anyhow::Result<ScriptAnswer> {
    let (code, value): (i64, String) = shared
        .lua
        .key(stock_key(&p.product))
        .key(limit_key(&p.product))
        .key(format!("baseline:lua:{{{}}}:user:{}", p.product, p.user))
        .key(format!(
            "baseline:lua:{{{}}}:req:{}",
            p.product, p.request_id
        ))
        .arg(p.quantity)
        .arg(KEY_TTL_S)
        .arg(order_id)
        .invoke_async(&mut shared.redis.clone())
        .await?;
    Ok(match code {
        1 => ScriptAnswer::Accepted {
            remaining: value.parse::<i64>()?,
        },
        2 => ScriptAnswer::Repeat { order_id: value },
        0 => ScriptAnswer::Rejected {
            reason: reason_code(&value),
        },
        _ => ScriptAnswer::UnknownProduct,
    })
}

/// The answer to the buyer; an acceptance is counted and its order queued.
pub fn decision(
    shared: &Shared,
    p: &PurchaseInput,
    order_id: String,
    answer: ScriptAnswer,
) -> Decision {
    match answer {
        ScriptAnswer::Accepted { remaining } => {
            shared.stats.accepted(p.quantity, false);
            enqueue(shared, p, &order_id);
            Decision::accepted(order_id, remaining)
        }
        ScriptAnswer::Repeat { order_id } => Decision::repeat(order_id),
        ScriptAnswer::Rejected { reason } => Decision::rejected_unknown_remaining(reason),
        ScriptAnswer::UnknownProduct => Decision::UnknownProduct,
    }
}

/// Maps the script's reason to a static code (the script only returns these).
fn reason_code(reason: &str) -> &'static str {
    match reason {
        "sold_out" => "sold_out",
        "limit_exceeded" => "limit_exceeded",
        "insufficient_stock" => "insufficient_stock",
        _ => "unknown",
    }
}

/// Hands the order to the worker without waiting, as the old `go
/// asyncProcessPurchase(...)` did. A full queue drops it: accepted, never
/// persisted, and counted so the benchmark can say so.
fn enqueue(shared: &Shared, p: &PurchaseInput, order_id: &str) {
    let order = NewOrder {
        order_id: order_id.to_owned(),
        request_id: p.request_id.clone(),
        product_id: p.product.clone(),
        user_id: p.user.clone(),
        quantity: p.quantity,
    };
    let queued = shared.persist.as_ref().map(|tx| tx.try_send(order));
    if !matches!(queued, Some(Ok(()))) {
        shared.stats.dropped(p.quantity);
    }
}

/// Starts the persistence worker; it ends when every sender is gone and the
/// queue is drained. `strategy` tags the stored orders (`redis-lua` or
/// `redis-lua-flag`, which share this worker).
pub fn spawn_persister(
    pool: MySqlPool,
    stats: Arc<Stats>,
    strategy: Strategy,
    capacity: usize,
    batch_max: usize,
) -> (mpsc::Sender<NewOrder>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<NewOrder>(capacity.max(1));
    let handle = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(batch_max.max(1));
        while rx.recv_many(&mut batch, batch_max.max(1)).await > 0 {
            persist_with_retries(&pool, &stats, strategy, &batch).await;
            batch.clear();
        }
    });
    (tx, handle)
}

async fn persist_with_retries(
    pool: &MySqlPool,
    stats: &Stats,
    strategy: Strategy,
    batch: &[NewOrder],
) {
    let units: i32 = batch.iter().map(|o| o.quantity).sum();
    for attempt in 1..=PERSIST_TRIES {
        match persist(pool, strategy, batch).await {
            Ok(()) => {
                stats.persisted(batch.len() as u64, units);
                return;
            }
            Err(e) if attempt < PERSIST_TRIES => {
                eprintln!(
                    "baseline {}: persisting {} orders failed (try {attempt}): {e:#}",
                    strategy.name(),
                    batch.len()
                );
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(e) => {
                eprintln!(
                    "baseline {}: giving up on {} orders: {e:#}",
                    strategy.name(),
                    batch.len()
                );
                for order in batch {
                    stats.dropped(order.quantity);
                }
            }
        }
    }
}

/// Inserts a batch of orders and applies their units to the MySQL copy of
/// the stock, in one transaction. The script answers a repeated request ID
/// from Redis, so the same order never reaches the queue twice; `INSERT
/// IGNORE` is only a seatbelt.
async fn persist(pool: &MySqlPool, strategy: Strategy, batch: &[NewOrder]) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let mut insert = QueryBuilder::new(
        "INSERT IGNORE INTO baseline_orders (order_id, request_id, product_id, user_id, quantity, strategy) ",
    );
    insert.push_values(batch, |mut row, o| {
        row.push_bind(&o.order_id)
            .push_bind(&o.request_id)
            .push_bind(&o.product_id)
            .push_bind(&o.user_id)
            .push_bind(o.quantity)
            .push_bind(strategy.name());
    });
    insert.build().execute(&mut *tx).await?;
    let mut per_product: BTreeMap<&str, i64> = BTreeMap::new();
    for o in batch {
        *per_product.entry(&o.product_id).or_default() += i64::from(o.quantity);
    }
    // Sorted product order: two batches never lock the same rows in
    // opposite orders.
    for (product, units) in per_product {
        sqlx::query("UPDATE baseline_sales SET remaining = remaining - ?, version = version + 1 WHERE product_id = ?")
            .bind(units)
            .bind(product)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

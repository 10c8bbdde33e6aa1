//! Strategy `redis-lock`: the old design's Redis distributed lock around a
//! MySQL read-check-decrement and order insert.
//!
//! Lock: `SET baseline:lock:{product} <random token> NX PX <ttl>`; unlock:
//! a Lua compare-and-delete, so a holder whose lock expired never deletes
//! the next holder's lock. A buyer who cannot get the lock after a bounded
//! number of tries is rejected `busy`: the old design's "failed to acquire
//! lock", with some patience added.
//!
//! A Redis lock without fencing cannot by itself keep a slow holder whose
//! lock expired from writing next to the new holder. To stay correct the
//! decrement is guarded (`remaining >= q` in the UPDATE) and done in one
//! transaction with the order insert; a guard refusal means the lock was
//! lost, counted in `lock_lost` and answered `busy`. Per-user limits rely on
//! the lock alone, as in the old design.

use std::time::Duration;

use redis::Script;

use super::store::{self, Lock, NewOrder};
use super::{Decision, PurchaseInput, Shared};

/// Deletes the lock only if it still holds our token.
pub const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
";

/// The compare-and-delete script, loaded once per server.
pub fn unlock_script() -> Script {
    Script::new(UNLOCK)
}

/// Decides one purchase.
pub async fn purchase(shared: &Shared, p: &PurchaseInput) -> anyhow::Result<Decision> {
    let key = format!("baseline:lock:{}", p.product);
    let token = uuid::Uuid::new_v4().simple().to_string();
    if !acquire(shared, &key, &token).await? {
        shared.stats.bump(&shared.stats.lock_busy);
        return Ok(Decision::rejected_unknown_remaining("busy"));
    }
    let decided = locked_purchase(shared, p).await;
    // Release even when the decision failed; if the release itself fails the
    // lock still expires after its TTL.
    let released: redis::RedisResult<i64> = shared
        .unlock
        .key(&key)
        .arg(&token)
        .invoke_async(&mut shared.redis.clone())
        .await;
    if !matches!(released, Ok(1)) {
        shared.stats.bump(&shared.stats.lock_lost);
    }
    decided
}

/// Tries `SET NX PX` up to `lock_attempts` times, sleeping a jittered
/// `lock_retry_ms` between tries so waiters do not retry in lockstep.
async fn acquire(shared: &Shared, key: &str, token: &str) -> anyhow::Result<bool> {
    let config = &shared.config;
    let mut redis = shared.redis.clone();
    for attempt in 0..config.lock_attempts.max(1) {
        if attempt > 0 {
            let base = config.lock_retry_ms.max(1);
            let wait = base / 2 + rand::random_range(0..=base);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(config.lock_ttl_ms)
            .query_async(&mut redis)
            .await?;
        if set.is_some() {
            return Ok(true);
        }
        shared.stats.bump(&shared.stats.lock_retries);
    }
    Ok(false)
}

/// The critical section: read, check, decrement, insert, in one transaction.
async fn locked_purchase(shared: &Shared, p: &PurchaseInput) -> anyhow::Result<Decision> {
    let mut tx = shared.pool.begin().await?;
    let Some(sale) = store::sale(&mut tx, &p.product, Lock::None).await? else {
        return Ok(Decision::UnknownProduct);
    };
    if let Some(order_id) = store::order_for_request(&mut tx, &p.request_id).await? {
        return Ok(Decision::repeat(order_id));
    }
    let units = store::user_units(&mut tx, &p.product, &p.user).await?;
    if let Some(reason) = store::refusal(sale.remaining, sale.per_user_limit, units, p.quantity) {
        return Ok(Decision::rejected(reason, sale.remaining));
    }
    if !store::take_stock(&mut tx, &p.product, p.quantity, None).await? {
        // Someone else sold in our critical section: our lock had expired.
        shared.stats.bump(&shared.stats.lock_lost);
        return Ok(Decision::rejected_unknown_remaining("busy"));
    }
    let order = NewOrder::for_purchase(p);
    if !store::insert_order(&mut tx, shared.strategy, &order).await? {
        tx.rollback().await?;
        return Decision::existing(shared, &p.request_id).await;
    }
    tx.commit().await?;
    shared.stats.accepted(p.quantity, true);
    Ok(Decision::accepted(
        order.order_id,
        sale.remaining - i64::from(p.quantity),
    ))
}

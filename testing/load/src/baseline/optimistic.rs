//! Strategy `optimistic`: the old design's version check with 3 retries.
//!
//! Each attempt reads the sale (stock, version) without locking, checks,
//! then `UPDATE ... SET stock = stock - q, version = version + 1 WHERE
//! product_id = ? AND version = ? AND stock >= q`. Zero rows means another
//! purchase committed in between: wait 10 ms (as the old code did) and try
//! again, at most 3 times, then reject `conflict`. The order is inserted in
//! the same transaction as the update, so a committed version bump always
//! comes with its order and the user's units read alongside the version are
//! exact whenever the update succeeds. Correct; under contention most
//! attempts lose the race and buyers are turned away while stock remains.

use std::time::Duration;

use super::store::{self, Lock, NewOrder};
use super::{Decision, PurchaseInput, Shared};

/// Decides one purchase.
pub async fn purchase(shared: &Shared, p: &PurchaseInput) -> anyhow::Result<Decision> {
    if let Some(order_id) =
        store::order_for_request(&mut *shared.pool.acquire().await?, &p.request_id).await?
    {
        return Ok(Decision::repeat(order_id));
    }
    let attempts = shared.config.optimistic_attempts.max(1);
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(shared.config.optimistic_backoff_ms)).await;
        }
        if let Some(decision) = attempt_once(shared, p).await? {
            return Ok(decision);
        }
        shared.stats.bump(&shared.stats.version_conflicts);
    }
    shared.stats.bump(&shared.stats.conflict_rejections);
    Ok(Decision::rejected_unknown_remaining("conflict"))
}

/// One read-check-update round in its own transaction (a fresh transaction
/// per attempt: a retry must read the newer version). `None`: the version
/// moved, try again.
async fn attempt_once(shared: &Shared, p: &PurchaseInput) -> anyhow::Result<Option<Decision>> {
    let mut tx = shared.pool.begin().await?;
    let Some(sale) = store::sale(&mut tx, &p.product, Lock::None).await? else {
        return Ok(Some(Decision::UnknownProduct));
    };
    let units = store::user_units(&mut tx, &p.product, &p.user).await?;
    if let Some(reason) = store::refusal(sale.remaining, sale.per_user_limit, units, p.quantity) {
        return Ok(Some(Decision::rejected(reason, sale.remaining)));
    }
    if !store::take_stock(&mut tx, &p.product, p.quantity, Some(sale.version)).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    let order = NewOrder::for_purchase(p);
    if !store::insert_order(&mut tx, shared.strategy, &order).await? {
        // A concurrent send of the same request ID won: undo our decrement.
        tx.rollback().await?;
        return Decision::existing(shared, &p.request_id).await.map(Some);
    }
    tx.commit().await?;
    shared.stats.accepted(p.quantity, true);
    Ok(Some(Decision::accepted(
        order.order_id,
        sale.remaining - i64::from(p.quantity),
    )))
}

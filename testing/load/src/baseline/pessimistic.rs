//! Strategy `pessimistic`: the old design's `SELECT ... FOR UPDATE`.
//!
//! One transaction per purchase: lock the sale row, check, decrement, insert
//! the order, commit. The row lock serialises every purchase of a product
//! through MySQL, so every check (stock, the user's units, the request ID)
//! reads what all earlier purchases committed: correct, and as slow as one
//! row-locked transaction at a time on a hot product.

use super::store::{self, Lock, NewOrder};
use super::{Decision, PurchaseInput, Shared};

/// Decides one purchase.
pub async fn purchase(shared: &Shared, p: &PurchaseInput) -> anyhow::Result<Decision> {
    let strategy = shared.strategy;
    let mut tx = shared.pool.begin().await?;
    // Dropping `tx` without commit rolls back, which is what every early
    // return wants: nothing was written.
    let Some(sale) = store::sale(&mut tx, &p.product, Lock::ForUpdate).await? else {
        return Ok(Decision::UnknownProduct);
    };
    if let Some(order_id) = store::order_for_request(&mut tx, &p.request_id).await? {
        return Ok(Decision::repeat(order_id));
    }
    let units = store::user_units(&mut tx, &p.product, &p.user).await?;
    if let Some(reason) = store::refusal(sale.remaining, sale.per_user_limit, units, p.quantity) {
        return Ok(Decision::rejected(reason, sale.remaining));
    }
    let taken = store::take_stock(&mut tx, &p.product, p.quantity, None).await?;
    assert!(
        taken,
        "pessimistic: {} had {} units under FOR UPDATE yet the guarded UPDATE refused {}",
        p.product, sale.remaining, p.quantity
    );
    let order = NewOrder::for_purchase(p);
    if !store::insert_order(&mut tx, strategy, &order).await? {
        // The same request ID decided concurrently under another product:
        // the stored order is the answer.
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

//! The baselines' own MySQL tables and the queries every strategy shares.
//!
//! `baseline_sales` holds each sale's terms, its remaining stock and the
//! optimistic strategy's version; `baseline_orders` holds accepted orders,
//! UNIQUE on `request_id` so a repeated request can never become a second
//! order, whatever the strategy. Both are created at start and never touch
//! the pipeline's tables.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::mysql::{MySqlConnection, MySqlPool};

use super::Strategy;

const CREATE_SALES: &str = "CREATE TABLE IF NOT EXISTS baseline_sales (
    product_id     VARCHAR(64)    NOT NULL PRIMARY KEY,
    strategy       VARCHAR(16)    NOT NULL,
    stock          BIGINT         NOT NULL,
    remaining      BIGINT         NOT NULL,
    per_user_limit INT            NOT NULL,
    price          DECIMAL(18, 2) NOT NULL,
    version        BIGINT         NOT NULL DEFAULT 0,
    created_at     TIMESTAMP(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB";

const CREATE_ORDERS: &str = "CREATE TABLE IF NOT EXISTS baseline_orders (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    order_id   VARCHAR(64)  NOT NULL,
    request_id VARCHAR(64)  NOT NULL,
    product_id VARCHAR(64)  NOT NULL,
    user_id    VARCHAR(64)  NOT NULL,
    quantity   INT          NOT NULL,
    strategy   VARCHAR(16)  NOT NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY baseline_orders_request (request_id),
    KEY baseline_orders_product_user (product_id, user_id)
) ENGINE = InnoDB";

/// Creates the tables if they are missing.
pub async fn create_schema(pool: &MySqlPool) -> anyhow::Result<()> {
    sqlx::query(CREATE_SALES).execute(pool).await?;
    sqlx::query(CREATE_ORDERS).execute(pool).await?;
    Ok(())
}

/// A sale's terms and stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SaleRow {
    /// The product.
    pub product_id: String,
    /// Units over the sale's life.
    pub stock: i64,
    /// Units not yet sold.
    pub remaining: i64,
    /// Most units one user may buy.
    pub per_user_limit: i32,
    /// Unit price, as a decimal string.
    pub price: String,
    /// Bumped by every sale: the optimistic strategy's version.
    #[serde(skip)]
    pub version: i64,
}

/// A sale to create.
#[derive(Debug, Clone)]
pub struct NewSale<'a> {
    /// The product.
    pub product_id: &'a str,
    /// Units on sale.
    pub stock: i64,
    /// Most units per user.
    pub per_user_limit: i32,
    /// Decimal string, validated by the caller.
    pub price: &'a str,
}

/// Inserts a sale; `false` when the product already has one (sales are
/// configured once here: the benchmark uses fresh product IDs every run).
pub async fn insert_sale(
    pool: &MySqlPool,
    strategy: Strategy,
    sale: &NewSale<'_>,
) -> anyhow::Result<bool> {
    let result = sqlx::query(
        "INSERT INTO baseline_sales (product_id, strategy, stock, remaining, per_user_limit, price)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(sale.product_id)
    .bind(strategy.name())
    .bind(sale.stock)
    .bind(sale.stock)
    .bind(sale.per_user_limit)
    .bind(sale.price)
    .execute(pool)
    .await;
    match result {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether [`sale`] takes the row lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// A plain read.
    None,
    /// `SELECT ... FOR UPDATE`: holds the row until the transaction ends.
    ForUpdate,
}

/// Reads one sale.
pub async fn sale(
    conn: &mut MySqlConnection,
    product: &str,
    lock: Lock,
) -> anyhow::Result<Option<SaleRow>> {
    let sql = match lock {
        Lock::None => {
            "SELECT stock, remaining, per_user_limit, CAST(price AS CHAR), version
                       FROM baseline_sales WHERE product_id = ?"
        }
        Lock::ForUpdate => {
            "SELECT stock, remaining, per_user_limit, CAST(price AS CHAR), version
                            FROM baseline_sales WHERE product_id = ? FOR UPDATE"
        }
    };
    let row: Option<(i64, i64, i32, String, i64)> = sqlx::query_as(sql)
        .bind(product)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(
        |(stock, remaining, per_user_limit, price, version)| SaleRow {
            product_id: product.to_owned(),
            stock,
            remaining,
            per_user_limit,
            price,
            version,
        },
    ))
}

/// The order already created for `request_id`, if any.
pub async fn order_for_request(
    conn: &mut MySqlConnection,
    request_id: &str,
) -> anyhow::Result<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT order_id FROM baseline_orders WHERE request_id = ?")
            .bind(request_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|r| r.0))
}

/// Units `user` already bought of `product`.
pub async fn user_units(
    conn: &mut MySqlConnection,
    product: &str,
    user: &str,
) -> anyhow::Result<i64> {
    let (units,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(quantity), 0) AS SIGNED) FROM baseline_orders
         WHERE product_id = ? AND user_id = ?",
    )
    .bind(product)
    .bind(user)
    .fetch_one(conn)
    .await?;
    Ok(units)
}

/// Takes `quantity` units off the stock, only if that many remain and, for
/// the optimistic strategy, only if the row still has `version`. `false`
/// when the guard refused: the stock can never go below zero, whatever the
/// calling strategy got wrong.
pub async fn take_stock(
    conn: &mut MySqlConnection,
    product: &str,
    quantity: i32,
    version: Option<i64>,
) -> anyhow::Result<bool> {
    let q = match version {
        Some(v) => sqlx::query(
            "UPDATE baseline_sales SET remaining = remaining - ?, version = version + 1
             WHERE product_id = ? AND version = ? AND remaining >= ?",
        )
        .bind(quantity)
        .bind(product)
        .bind(v)
        .bind(quantity),
        None => sqlx::query(
            "UPDATE baseline_sales SET remaining = remaining - ?, version = version + 1
             WHERE product_id = ? AND remaining >= ?",
        )
        .bind(quantity)
        .bind(product)
        .bind(quantity),
    };
    Ok(q.execute(conn).await?.rows_affected() == 1)
}

/// An accepted order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// Its ID.
    pub order_id: String,
    /// The client's idempotency key.
    pub request_id: String,
    /// What was bought.
    pub product_id: String,
    /// Who bought.
    pub user_id: String,
    /// How many units.
    pub quantity: i32,
}

/// Inserts an order; `false` when its request ID already has one.
pub async fn insert_order(
    conn: &mut MySqlConnection,
    strategy: Strategy,
    order: &NewOrder,
) -> anyhow::Result<bool> {
    let result = sqlx::query(
        "INSERT INTO baseline_orders (order_id, request_id, product_id, user_id, quantity, strategy)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&order.order_id)
    .bind(&order.request_id)
    .bind(&order.product_id)
    .bind(&order.user_id)
    .bind(order.quantity)
    .bind(strategy.name())
    .execute(conn)
    .await;
    match result {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Stored orders of one product.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StoredOrders {
    /// Order rows.
    pub orders: i64,
    /// Units in them.
    pub units: i64,
}

/// Stored orders per product, for every product whose ID starts with
/// `prefix` (the benchmark gives each run's products a common prefix).
pub async fn orders_by_prefix(
    pool: &MySqlPool,
    table: &str,
    prefix: &str,
) -> anyhow::Result<BTreeMap<String, StoredOrders>> {
    anyhow::ensure!(
        matches!(table, "baseline_orders" | "orders"),
        "unexpected orders table {table}"
    );
    let pattern = format!("{}%", like_escape(prefix));
    let sql = format!(
        "SELECT product_id, COUNT(*), CAST(COALESCE(SUM(quantity), 0) AS SIGNED)
         FROM {table} WHERE product_id LIKE ? GROUP BY product_id"
    );
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(&sql).bind(pattern).fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .map(|(p, orders, units)| (p, StoredOrders { orders, units }))
        .collect())
}

/// Escapes LIKE's wildcards (`_` is legal in IDs) so a prefix matches only
/// itself; backslash is MySQL's default LIKE escape character.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Why a purchase is refused, checked in the same order as the pipeline's
/// decision core (stock first, then the user's limit, then partial stock) so
/// the reasons compare like for like. `None`: it may go ahead.
pub fn refusal(
    remaining: i64,
    per_user_limit: i32,
    user_units: i64,
    quantity: i32,
) -> Option<&'static str> {
    if remaining <= 0 {
        Some("sold_out")
    } else if user_units + i64::from(quantity) > i64::from(per_user_limit) {
        Some("limit_exceeded")
    } else if i64::from(quantity) > remaining {
        Some("insufficient_stock")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the refusal order matches the pipeline's and the boundaries:
    /// exactly the limit is allowed, one more is not; exactly the remaining
    /// stock is allowed, one more is insufficient.
    #[test]
    fn refusal_rules() {
        assert_eq!(refusal(0, 5, 0, 1), Some("sold_out"));
        assert_eq!(refusal(10, 2, 1, 1), None);
        assert_eq!(refusal(10, 2, 1, 2), Some("limit_exceeded"));
        assert_eq!(refusal(1, 5, 0, 2), Some("insufficient_stock"));
        assert_eq!(refusal(2, 5, 0, 2), None);
    }

    /// Proves LIKE wildcards in a prefix are escaped.
    #[test]
    fn like_prefix_is_literal() {
        assert_eq!(like_escape("a_b%c\\"), "a\\_b\\%c\\\\");
    }
}

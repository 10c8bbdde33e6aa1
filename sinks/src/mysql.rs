//! The MySQL/MariaDB read model. One transaction per batch; every statement
//! is multi-row and idempotent (see the migration for the tables).

use std::time::Duration;

use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::{MySql, QueryBuilder, Transaction};

use flashsale_schemas::{Outcome, OutcomeKind, Status};

use crate::fold::{fold, Folded};

/// Rows per multi-row statement: far below MySQL's 65,535 placeholders.
const ROWS_PER_STATEMENT_MAX: usize = 1_000;

/// Longest wait for another worker's migrations, in seconds.
const MIGRATE_LOCK_WAIT_S: i64 = 60;

/// The embedded migrations (`sinks/migrations`), run at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A connection pool to the read-model database.
#[derive(Clone)]
pub struct MysqlStore {
    /// Pool; small, since one batch at a time writes.
    pool: MySqlPool,
}

impl MysqlStore {
    /// Connects (lazily: the first use opens connections, so a database that
    /// is down at start is retried like any other outage).
    pub fn connect_lazy(url: &str) -> Result<Self, sqlx::Error> {
        let pool = MySqlPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(url)?;
        Ok(Self { pool })
    }

    /// The pool, for admin commands and tests.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Runs the embedded migrations (idempotent), one worker at a time.
    ///
    /// sqlx serialises migrators with `GET_LOCK(name, -1)`, which MariaDB
    /// answers with NULL at once (it takes no negative timeout), so workers
    /// starting together would apply the same migration concurrently and
    /// leave it marked "partially applied" for good. Hence a named lock of
    /// our own, with a positive timeout, held by the connection that migrates.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        let mut conn = self.pool.acquire().await?;
        let locked: Option<i64> =
            sqlx::query_scalar("SELECT GET_LOCK(CONCAT('flashsale-migrate-', DATABASE()), ?)")
                .bind(MIGRATE_LOCK_WAIT_S)
                .fetch_one(&mut *conn)
                .await?;
        if locked != Some(1) {
            return Err(sqlx::migrate::MigrateError::Execute(sqlx::Error::Protocol(
                format!("migration lock not acquired within {MIGRATE_LOCK_WAIT_S} s"),
            )));
        }
        let result = MIGRATOR.run_direct(&mut *conn).await;
        // Released with the connection anyway; explicit so a pooled
        // connection never keeps it.
        let released = sqlx::query("SELECT RELEASE_LOCK(CONCAT('flashsale-migrate-', DATABASE()))")
            .execute(&mut *conn)
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "releasing the migration lock failed");
        }
        result
    }

    /// Applies a batch of outcomes in one transaction.
    pub async fn apply(&self, outcomes: &[Outcome]) -> Result<(), sqlx::Error> {
        let folded = fold(outcomes);
        let mut tx = self.pool.begin().await?;
        for chunk in outcomes.chunks(ROWS_PER_STATEMENT_MAX) {
            insert_outcomes(&mut tx, chunk).await?;
            let accepted: Vec<&Outcome> = chunk
                .iter()
                .filter(|o| o.kind == OutcomeKind::Purchase && o.status == Status::Accepted)
                .collect();
            insert_orders(&mut tx, &accepted).await?;
        }
        upsert_projections(&mut tx, &folded).await?;
        tx.commit().await
    }
}

async fn insert_outcomes(
    tx: &mut Transaction<'_, MySql>,
    chunk: &[Outcome],
) -> Result<(), sqlx::Error> {
    if chunk.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<MySql>::new(
        "INSERT INTO outcomes (request_id, product_id, kind, status, reason, user_id, quantity, \
         order_id, unit_price, remaining, user_total, decided_at_ms, src_partition, src_offset) ",
    );
    q.push_values(chunk, |mut b, o| {
        let view = flashsale_schemas::view::OutcomeView::from(o);
        b.push_bind(view.request_id)
            .push_bind(view.product_id)
            .push_bind(view.kind)
            .push_bind(view.status)
            .push_bind(view.reason)
            .push_bind(view.user_id)
            .push_bind(o.quantity)
            .push_bind(view.order_id)
            .push_bind(view.unit_price)
            .push_bind(o.remaining)
            .push_bind(o.user_total)
            .push_bind(o.decided_at_ms)
            .push_bind(o.source_partition)
            .push_bind(o.source_offset);
    });
    // A repeat of the same request ID is the same decision: keep the first.
    q.push(" ON DUPLICATE KEY UPDATE request_id = request_id");
    q.build().execute(&mut **tx).await?;
    Ok(())
}

async fn insert_orders(
    tx: &mut Transaction<'_, MySql>,
    accepted: &[&Outcome],
) -> Result<(), sqlx::Error> {
    if accepted.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<MySql>::new(
        "INSERT INTO orders (order_id, request_id, product_id, user_id, quantity, unit_price, \
         decided_at_ms, src_partition, src_offset) ",
    );
    q.push_values(accepted, |mut b, o| {
        b.push_bind(o.order_id.as_ref().map(ToString::to_string))
            .push_bind(o.request_id.to_string())
            .push_bind(o.product_id.to_string())
            .push_bind(o.user_id.as_ref().map(ToString::to_string))
            .push_bind(o.quantity)
            .push_bind(o.unit_price.map(|p| p.to_string()))
            .push_bind(o.decided_at_ms)
            .push_bind(o.source_partition)
            .push_bind(o.source_offset);
    });
    // Keyed by request ID (migration 0002): a repeat is the same order.
    q.push(" ON DUPLICATE KEY UPDATE request_id = request_id");
    q.build().execute(&mut **tx).await?;
    Ok(())
}

/// The `ON DUPLICATE KEY UPDATE` clause of a newer-offset-wins upsert: each
/// of `columns` takes the new value only when the new row's `src_offset` is
/// greater, and `src_offset` only ever grows. MySQL applies assignments left
/// to right, so `src_offset` is compared before it is updated, last.
fn newer_offset_wins(columns: &[&str]) -> String {
    let mut clause = String::from(" ON DUPLICATE KEY UPDATE ");
    for c in columns {
        clause.push_str(&format!(
            "{c} = IF(VALUES(src_offset) > src_offset, VALUES({c}), {c}), "
        ));
    }
    clause.push_str("src_offset = GREATEST(src_offset, VALUES(src_offset))");
    clause
}

/// The newer-offset-wins upserts of the projections (stock, sales, totals).
async fn upsert_projections(
    tx: &mut Transaction<'_, MySql>,
    f: &Folded,
) -> Result<(), sqlx::Error> {
    let stock: Vec<_> = f.stock.iter().collect();
    for chunk in stock.chunks(ROWS_PER_STATEMENT_MAX) {
        let mut q = QueryBuilder::<MySql>::new(
            "INSERT INTO stock (product_id, stock, remaining, src_partition, src_offset) ",
        );
        q.push_values(chunk, |mut b, (product, s)| {
            b.push_bind(product.to_string())
                .push_bind(s.stock)
                .push_bind(s.remaining)
                .push_bind(s.partition)
                .push_bind(s.offset);
        });
        q.push(newer_offset_wins(&["stock", "remaining", "src_partition"]));
        q.build().execute(&mut **tx).await?;
    }
    upsert_sales(tx, f).await?;
    upsert_user_totals(tx, f).await
}

async fn upsert_sales(tx: &mut Transaction<'_, MySql>, f: &Folded) -> Result<(), sqlx::Error> {
    let sales: Vec<_> = f.sales.iter().collect();
    for chunk in sales.chunks(ROWS_PER_STATEMENT_MAX) {
        let mut q = QueryBuilder::<MySql>::new(
            "INSERT INTO sales (product_id, stock, per_user_limit, price, starts_at_ms, ends_at_ms, \
             src_partition, src_offset) ",
        );
        q.push_values(chunk, |mut b, (product, t)| {
            b.push_bind(product.to_string())
                .push_bind(t.terms.stock)
                .push_bind(t.terms.per_user_limit)
                .push_bind(t.terms.price.to_string())
                .push_bind(t.terms.starts_at_ms)
                .push_bind(t.terms.ends_at_ms)
                .push_bind(t.partition)
                .push_bind(t.offset);
        });
        q.push(newer_offset_wins(&[
            "stock",
            "per_user_limit",
            "price",
            "starts_at_ms",
            "ends_at_ms",
            "src_partition",
        ]));
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn upsert_user_totals(
    tx: &mut Transaction<'_, MySql>,
    f: &Folded,
) -> Result<(), sqlx::Error> {
    let totals: Vec<_> = f.user_totals.iter().collect();
    for chunk in totals.chunks(ROWS_PER_STATEMENT_MAX) {
        let mut q = QueryBuilder::<MySql>::new(
            "INSERT INTO user_totals (product_id, user_id, quantity, src_offset) ",
        );
        q.push_values(chunk, |mut b, ((product, user), (offset, total))| {
            b.push_bind(product.to_string())
                .push_bind(user.to_string())
                .push_bind(*total)
                .push_bind(*offset);
        });
        q.push(newer_offset_wins(&["quantity"]));
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::newer_offset_wins;

    /// Proves the clause's shape: every column is guarded by the offset
    /// comparison and `src_offset` is assigned last, after the comparisons
    /// that read its old value.
    #[test]
    fn newer_offset_wins_guards_every_column_and_moves_the_offset_last() {
        let clause = newer_offset_wins(&["stock", "remaining"]);
        assert_eq!(
            clause,
            " ON DUPLICATE KEY UPDATE \
             stock = IF(VALUES(src_offset) > src_offset, VALUES(stock), stock), \
             remaining = IF(VALUES(src_offset) > src_offset, VALUES(remaining), remaining), \
             src_offset = GREATEST(src_offset, VALUES(src_offset))"
        );
    }
}

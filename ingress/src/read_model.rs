//! Reads of the read model the sink workers write. The layout is the sinks'
//! contract; the ingress only reads it and never migrates anything.
//!
//! * Redis: `flashsale:stock:{product_id}` hash (`remaining`, `stock`,
//!   `offset`), `flashsale:outcome:{request_id}` = JSON [`OutcomeView`].
//! * MySQL/MariaDB: tables `sales`, `stock`, `orders`, `outcomes`.
//!
//! Redis is the fast path, MySQL the durable one: a Redis failure falls back
//! to MySQL; a MySQL failure (down, tables not created yet) is
//! `read_model_unavailable`. Every call is bounded in time.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use serde::Serialize;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::Row;
use tokio::sync::OnceCell;

use flashsale_schemas::names::{redis_outcome_key, redis_stock_key};
use flashsale_schemas::view::OutcomeView;
use flashsale_schemas::{ProductId, RequestId, UserId};

use crate::error::ApiError;

/// MySQL connections held at most: reads are short primary-key lookups.
const MYSQL_POOL_MAX: u32 = 8;
/// Longest wait for a pooled MySQL connection.
const MYSQL_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Longest MySQL query, acquisition included.
const MYSQL_QUERY_TIMEOUT: Duration = Duration::from_millis(2000);
/// Longest Redis connection attempt and command.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// The read model cannot answer (down, timed out, tables missing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("read model unavailable: {0}")]
pub struct ReadError(pub String);

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        ApiError::ReadModelUnavailable(e.to_string())
    }
}

impl From<sqlx::Error> for ReadError {
    fn from(e: sqlx::Error) -> Self {
        ReadError(e.to_string())
    }
}

/// A sale as the read model knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleView {
    /// Total units of the sale.
    pub stock: i64,
    /// Most units per user.
    pub per_user_limit: i32,
    /// Unit price, decimal string with two places.
    pub price: String,
    /// Opening instant, UTC ms.
    pub starts_at_ms: Option<i64>,
    /// Closing instant (exclusive), UTC ms.
    pub ends_at_ms: Option<i64>,
    /// Units left, from the newest projection (Redis or MySQL, by offset).
    pub remaining: i64,
}

/// One order of a user, as listed by `GET /api/v1/users/{id}/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderView {
    /// The order.
    pub order_id: String,
    /// The purchase that created it.
    pub request_id: String,
    /// What was bought.
    pub product_id: String,
    /// Units bought.
    pub quantity: i32,
    /// Unit price, decimal string.
    pub unit_price: String,
    /// When it was decided, UTC ms.
    pub decided_at_ms: i64,
}

/// The reads the HTTP API needs. Behind a trait so handlers are testable
/// without Redis or MySQL.
#[async_trait]
pub trait ReadModel: Send + Sync {
    /// A sale's terms and remaining stock; `None` if no sale is known.
    async fn sale(&self, product_id: &ProductId) -> Result<Option<SaleView>, ReadError>;
    /// A decided request's outcome; `None` if not (yet) known.
    async fn outcome(&self, request_id: &RequestId) -> Result<Option<OutcomeView>, ReadError>;
    /// A user's orders, newest first, at most `limit`.
    async fn orders(&self, user_id: &UserId, limit: u32) -> Result<Vec<OrderView>, ReadError>;
}

/// A Redis connection made on first use (so the ingress starts while Redis
/// is down) and then kept by a reconnecting [`ConnectionManager`].
struct LazyRedis {
    /// Connection parameters.
    client: redis::Client,
    /// The manager once connected; a failed attempt is retried next call.
    manager: OnceCell<ConnectionManager>,
}

impl LazyRedis {
    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_number_of_retries(1);
        let manager = self
            .manager
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await?;
        Ok(manager.clone())
    }
}

/// The production read model: Redis first, MySQL as the durable fallback.
pub struct StoreReadModel {
    /// Small MySQL pool, connected lazily.
    mysql: MySqlPool,
    /// Redis, connected lazily.
    redis: LazyRedis,
}

impl StoreReadModel {
    /// Prepares both stores without connecting (URLs are checked now).
    pub fn connect_lazy(mysql_url: &str, redis_url: &str) -> Result<Self, ReadError> {
        let mysql = MySqlPoolOptions::new()
            .max_connections(MYSQL_POOL_MAX)
            .acquire_timeout(MYSQL_ACQUIRE_TIMEOUT)
            .connect_lazy(mysql_url)?;
        let client = redis::Client::open(redis_url).map_err(|e| ReadError(e.to_string()))?;
        Ok(Self {
            mysql,
            redis: LazyRedis {
                client,
                manager: OnceCell::new(),
            },
        })
    }

    /// The Redis stock hash as `(offset, remaining)`; `None` when absent,
    /// incomplete or Redis is unreachable (MySQL answers then).
    async fn redis_remaining(&self, product_id: &ProductId) -> Option<(i64, i64)> {
        let key = redis_stock_key(product_id.as_str());
        let fields: redis::RedisResult<HashMap<String, String>> = async {
            let mut conn = self.redis.connection().await?;
            conn.hgetall(&key).await
        }
        .await;
        match fields {
            Ok(fields) => stock_fields(&fields),
            Err(e) => {
                tracing::debug!(error = %e, "redis stock read failed; using MySQL");
                None
            }
        }
    }

    async fn redis_outcome(&self, request_id: &RequestId) -> Option<OutcomeView> {
        let key = redis_outcome_key(request_id.as_str());
        let json: redis::RedisResult<Option<String>> = async {
            let mut conn = self.redis.connection().await?;
            conn.get(&key).await
        }
        .await;
        match json {
            Ok(Some(json)) => match serde_json::from_str(&json) {
                Ok(view) => Some(view),
                Err(e) => {
                    tracing::warn!(error = %e, %key, "unparsable outcome view in redis");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "redis outcome read failed; using MySQL");
                None
            }
        }
    }

    async fn fetch_optional(
        &self,
        query: sqlx::query::Query<'_, sqlx::MySql, sqlx::mysql::MySqlArguments>,
    ) -> Result<Option<MySqlRow>, ReadError> {
        tokio::time::timeout(MYSQL_QUERY_TIMEOUT, query.fetch_optional(&self.mysql))
            .await
            .map_err(|_| ReadError("mysql query timed out".into()))?
            .map_err(ReadError::from)
    }
}

/// `(offset, remaining)` from a Redis stock hash, if both parse.
fn stock_fields(fields: &HashMap<String, String>) -> Option<(i64, i64)> {
    let remaining = fields.get("remaining")?.parse().ok()?;
    let offset = fields.get("offset")?.parse().ok()?;
    Some((offset, remaining))
}

/// The remaining stock of the newer projection: both are written from the
/// same outcomes of the same partition, so the higher source offset is the
/// later state. Ties go to Redis (same state either way).
fn newest_remaining(redis: Option<(i64, i64)>, mysql: Option<(i64, i64)>) -> Option<i64> {
    match (redis, mysql) {
        (Some(r), Some(m)) => Some(if m.0 > r.0 { m.1 } else { r.1 }),
        (Some(r), None) => Some(r.1),
        (None, Some(m)) => Some(m.1),
        (None, None) => None,
    }
}

const SALE_SQL: &str = "SELECT s.stock, s.per_user_limit, CAST(s.price AS CHAR) AS price, \
     s.starts_at_ms, s.ends_at_ms, st.remaining AS st_remaining, st.src_offset AS st_offset \
     FROM sales s LEFT JOIN stock st ON st.product_id = s.product_id \
     WHERE s.product_id = ?";

const OUTCOME_SQL: &str = "SELECT request_id, product_id, kind, status, reason, user_id, \
     quantity, order_id, CAST(unit_price AS CHAR) AS unit_price, remaining, user_total, \
     decided_at_ms FROM outcomes WHERE request_id = ?";

const ORDERS_SQL: &str = "SELECT order_id, request_id, product_id, quantity, \
     CAST(unit_price AS CHAR) AS unit_price, decided_at_ms FROM orders \
     WHERE user_id = ? ORDER BY decided_at_ms DESC, order_id DESC LIMIT ?";

#[async_trait]
impl ReadModel for StoreReadModel {
    #[tracing::instrument(skip(self), fields(%product_id))]
    async fn sale(&self, product_id: &ProductId) -> Result<Option<SaleView>, ReadError> {
        let (redis, row) = tokio::join!(
            self.redis_remaining(product_id),
            self.fetch_optional(sqlx::query(SALE_SQL).bind(product_id.as_str())),
        );
        let Some(row) = row? else {
            return Ok(None);
        };
        let stock: i64 = row.try_get("stock")?;
        let mysql = match (
            row.try_get::<Option<i64>, _>("st_offset")?,
            row.try_get::<Option<i64>, _>("st_remaining")?,
        ) {
            (Some(offset), Some(remaining)) => Some((offset, remaining)),
            _ => None,
        };
        Ok(Some(SaleView {
            stock,
            per_user_limit: narrow(row.try_get::<i64, _>("per_user_limit")?)?,
            price: row.try_get("price")?,
            starts_at_ms: row.try_get("starts_at_ms")?,
            ends_at_ms: row.try_get("ends_at_ms")?,
            // No projected stock row yet: nothing has been sold since the
            // sale was configured.
            remaining: newest_remaining(redis, mysql).unwrap_or(stock),
        }))
    }

    #[tracing::instrument(skip(self), fields(%request_id))]
    async fn outcome(&self, request_id: &RequestId) -> Result<Option<OutcomeView>, ReadError> {
        if let Some(view) = self.redis_outcome(request_id).await {
            return Ok(Some(view));
        }
        let row = self
            .fetch_optional(sqlx::query(OUTCOME_SQL).bind(request_id.as_str()))
            .await?;
        row.as_ref().map(outcome_from_row).transpose()
    }

    #[tracing::instrument(skip(self), fields(%user_id))]
    async fn orders(&self, user_id: &UserId, limit: u32) -> Result<Vec<OrderView>, ReadError> {
        let query = sqlx::query(ORDERS_SQL).bind(user_id.as_str()).bind(limit);
        let rows = tokio::time::timeout(MYSQL_QUERY_TIMEOUT, query.fetch_all(&self.mysql))
            .await
            .map_err(|_| ReadError("mysql query timed out".into()))??;
        rows.iter()
            .map(|row| {
                Ok(OrderView {
                    order_id: row.try_get("order_id")?,
                    request_id: row.try_get("request_id")?,
                    product_id: row.try_get("product_id")?,
                    quantity: narrow(row.try_get::<i64, _>("quantity")?)?,
                    unit_price: row.try_get("unit_price")?,
                    decided_at_ms: row.try_get("decided_at_ms")?,
                })
            })
            .collect()
    }
}

fn outcome_from_row(row: &MySqlRow) -> Result<OutcomeView, ReadError> {
    Ok(OutcomeView {
        request_id: row.try_get("request_id")?,
        product_id: row.try_get("product_id")?,
        kind: row.try_get("kind")?,
        status: row.try_get("status")?,
        reason: row.try_get("reason")?,
        user_id: row.try_get("user_id")?,
        quantity: narrow(row.try_get::<i64, _>("quantity")?)?,
        order_id: row.try_get("order_id")?,
        unit_price: row.try_get("unit_price")?,
        remaining: row.try_get("remaining")?,
        user_total: narrow(row.try_get::<i64, _>("user_total")?)?,
        decided_at_ms: row.try_get("decided_at_ms")?,
    })
}

/// An INT column read as i64 (sqlx decodes any signed integer column that
/// way) narrowed back to i32.
fn narrow(value: i64) -> Result<i32, ReadError> {
    i32::try_from(value).map_err(|_| ReadError(format!("integer {value} out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the projection choice: the higher source offset wins, Redis
    /// wins ties, either alone is used, none gives None.
    #[test]
    fn newest_projection_wins() {
        assert_eq!(newest_remaining(Some((5, 1)), Some((7, 3))), Some(3));
        assert_eq!(newest_remaining(Some((9, 1)), Some((7, 3))), Some(1));
        assert_eq!(newest_remaining(Some((7, 1)), Some((7, 3))), Some(1));
        assert_eq!(newest_remaining(None, Some((7, 3))), Some(3));
        assert_eq!(newest_remaining(Some((7, 1)), None), Some(1));
        assert_eq!(newest_remaining(None, None), None);
    }

    /// Proves a Redis stock hash is only used when both fields parse, so a
    /// half-written or foreign hash falls back to MySQL.
    #[test]
    fn stock_hash_parsing() {
        let mut fields = HashMap::new();
        fields.insert("remaining".to_owned(), "4".to_owned());
        assert_eq!(stock_fields(&fields), None);
        fields.insert("offset".to_owned(), "12".to_owned());
        assert_eq!(stock_fields(&fields), Some((12, 4)));
        fields.insert("offset".to_owned(), "x".to_owned());
        assert_eq!(stock_fields(&fields), None);
    }

    /// Proves INT narrowing refuses out-of-range values instead of wrapping.
    #[test]
    fn narrowing() {
        assert_eq!(narrow(7), Ok(7));
        assert!(narrow(i64::from(i32::MAX) + 1).is_err());
    }
}

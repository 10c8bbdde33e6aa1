//! The Redis read model: one pipeline per batch.
//!
//! Keys (the ingress reads the same layout):
//! * `flashsale:stock:{product}`: hash `remaining`, `stock`, `offset`,
//!   written only by a newer input offset (a Lua guard, atomic in Redis);
//! * `flashsale:soldout:{product}`: `"1"` while remaining is 0;
//! * `flashsale:outcome:{request}`: the outcome's JSON view, with a TTL.

use redis::aio::ConnectionManager;

use flashsale_schemas::names::{redis_outcome_key, redis_soldout_key, redis_stock_key};
use flashsale_schemas::view::OutcomeView;
use flashsale_schemas::Outcome;

use crate::fold::fold;

/// Applies a stock value only if its input offset is newer than the stored
/// one, and keeps the sold-out flag in step. Returns 1 when applied.
const STOCK_GUARD_LUA: &str = r"
local current = redis.call('HGET', KEYS[1], 'offset')
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'offset', ARGV[1], 'remaining', ARGV[2], 'stock', ARGV[3])
if tonumber(ARGV[2]) == 0 then
  redis.call('SET', KEYS[2], '1')
else
  redis.call('DEL', KEYS[2])
end
return 1
";

/// Adds the guarded stock update for one product to a pipeline.
pub fn push_stock_guard(
    pipe: &mut redis::Pipeline,
    product: &str,
    offset: i64,
    remaining: i64,
    stock: i64,
) {
    pipe.cmd("EVAL")
        .arg(STOCK_GUARD_LUA)
        .arg(2)
        .arg(redis_stock_key(product))
        .arg(redis_soldout_key(product))
        .arg(offset)
        .arg(remaining)
        .arg(stock)
        .ignore();
}

/// A connection to the Redis read model.
#[derive(Clone)]
pub struct RedisStore {
    /// Auto-reconnecting multiplexed connection.
    conn: ConnectionManager,
    /// How long outcomes per request ID are kept, in seconds.
    outcome_ttl_s: u64,
}

impl RedisStore {
    /// Connects.
    pub async fn connect(url: &str, outcome_ttl_s: u64) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client).await?;
        Ok(Self {
            conn,
            outcome_ttl_s,
        })
    }

    /// Applies a batch in one pipelined round trip. Idempotent: the outcome
    /// JSON of a request ID never changes, and stock only moves forward.
    pub async fn apply(&self, outcomes: &[Outcome]) -> redis::RedisResult<()> {
        let folded = fold(outcomes);
        let mut pipe = redis::pipe();
        for (product, s) in &folded.stock {
            push_stock_guard(&mut pipe, product.as_str(), s.offset, s.remaining, s.stock);
        }
        for o in outcomes {
            let view = OutcomeView::from(o);
            let json = serde_json::to_string(&view).map_err(|e| {
                redis::RedisError::from((
                    redis::ErrorKind::TypeError,
                    "outcome json",
                    e.to_string(),
                ))
            })?;
            pipe.cmd("SET")
                .arg(redis_outcome_key(o.request_id.as_str()))
                .arg(json)
                .arg("EX")
                .arg(self.outcome_ttl_s)
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await
    }
}

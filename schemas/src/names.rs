//! The names other systems see: topics, read-model tables and Redis keys.
//!
//! Operators type these into kcat, SQL clients and `redis-cli`, and other
//! teams' producers and dashboards depend on them, so each is spelled once,
//! here. Topic names are defaults (every service takes `--*-topic` flags);
//! table and key names are fixed by the sinks' migrations and writers.

/// Default input topic: purchase requests and sale commands, keyed by product ID.
pub const REQUESTS_TOPIC: &str = "flashsale.requests";
/// Default output topic: one outcome per input record, keyed by product ID.
pub const OUTCOMES_TOPIC: &str = "flashsale.outcomes";
/// Default topic of refused input records, each with a reason header.
pub const DEAD_LETTER_TOPIC: &str = "flashsale.dead-letter";
/// Default compacted topic of per-partition processor state snapshots.
pub const SNAPSHOTS_TOPIC: &str = "flashsale.snapshots";

/// The MySQL read model's tables, as the sinks' migrations create them
/// (`sinks/migrations/`; a test checks the two agree).
pub const MYSQL_TABLES: [&str; 5] = ["orders", "outcomes", "sales", "stock", "user_totals"];

/// Prefix shared by every Redis key the pipeline writes.
pub const REDIS_KEY_PREFIX: &str = "flashsale:";
/// Prefix of a product's stock hash (`remaining`, `total`, `offset`).
pub const REDIS_STOCK_PREFIX: &str = "flashsale:stock:";
/// Prefix of a product's sold-out flag.
pub const REDIS_SOLDOUT_PREFIX: &str = "flashsale:soldout:";
/// Prefix of a request's outcome view (JSON, with a TTL).
pub const REDIS_OUTCOME_PREFIX: &str = "flashsale:outcome:";

/// Redis key of a product's stock hash.
pub fn redis_stock_key(product: &str) -> String {
    format!("{REDIS_STOCK_PREFIX}{product}")
}

/// Redis key of a product's sold-out flag.
pub fn redis_soldout_key(product: &str) -> String {
    format!("{REDIS_SOLDOUT_PREFIX}{product}")
}

/// Redis key of a request's outcome view.
pub fn redis_outcome_key(request: &str) -> String {
    format!("{REDIS_OUTCOME_PREFIX}{request}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves every per-entity key lives under the shared prefix, so one
    /// `SCAN flashsale:*` finds all the pipeline wrote and nothing else.
    #[test]
    fn keys_share_the_prefix() {
        for key in [
            redis_stock_key("p"),
            redis_soldout_key("p"),
            redis_outcome_key("r"),
        ] {
            assert!(key.starts_with(REDIS_KEY_PREFIX), "{key}");
        }
        assert_eq!(redis_stock_key("p-1"), "flashsale:stock:p-1");
    }
}

//! `flashsale-admin reconcile`: compares, per product, the outcomes log (the
//! truth the processors emitted), MySQL and Redis, and reports any drift.
//! `flashsale-admin rebuild-redis`: rebuilds the Redis read model from MySQL
//! after Redis lost its data.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use redis::aio::ConnectionManager;
use sqlx::mysql::MySqlPool;

use flashsale_runtime::kafka::assign_consumer_config;
use flashsale_runtime::topics::partition_count;
use flashsale_schemas::registry::Contract;
use flashsale_schemas::{Outcome, OutcomeKind, Status};

use flashsale_schemas::names::{redis_outcome_key, redis_stock_key};

/// Longest wait for the next outcome while reading the log to its end.
const READ_WAIT: Duration = Duration::from_secs(30);

/// What the outcomes log says about one product.
#[derive(Debug, Default, Clone)]
pub struct LogView {
    /// Units accepted, counting each request ID once.
    pub accepted_units: i64,
    /// Request IDs of accepted purchases.
    pub accepted: BTreeSet<String>,
    /// Newest (by input offset) remaining and stock.
    pub latest: Option<(i64, i64, i64)>,
}

/// Reads the whole outcomes topic, as it is now, into per-product views.
/// Also reports request IDs that were answered differently twice, which
/// would break determinism.
pub async fn read_log(
    brokers: &str,
    topic: &str,
    contract: &Contract,
    prefix: &str,
) -> anyhow::Result<(BTreeMap<String, LogView>, Vec<String>)> {
    let consumer: StreamConsumer =
        assign_consumer_config(brokers, "flashsale-reconcile").create()?;
    let ends = assign_all(&consumer, topic)?;
    let mut remaining: usize = ends.values().filter(|(low, high)| high > low).count();
    let mut first: HashMap<String, Outcome> = HashMap::new();
    let mut conflicts = Vec::new();
    let mut views: BTreeMap<String, LogView> = BTreeMap::new();
    while remaining > 0 {
        let message = match tokio::time::timeout(READ_WAIT, consumer.recv()).await {
            Err(_) => {
                anyhow::bail!("outcomes log stalled while {remaining} partitions were unread")
            }
            Ok(Err(KafkaError::PartitionEOF(_))) => continue,
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(m)) => m,
        };
        let (partition, offset) = (message.partition(), message.offset());
        if ends
            .get(&partition)
            .is_some_and(|(_, high)| offset + 1 == *high)
        {
            remaining -= 1;
        }
        if ends
            .get(&partition)
            .is_some_and(|(_, high)| offset >= *high)
        {
            continue;
        }
        let Some(payload) = message.payload() else {
            continue;
        };
        let outcome = contract.decode_outcome(payload).await?;
        if !outcome.product_id.as_str().starts_with(prefix) {
            continue;
        }
        fold_outcome(&mut views, &mut first, &mut conflicts, outcome);
    }
    Ok((views, conflicts))
}

fn assign_all(consumer: &StreamConsumer, topic: &str) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
    let count = partition_count(consumer, topic, READ_WAIT)?;
    anyhow::ensure!(count > 0, "topic {topic} not found");
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..count {
        let (low, high) = consumer.fetch_watermarks(topic, p, READ_WAIT)?;
        ends.insert(p, (low, high));
        tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
    }
    consumer.assign(&tpl)?;
    Ok(ends)
}

fn fold_outcome(
    views: &mut BTreeMap<String, LogView>,
    first: &mut HashMap<String, Outcome>,
    conflicts: &mut Vec<String>,
    outcome: Outcome,
) {
    let id = outcome.request_id.to_string();
    if let Some(seen) = first.get(&id) {
        if seen != &outcome {
            conflicts.push(id);
        }
        return;
    }
    let view = views.entry(outcome.product_id.to_string()).or_default();
    if flashsale_sinks::fold::carries_stock(&outcome)
        && view
            .latest
            .is_none_or(|(o, _, _)| outcome.source_offset > o)
    {
        view.latest = Some((outcome.source_offset, outcome.remaining, outcome.stock));
    }
    if outcome.kind == OutcomeKind::Purchase && outcome.status == Status::Accepted {
        view.accepted_units += i64::from(outcome.quantity);
        view.accepted.insert(id.clone());
    }
    first.insert(id, outcome);
}

/// What the read models say about one product.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoreView {
    /// Units in MySQL orders.
    pub mysql_units: i64,
    /// Request IDs of MySQL orders.
    pub mysql_orders: BTreeSet<String>,
    /// MySQL `stock.remaining`.
    pub mysql_remaining: Option<i64>,
    /// Redis stock hash `remaining`.
    pub redis_remaining: Option<i64>,
}

/// Reads MySQL and Redis for the products under `prefix`.
pub async fn read_stores(
    pool: &MySqlPool,
    redis: &mut ConnectionManager,
    prefix: &str,
) -> anyhow::Result<BTreeMap<String, StoreView>> {
    let mut views: BTreeMap<String, StoreView> = BTreeMap::new();
    let orders: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT product_id, request_id, quantity FROM orders WHERE LEFT(product_id, CHAR_LENGTH(?)) = ?",
    )
    .bind(prefix)
    .bind(prefix)
    .fetch_all(pool)
    .await?;
    for (product, request, quantity) in orders {
        let view = views.entry(product).or_default();
        view.mysql_units += i64::from(quantity);
        view.mysql_orders.insert(request);
    }
    let stock: Vec<(String, i64)> = sqlx::query_as(
        "SELECT product_id, remaining FROM stock WHERE LEFT(product_id, CHAR_LENGTH(?)) = ?",
    )
    .bind(prefix)
    .bind(prefix)
    .fetch_all(pool)
    .await?;
    for (product, remaining) in stock {
        views.entry(product).or_default().mysql_remaining = Some(remaining);
    }
    let products: Vec<String> = views.keys().cloned().collect();
    for product in products {
        let remaining: Option<i64> = redis::cmd("HGET")
            .arg(redis_stock_key(&product))
            .arg("remaining")
            .query_async(redis)
            .await?;
        if let Some(view) = views.get_mut(&product) {
            view.redis_remaining = remaining;
        }
    }
    Ok(views)
}

/// Compares the log with the stores; one line per disagreement.
pub fn drift(log: &BTreeMap<String, LogView>, stores: &BTreeMap<String, StoreView>) -> Vec<String> {
    let mut lines = Vec::new();
    let empty = StoreView::default();
    let products: BTreeSet<&String> = log.keys().chain(stores.keys()).collect();
    for product in products {
        let Some(l) = log.get(product) else {
            lines.push(format!(
                "{product}: in the read models but not in the outcomes log"
            ));
            continue;
        };
        let s = stores.get(product).unwrap_or(&empty);
        let remaining = l.latest.map(|(_, r, _)| r);
        if l.accepted_units != s.mysql_units {
            lines.push(format!(
                "{product}: log accepted {} units, MySQL orders hold {}",
                l.accepted_units, s.mysql_units
            ));
        }
        for missing in l.accepted.difference(&s.mysql_orders) {
            lines.push(format!(
                "{product}: accepted request {missing} has no MySQL order"
            ));
        }
        for extra in s.mysql_orders.difference(&l.accepted) {
            lines.push(format!(
                "{product}: MySQL order for request {extra}, which the log did not accept"
            ));
        }
        if remaining != s.mysql_remaining {
            lines.push(format!(
                "{product}: log remaining {remaining:?}, MySQL {:?}",
                s.mysql_remaining
            ));
        }
        if remaining != s.redis_remaining {
            lines.push(format!(
                "{product}: log remaining {remaining:?}, Redis {:?}",
                s.redis_remaining
            ));
        }
    }
    lines
}

/// Rebuilds the Redis read model from MySQL: stock hashes (guarded by offset,
/// so newer Redis data is never overwritten), sold-out flags, and the
/// outcome per request ID. Returns (products, outcomes) written.
pub async fn rebuild_redis(
    pool: &MySqlPool,
    redis: &mut ConnectionManager,
    outcome_ttl_s: u64,
) -> anyhow::Result<(usize, usize)> {
    let stock: Vec<(String, i64, i64, i64)> =
        sqlx::query_as("SELECT product_id, src_offset, remaining, stock FROM stock")
            .fetch_all(pool)
            .await?;
    for chunk in stock.chunks(500) {
        let mut pipe = redis::pipe();
        for (product, offset, remaining, total) in chunk {
            flashsale_sinks::redis_store::push_stock_guard(
                &mut pipe, product, *offset, *remaining, *total,
            );
        }
        pipe.query_async::<()>(redis).await?;
    }
    let mut written = 0;
    let mut after = String::new();
    loop {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT request_id, JSON_OBJECT('request_id', request_id, 'product_id', product_id, 'kind', kind, \
             'status', status, 'reason', reason, 'user_id', user_id, 'quantity', quantity, 'order_id', order_id, \
             'unit_price', CAST(unit_price AS CHAR), 'remaining', remaining, 'user_total', user_total, \
             'decided_at_ms', decided_at_ms) FROM outcomes WHERE request_id > ? ORDER BY request_id LIMIT 1000",
        )
        .bind(&after)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.0.clone();
        let mut pipe = redis::pipe();
        for (request, json) in &rows {
            let view: flashsale_schemas::view::OutcomeView = serde_json::from_str(json)?;
            let json = serde_json::to_string(&view)?;
            pipe.cmd("SET")
                .arg(redis_outcome_key(request))
                .arg(json)
                .arg("EX")
                .arg(outcome_ttl_s)
                .ignore();
        }
        pipe.query_async::<()>(redis).await?;
        written += rows.len();
    }
    Ok((stock.len(), written))
}

//! What the chaos run is judged by: the outcomes log read from the
//! beginning, the processors' consumer-group lag, the read models, and the
//! checks that compare them with what every client was told.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use redis::aio::ConnectionManager;
use sqlx::mysql::MySqlPool;

use flashsale_runtime::kafka::assign_consumer_config;
use flashsale_schemas::names::{redis_outcome_key, redis_stock_key, REDIS_KEY_PREFIX};
use flashsale_schemas::registry::Contract;
use flashsale_schemas::{Outcome, OutcomeKind, Status};

use crate::workload::{ClientOutcome, Decision, Final, Product, Purchase, SalePlan};

/// Broker round-trips give up after this long.
const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The low and high watermarks of every partition of `topic`.
fn watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Vec<(i64, i64)>> {
    tokio::task::block_in_place(|| {
        (0..partitions)
            .map(|p| Ok(consumer.fetch_watermarks(topic, p, BROKER_CALL_TIMEOUT)?))
            .collect()
    })
}

/// The outcomes topic read from the beginning, kept up to date on demand.
pub struct OutcomeLog {
    consumer: StreamConsumer,
    contract: Contract,
    topic: String,
    partitions: i32,
    /// Next offset to read, per partition.
    next: Vec<i64>,
    /// Every outcome record read so far, in read order.
    pub records: Vec<Outcome>,
    /// Records that did not decode as outcomes.
    pub undecodable: Vec<String>,
}

impl OutcomeLog {
    /// Opens a reader (no consumer group) on every partition at the start.
    pub fn open(
        brokers: &str,
        contract: Contract,
        topic: &str,
        partitions: i32,
    ) -> anyhow::Result<Self> {
        let consumer: StreamConsumer =
            assign_consumer_config(brokers, &flashsale_testkit::unique("chaos-log")).create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        Ok(Self {
            consumer,
            contract,
            topic: topic.to_owned(),
            partitions,
            next: vec![0; partitions as usize],
            records: Vec::new(),
            undecodable: Vec::new(),
        })
    }

    /// Reads until every partition is read up to the high watermark it had
    /// when this call started; `false` when `timeout` passed first.
    pub async fn catch_up(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let deadline = Instant::now() + timeout;
        let ends = watermarks(&self.consumer, &self.topic, self.partitions)?;
        loop {
            let behind = ends
                .iter()
                .zip(&self.next)
                .any(|((low, high), next)| (*next).max(*low) < *high);
            if !behind {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let message = match tokio::time::timeout(left, self.consumer.recv()).await {
                Err(_) => return Ok(false),
                Ok(Err(KafkaError::PartitionEOF(_))) => continue,
                Ok(Err(e)) => {
                    // A broker restart shows up as transient errors; keep reading.
                    eprintln!("chaos: outcomes reader: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Ok(Ok(m)) => m,
            };
            let (p, offset) = (message.partition(), message.offset());
            let Some(next) = self.next.get_mut(p as usize) else {
                continue;
            };
            if offset < *next {
                continue;
            }
            *next = offset + 1;
            let decoded = match message.payload() {
                Some(payload) => self
                    .contract
                    .decode_outcome(payload)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err("no value".to_owned()),
            };
            match decoded {
                Ok(o) => self.records.push(o),
                Err(e) => self
                    .undecodable
                    .push(format!("partition {p} offset {offset}: {e}")),
            }
        }
    }

    /// Outcome records per request ID, in log order within each partition.
    pub fn by_request(&self) -> HashMap<&str, Vec<&Outcome>> {
        let mut map: HashMap<&str, Vec<&Outcome>> = HashMap::new();
        for o in &self.records {
            map.entry(o.request_id.as_str()).or_default().push(o);
        }
        map
    }
}

/// Reads a consumer group's committed offsets, without joining it.
pub struct GroupLag {
    consumer: BaseConsumer,
    topic: String,
    partitions: i32,
}

impl GroupLag {
    /// A reader of `group`'s offsets on `topic`.
    pub fn new(brokers: &str, group: &str, topic: &str, partitions: i32) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("client.id", flashsale_testkit::unique("chaos-lag"))
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            partitions,
        })
    }

    /// Records of the topic not yet committed by the group, per partition.
    pub fn lag(&self) -> anyhow::Result<Vec<i64>> {
        let ends = watermarks(&self.consumer, &self.topic, self.partitions)?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.topic, p);
        }
        let committed = tokio::task::block_in_place(|| {
            self.consumer.committed_offsets(tpl, BROKER_CALL_TIMEOUT)
        })?;
        Ok((0..self.partitions)
            .map(|p| {
                let (low, high) = ends[p as usize];
                let at = match committed.find_partition(&self.topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => low,
                };
                (high - at.max(low)).max(0)
            })
            .collect())
    }
}

/// Records in `topic` (e.g. the dead-letter topic), summed over partitions.
pub fn record_count(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<i64> {
    let consumer: BaseConsumer =
        assign_consumer_config(brokers, &flashsale_testkit::unique("chaos-count")).create()?;
    Ok(watermarks(&consumer, topic, partitions)?
        .iter()
        .map(|(low, high)| high - low)
        .sum())
}

/// One row of MySQL `orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    /// Primary key.
    pub order_id: String,
    /// Unique: the purchase it records.
    pub request_id: String,
    /// The product.
    pub product_id: String,
    /// The buyer.
    pub user_id: String,
    /// Units.
    pub quantity: i64,
}

/// What the read models hold for the run's products.
#[derive(Debug, Clone, Default)]
pub struct Stores {
    /// Every order of the run's products.
    pub orders: Vec<OrderRow>,
    /// `stock.remaining` per product (absent: no row).
    pub mysql_remaining: HashMap<String, i64>,
    /// `remaining` of `flashsale:stock:{product}` (absent: no key).
    pub redis_remaining: HashMap<String, i64>,
    /// Purchase decisions in MySQL `outcomes`, by request ID.
    pub mysql_decisions: HashMap<String, Decision>,
    /// Purchase decisions in Redis `flashsale:outcome:{request}`, by request ID.
    pub redis_decisions: HashMap<String, Decision>,
}

/// Reads both read models for `products` and the purchases `requests`.
pub async fn read_stores(
    pool: &MySqlPool,
    redis: &mut ConnectionManager,
    products: &[String],
    requests: &[String],
) -> anyhow::Result<Stores> {
    let mut stores = Stores::default();
    for chunk in products.chunks(100) {
        stores.orders.extend(read_orders(pool, chunk).await?);
        stores
            .mysql_remaining
            .extend(read_mysql_remaining(pool, chunk).await?);
        stores
            .mysql_decisions
            .extend(read_mysql_decisions(pool, chunk).await?);
    }
    for chunk in requests.chunks(200) {
        stores
            .redis_decisions
            .extend(read_redis_decisions(redis, chunk).await?);
    }
    stores.redis_remaining = read_redis_remaining(redis, products).await?;
    Ok(stores)
}

/// `?,?,…`: one SQL placeholder per element of `items`.
fn placeholders<T>(items: &[T]) -> String {
    vec!["?"; items.len()].join(",")
}

/// MySQL `orders` of `products`.
async fn read_orders(pool: &MySqlPool, products: &[String]) -> anyhow::Result<Vec<OrderRow>> {
    let sql = format!(
        "SELECT order_id, request_id, product_id, user_id, CAST(quantity AS SIGNED) FROM orders WHERE product_id IN ({})",
        placeholders(products)
    );
    let mut query = sqlx::query_as::<_, (String, String, String, String, i64)>(&sql);
    for p in products {
        query = query.bind(p);
    }
    Ok(query
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(
            |(order_id, request_id, product_id, user_id, quantity)| OrderRow {
                order_id,
                request_id,
                product_id,
                user_id,
                quantity,
            },
        )
        .collect())
}

/// MySQL `stock.remaining` of `products` (absent: no row).
async fn read_mysql_remaining(
    pool: &MySqlPool,
    products: &[String],
) -> anyhow::Result<Vec<(String, i64)>> {
    let sql = format!(
        "SELECT product_id, remaining FROM stock WHERE product_id IN ({})",
        placeholders(products)
    );
    let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
    for p in products {
        query = query.bind(p);
    }
    Ok(query.fetch_all(pool).await?)
}

/// Purchase decisions in MySQL `outcomes` for `products`, by request ID.
async fn read_mysql_decisions(
    pool: &MySqlPool,
    products: &[String],
) -> anyhow::Result<Vec<(String, Decision)>> {
    let sql = format!(
        "SELECT request_id, status, reason, order_id, CAST(quantity AS SIGNED), remaining, \
         CAST(user_total AS SIGNED) FROM outcomes WHERE kind = 'purchase' AND product_id IN ({})",
        placeholders(products)
    );
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        i64,
        i64,
        i64,
    );
    let mut query = sqlx::query_as::<_, Row>(&sql);
    for p in products {
        query = query.bind(p);
    }
    Ok(query
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(
            |(id, status, reason, order_id, quantity, remaining, user_total)| {
                let decision = Decision {
                    status,
                    reason,
                    order_id,
                    quantity,
                    remaining,
                    user_total,
                };
                (id, decision)
            },
        )
        .collect())
}

/// Purchase decisions in Redis `flashsale:outcome:{request}` for `requests`
/// (one MGET), by request ID; keys missing or not a decision are left out.
async fn read_redis_decisions(
    redis: &mut ConnectionManager,
    requests: &[String],
) -> anyhow::Result<Vec<(String, Decision)>> {
    let keys: Vec<String> = requests
        .iter()
        .map(|r| redis_outcome_key(r.as_str()))
        .collect();
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(redis).await?;
    Ok(requests
        .iter()
        .zip(values)
        .filter_map(|(id, value)| {
            let decision = value
                .and_then(|v| serde_json::from_str(&v).ok())
                .and_then(|v| Decision::from_body(&v));
            decision.map(|d| (id.clone(), d))
        })
        .collect())
}

/// `remaining` of `flashsale:stock:{product}` for `products` (absent: no key).
async fn read_redis_remaining(
    redis: &mut ConnectionManager,
    products: &[String],
) -> anyhow::Result<HashMap<String, i64>> {
    let mut out = HashMap::new();
    for p in products {
        let remaining: Option<i64> = redis::cmd("HGET")
            .arg(redis_stock_key(p.as_str()))
            .arg("remaining")
            .query_async(redis)
            .await?;
        if let Some(r) = remaining {
            out.insert(p.clone(), r);
        }
    }
    Ok(out)
}

/// Deletes the Redis keys of the run whose IDs start with `prefix` (stock,
/// sold-out flags, outcomes); returns how many. Bounded: at most
/// `rounds_max` SCAN rounds.
pub async fn delete_redis_keys(
    redis: &mut ConnectionManager,
    prefix: &str,
    rounds_max: usize,
) -> anyhow::Result<u64> {
    let pattern = format!("{REDIS_KEY_PREFIX}*:{prefix}*");
    let mut cursor: u64 = 0;
    let mut deleted = 0u64;
    for _ in 0..rounds_max {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("DEL").arg(&keys).query_async(redis).await?;
            deleted += n;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(deleted)
}

/// What the outcomes log says about one product.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogProduct {
    /// Units accepted, each request ID counted once.
    pub accepted_units: i64,
    /// Accepted purchases, each request ID counted once.
    pub accepted: i64,
    /// `remaining` of the outcome with the highest source offset.
    pub latest_remaining: Option<i64>,
}

/// Folds the log per product: the first outcome of each request ID counts
/// (later ones are replays, which [`check`] proves identical), and the
/// newest remaining is the one of the highest input offset.
pub fn fold_log(log: &OutcomeLog) -> HashMap<String, LogProduct> {
    let mut seen = HashSet::new();
    let mut latest: HashMap<String, (i64, i64)> = HashMap::new();
    let mut out: HashMap<String, LogProduct> = HashMap::new();
    for o in &log.records {
        let product = o.product_id.as_str().to_owned();
        let entry = latest.entry(product.clone()).or_insert((i64::MIN, 0));
        if o.source_offset > entry.0 {
            *entry = (o.source_offset, o.remaining);
        }
        let view = out.entry(product).or_default();
        if seen.insert(o.request_id.as_str().to_owned())
            && o.kind == OutcomeKind::Purchase
            && o.status == Status::Accepted
        {
            view.accepted += 1;
            view.accepted_units += i64::from(o.quantity);
        }
    }
    for (product, (_, remaining)) in latest {
        if let Some(v) = out.get_mut(&product) {
            v.latest_remaining = Some(remaining);
        }
    }
    out
}

/// Whether the read models already show what the log says, for every
/// product (the sinks have caught up).
pub fn stores_settled(plan: &SalePlan, log: &HashMap<String, LogProduct>, stores: &Stores) -> bool {
    let mut orders: HashMap<&str, i64> = HashMap::new();
    for o in &stores.orders {
        *orders.entry(o.product_id.as_str()).or_default() += 1;
    }
    let decided = plan.purchases.iter().all(|p| {
        stores.mysql_decisions.contains_key(&p.request_id)
            && stores.redis_decisions.contains_key(&p.request_id)
    });
    decided
        && plan.products.iter().all(|p| {
            let Some(view) = log.get(&p.id) else {
                return false;
            };
            view.latest_remaining.is_some()
                && stores.mysql_remaining.get(&p.id).copied() == view.latest_remaining
                && stores.redis_remaining.get(&p.id).copied() == view.latest_remaining
                && orders.get(p.id.as_str()).copied().unwrap_or(0) == view.accepted
        })
}

/// The counted results of a run, as [`check`] finds them.
#[derive(Debug, Clone, Default)]
pub struct CheckTally {
    /// Purchases sent (distinct request IDs).
    pub requests: u64,
    /// Purchases the clients saw accepted.
    pub accepted: u64,
    /// Purchases the clients saw rejected, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Purchases without a decision (gave up, 404, other 4xx).
    pub undecided: u64,
    /// Units accepted beyond a product's stock (clients' or log's view).
    pub oversold: i64,
    /// Client-accepted purchases without their order in MySQL.
    pub lost: u64,
    /// MySQL orders beyond one per client-accepted purchase (including
    /// orders of purchases the client was told were rejected).
    pub duplicated: u64,
    /// Request IDs the log answered differently more than once.
    pub conflicting: u64,
    /// Products where MySQL or Redis disagree with the log.
    pub drifted: u64,
    /// Requests whose decision in MySQL or Redis is not the one answered.
    pub decisions_drifted: u64,
    /// Outcome records in the log (replays included).
    pub log_records: u64,
}

impl CheckTally {
    /// Purchases the clients saw rejected.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Adds every count of `other` to this one.
    fn add(&mut self, other: &CheckTally) {
        self.requests += other.requests;
        self.accepted += other.accepted;
        for (reason, n) in &other.rejected {
            *self.rejected.entry(reason.clone()).or_default() += n;
        }
        self.undecided += other.undecided;
        self.oversold += other.oversold;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.conflicting += other.conflicting;
        self.drifted += other.drifted;
        self.decisions_drifted += other.decisions_drifted;
        self.log_records += other.log_records;
    }
}

/// One outcome record of the log, for a violation's text.
fn describe_log(o: &Outcome) -> String {
    format!(
        "{:?}/{:?} reason={} order={} qty={} remaining={} user_total={} src={}@{}",
        o.kind,
        o.status,
        o.reason.map_or("-", |r| r.code()),
        o.order_id
            .as_ref()
            .map_or("-".to_owned(), |id| id.to_string()),
        o.quantity,
        o.remaining,
        o.user_total,
        o.source_partition,
        o.source_offset
    )
}

/// Whether the decision a client was told is the outcome record `o`.
fn matches(d: &Decision, o: &Outcome) -> bool {
    let status = o.status.code();
    o.kind == OutcomeKind::Purchase
        && d.status == status
        && d.reason.as_deref() == o.reason.map(|r| r.code())
        && d.order_id.as_deref() == o.order_id.as_ref().map(|id| id.as_str())
        && d.quantity == i64::from(o.quantity)
        && d.remaining == o.remaining
        && d.user_total == i64::from(o.user_total)
}

/// Compares the clients' answers, the outcomes log and the read models.
/// Returns the tally and every violation found (empty when the run is
/// correct).
pub fn check(
    plan: &SalePlan,
    clients: &[ClientOutcome],
    log: &OutcomeLog,
    stores: &Stores,
) -> (CheckTally, Vec<String>) {
    let evidence = Evidence {
        plan,
        clients,
        log,
        stores,
        by_request: log.by_request(),
        folded: fold_log(log),
    };
    let mut findings = Findings {
        tally: CheckTally {
            requests: plan.purchases.len() as u64,
            log_records: log.records.len() as u64,
            ..CheckTally::default()
        },
        violations: Vec::new(),
    };
    findings.merge(check_log_decisions(&evidence));
    let mut answers = check_client_answers(&evidence);
    findings.merge(std::mem::take(&mut answers.findings));
    findings.merge(check_stock(&evidence, &answers));
    findings.merge(check_orders(&evidence, &answers));
    findings.merge(check_stock_figures(&evidence));
    findings.merge(check_request_decisions(&evidence));
    (findings.tally, findings.violations)
}

/// What the checks compare: the run's plan, what its clients were told, the
/// outcomes log (also per request ID and folded per product) and the read
/// models.
struct Evidence<'a> {
    plan: &'a SalePlan,
    clients: &'a [ClientOutcome],
    log: &'a OutcomeLog,
    stores: &'a Stores,
    /// [`OutcomeLog::by_request`].
    by_request: HashMap<&'a str, Vec<&'a Outcome>>,
    /// [`fold_log`].
    folded: HashMap<String, LogProduct>,
}

/// What one part of [`check`] found: its share of the tally and its
/// violations, in the order found.
#[derive(Debug, Clone, Default)]
struct Findings {
    tally: CheckTally,
    violations: Vec<String>,
}

impl Findings {
    /// Adds `other`'s counts to this tally and appends its violations.
    fn merge(&mut self, other: Findings) {
        self.tally.add(&other.tally);
        self.violations.extend(other.violations);
    }
}

/// Part 1. The log: one decision per request ID however often it was
/// re-decided (retries, replays after crashes, zombies); no request ID
/// this run did not send; every sale configured; every record decodable.
fn check_log_decisions(ev: &Evidence<'_>) -> Findings {
    let mut f = Findings::default();
    for (id, records) in &ev.by_request {
        if records.iter().any(|r| *r != records[0]) {
            f.tally.conflicting += 1;
            let all: Vec<String> = records.iter().map(|r| describe_log(r)).collect();
            f.violations.push(format!(
                "request {id} was decided differently: {}",
                all.join(" | ")
            ));
        }
    }
    let known: HashSet<&str> = ev
        .plan
        .purchases
        .iter()
        .map(|p| p.request_id.as_str())
        .chain(ev.plan.products.iter().map(|p| p.command_id.as_str()))
        .collect();
    for id in ev.by_request.keys().filter(|id| !known.contains(*id)) {
        f.violations.push(format!(
            "the log answers request {id}, which no client of this run sent"
        ));
    }
    for p in &ev.plan.products {
        match ev.by_request.get(p.command_id.as_str()) {
            Some(r)
                if r[0].kind == OutcomeKind::SaleConfigured && r[0].status == Status::Accepted => {}
            other => f
                .violations
                .push(format!("sale {} was not configured: {other:?}", p.id)),
        }
    }
    for u in &ev.log.undecodable {
        f.violations
            .push(format!("undecodable outcome record: {u}"));
    }
    f
}

/// What the clients were told, gathered by part 2 for parts 3 and 4.
#[derive(Debug, Clone, Default)]
struct ClientAnswers<'a> {
    /// Part 2's own findings.
    findings: Findings,
    /// Units the clients saw accepted, per product index.
    client_units: HashMap<usize, i64>,
    /// Units the clients saw accepted, per (product index, user).
    user_units: HashMap<(usize, &'a str), i64>,
    /// Request IDs the clients saw accepted, with the decision.
    accepted_ids: HashMap<&'a str, &'a Decision>,
    /// Request IDs the clients saw rejected.
    rejected_ids: HashSet<&'a str>,
}

/// Part 2. Every client got a decision, and it is the log's decision.
fn check_client_answers<'a>(ev: &Evidence<'a>) -> ClientAnswers<'a> {
    let mut a = ClientAnswers::default();
    for c in ev.clients {
        let purchase = &ev.plan.purchases[c.purchase];
        let id = purchase.request_id.as_str();
        let f = &mut a.findings;
        match &c.result {
            Final::Decided(d) => {
                if let Some(violation) = differs_from_log(ev, id, d) {
                    f.violations.push(violation);
                }
                a.record_decision(purchase, d);
            }
            Final::UnknownProduct(body) => {
                f.tally.undecided += 1;
                f.violations.push(format!(
                    "request {id}: 404 unknown_product for a configured sale: {body}"
                ));
            }
            Final::Refused(why) => {
                f.tally.undecided += 1;
                f.violations.push(format!("request {id}: refused: {why}"));
            }
            Final::GaveUp(why) => {
                f.tally.undecided += 1;
                f.violations
                    .push(format!("request {id}: no decision: {why}"));
            }
        }
    }
    if ev.clients.len() != ev.plan.purchases.len() {
        a.findings.violations.push(format!(
            "{} purchases planned, {} finished",
            ev.plan.purchases.len(),
            ev.clients.len()
        ));
    }
    a
}

/// The violation when the decision `d` a client was told for request `id`
/// is not the first one the log holds for it.
fn differs_from_log(ev: &Evidence<'_>, id: &str, d: &Decision) -> Option<String> {
    match ev.by_request.get(id) {
        Some(records) if matches(d, records[0]) => None,
        Some(records) => Some(format!(
            "request {id}: the client was told {d:?}, the log says {}",
            describe_log(records[0])
        )),
        None => Some(format!(
            "request {id}: the client was told {d:?}, the log has no outcome"
        )),
    }
}

impl<'a> ClientAnswers<'a> {
    /// Counts the decision `d` the client of `purchase` was told.
    fn record_decision(&mut self, purchase: &'a Purchase, d: &'a Decision) {
        let id = purchase.request_id.as_str();
        if d.accepted() {
            self.findings.tally.accepted += 1;
            self.accepted_ids.insert(id, d);
            *self.client_units.entry(purchase.product).or_default() += d.quantity;
            *self
                .user_units
                .entry((purchase.product, purchase.user_id.as_str()))
                .or_default() += d.quantity;
        } else {
            self.rejected_ids.insert(id);
            *self
                .findings
                .tally
                .rejected
                .entry(d.reason.clone().unwrap_or_else(|| "none".to_owned()))
                .or_default() += 1;
        }
    }
}

/// Part 3. Stock: never more than the stock, all of it where demand
/// exceeded it; no user above the per-user limit.
fn check_stock(ev: &Evidence<'_>, answers: &ClientAnswers<'_>) -> Findings {
    let (plan, mut f) = (ev.plan, Findings::default());
    for (i, p) in plan.products.iter().enumerate() {
        let by_client = answers.client_units.get(&i).copied().unwrap_or(0);
        let by_log = ev.folded.get(&p.id).map_or(0, |v| v.accepted_units);
        let sold = by_client.max(by_log);
        if sold > p.stock {
            f.tally.oversold += sold - p.stock;
            f.violations.push(format!("product {}: OVERSOLD, {sold} units accepted of {} (clients {by_client}, log {by_log})", p.id, p.stock));
        }
        if plan.unique_singles(i) > p.stock && sold < p.stock {
            f.violations.push(format!(
                "product {}: only {sold} of {} units sold although {} single-unit buyers asked (demand {})",
                p.id,
                p.stock,
                plan.unique_singles(i),
                plan.demand(i)
            ));
        }
    }
    for ((product, user), units) in &answers.user_units {
        let limit = i64::from(plan.products[*product].per_user_limit);
        if *units > limit {
            f.violations.push(format!(
                "user {user} got {units} units of {} (limit {limit})",
                plan.products[*product].id
            ));
        }
    }
    f
}

/// Part 4. MySQL orders: each client-accepted purchase exactly once,
/// nothing else.
fn check_orders(ev: &Evidence<'_>, answers: &ClientAnswers<'_>) -> Findings {
    let (plan, stores, mut f) = (ev.plan, ev.stores, Findings::default());
    let mut rows: HashMap<&str, Vec<&OrderRow>> = HashMap::new();
    for row in &stores.orders {
        rows.entry(row.request_id.as_str()).or_default().push(row);
    }
    let mut matched = 0u64;
    for (id, d) in &answers.accepted_ids {
        match rows.get(id).map(Vec::as_slice) {
            None | Some([]) => {
                f.tally.lost += 1;
                f.violations.push(format!(
                    "LOST: request {id} was accepted ({:?}) but has no order in MySQL",
                    d.order_id
                ));
            }
            Some([row]) => {
                matched += 1;
                if !order_matches(plan, id, d, row) {
                    f.violations.push(format!(
                        "request {id}: MySQL order {row:?} differs from the answer {d:?}"
                    ));
                }
            }
            Some(many) => {
                matched += 1;
                f.violations.push(format!(
                    "DUPLICATED: request {id} has {} orders in MySQL: {many:?}",
                    many.len()
                ));
            }
        }
    }
    f.tally.duplicated = (stores.orders.len() as u64).saturating_sub(matched);
    for row in &stores.orders {
        if answers.rejected_ids.contains(row.request_id.as_str()) {
            f.violations.push(format!(
                "PHANTOM: MySQL has order {row:?} for a purchase its client was told was rejected"
            ));
        } else if !answers.accepted_ids.contains_key(row.request_id.as_str()) {
            f.violations.push(format!(
                "PHANTOM: MySQL has order {row:?} that no client was told about"
            ));
        }
    }
    f
}

/// Whether the MySQL order `row` of request `id` is the accepted answer `d`:
/// same order ID and quantity, and the planned buyer and product.
fn order_matches(plan: &SalePlan, id: &str, d: &Decision, row: &OrderRow) -> bool {
    let purchase = plan.purchases.iter().find(|p| p.request_id == id);
    Some(row.order_id.as_str()) == d.order_id.as_deref()
        && row.quantity == d.quantity
        && purchase.is_some_and(|p| {
            p.user_id == row.user_id && plan.products[p.product].id == row.product_id
        })
}

/// Part 5. Stock figures: log, MySQL and Redis agree, and add up.
fn check_stock_figures(ev: &Evidence<'_>) -> Findings {
    let mut f = Findings::default();
    for p in &ev.plan.products {
        let drift = stock_drift(ev, p);
        if !drift.is_empty() {
            f.tally.drifted += 1;
            f.violations
                .push(format!("DRIFT on product {}: {}", p.id, drift.join("; ")));
        }
    }
    f
}

/// How the stock figures of product `p` disagree (empty: they agree).
fn stock_drift(ev: &Evidence<'_>, p: &Product) -> Vec<String> {
    let stores = ev.stores;
    let view = ev.folded.get(&p.id).cloned().unwrap_or_default();
    let expected = view.latest_remaining;
    let mysql = stores.mysql_remaining.get(&p.id).copied();
    let redis = stores.redis_remaining.get(&p.id).copied();
    let mut drift = Vec::new();
    if expected != Some(p.stock - view.accepted_units) {
        drift.push(format!(
            "log remaining {expected:?} but stock - accepted = {}",
            p.stock - view.accepted_units
        ));
    }
    if mysql != expected {
        drift.push(format!(
            "MySQL stock.remaining {mysql:?} vs log {expected:?}"
        ));
    }
    if redis != expected {
        drift.push(format!("Redis remaining {redis:?} vs log {expected:?}"));
    }
    let orders = stores
        .orders
        .iter()
        .filter(|o| o.product_id == p.id)
        .count() as i64;
    if orders != view.accepted {
        drift.push(format!(
            "MySQL has {orders} orders, the log {} accepted purchases",
            view.accepted
        ));
    }
    drift
}

/// Part 6. Each decision as MySQL `outcomes` and Redis keep it for the
/// request: the one the client was answered.
fn check_request_decisions(ev: &Evidence<'_>) -> Findings {
    let mut f = Findings::default();
    for c in ev.clients {
        let Final::Decided(d) = &c.result else {
            continue;
        };
        let id = ev.plan.purchases[c.purchase].request_id.as_str();
        let mysql = ev.stores.mysql_decisions.get(id);
        let redis = ev.stores.redis_decisions.get(id);
        if mysql != Some(d) || redis != Some(d) {
            f.tally.decisions_drifted += 1;
            f.violations.push(format!(
                "DRIFT on request {id}: answered {d:?}, MySQL outcomes {mysql:?}, Redis {redis:?}"
            ));
        }
    }
    f
}

/// Renders the report table: a column of names and a column of numbers.
pub fn table(rows: &[(String, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "+-{}-+------------+", "-".repeat(width));
    for (k, v) in rows {
        let _ = writeln!(out, "| {k:<width$} | {v:>10} |");
    }
    let _ = writeln!(out, "+-{}-+------------+", "-".repeat(width));
    out
}

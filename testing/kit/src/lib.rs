//! # flashsale-testkit: how tests and tools reach a running stack
//!
//! Everything here talks to a real running stack (`dev/up`): the HTTP
//! ingress, the Kafka broker, the schema registry, MariaDB and Redis.
//! Nothing is mocked. The other test-tooling crates build on it:
//!
//! | crate | holds |
//! |---|---|
//! | `flashsale-testkit` (this one) | [`Env`] (endpoints from `FLASHSALE_*` variables, as printed by `dev/env`), [`Api`] (a typed HTTP client), [`read_model`] helpers, [`kafka`] topic helpers, [`eventually`] |
//! | `flashsale-e2e` | the end-to-end tests (`tests/`, `python/`) |
//! | `flashsale-chaos` | the chaos harness and its test |
//! | `flashsale-load` | the load generator, the old design's baselines, the benchmarks and the demo |
//!
//! May depend on: the contract, the runtime's client settings, and client
//! libraries. Never on a service crate: tests see the services from outside.

use std::time::{Duration, Instant};

use anyhow::Context;
use flashsale_schemas::names;
use flashsale_schemas::partition::partition_for;
use redis::aio::ConnectionManager;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};

/// Endpoints and topic names of the stack under test.
#[derive(Debug, Clone)]
pub struct Env {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Schema registry base URL.
    pub registry_url: String,
    /// Read-model database.
    pub mysql_url: String,
    /// Read-model Redis.
    pub redis_url: String,
    /// HTTP ingress base URL.
    pub ingress_url: String,
    /// Input topic.
    pub requests_topic: String,
    /// Output topic.
    pub outcomes_topic: String,
    /// Refused records.
    pub dead_letter_topic: String,
    /// Processor state snapshots.
    pub snapshots_topic: String,
}

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl Env {
    /// Reads `FLASHSALE_*` variables, defaulting to the local stack's ports.
    pub fn from_env() -> Self {
        Self {
            brokers: var("FLASHSALE_BROKERS", "127.0.0.1:19092"),
            registry_url: var(
                "FLASHSALE_SCHEMA_REGISTRY_URL",
                "http://127.0.0.1:18081/apis/ccompat/v7",
            ),
            mysql_url: var(
                "FLASHSALE_MYSQL_URL",
                "mysql://flashsale:flashsale@127.0.0.1:13306/flashsale",
            ),
            redis_url: var("FLASHSALE_REDIS_URL", "redis://127.0.0.1:16379/"),
            ingress_url: var("FLASHSALE_INGRESS_URL", "http://127.0.0.1:18080"),
            requests_topic: var("FLASHSALE_REQUESTS_TOPIC", names::REQUESTS_TOPIC),
            outcomes_topic: var("FLASHSALE_OUTCOMES_TOPIC", names::OUTCOMES_TOPIC),
            dead_letter_topic: var("FLASHSALE_DEAD_LETTER_TOPIC", names::DEAD_LETTER_TOPIC),
            snapshots_topic: var("FLASHSALE_SNAPSHOTS_TOPIC", names::SNAPSHOTS_TOPIC),
        }
    }

    /// A pool on the read-model database.
    pub async fn mysql(&self) -> anyhow::Result<MySqlPool> {
        MySqlPoolOptions::new()
            .max_connections(4)
            .connect(&self.mysql_url)
            .await
            .context("connecting to MySQL")
    }

    /// A connection to the read-model Redis.
    pub async fn redis(&self) -> anyhow::Result<ConnectionManager> {
        let client = redis::Client::open(self.redis_url.as_str())?;
        Ok(ConnectionManager::new(client).await?)
    }
}

/// A unique identifier for one test's products, users and requests, so
/// tests can share the stack and run in parallel.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// A unique product ID whose key hashes to `partition` of `count`.
pub fn product_on_partition(prefix: &str, partition: i32, count: i32) -> String {
    loop {
        let candidate = unique(prefix);
        if partition_for(candidate.as_bytes(), count) == partition {
            return candidate;
        }
    }
}

/// A typed client of the HTTP ingress.
#[derive(Clone)]
pub struct Api {
    /// Shared connection pool.
    pub client: reqwest::Client,
    /// Base URL.
    pub base: String,
}

/// An HTTP answer: status and JSON body (Null when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Parsed body.
    pub body: Value,
}

impl Answer {
    /// The `error.code` of an error body, if any.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

impl Api {
    /// A client of the ingress at `base`.
    pub fn new(base: &str) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build()
            .unwrap_or_default();
        Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    async fn answer(response: reqwest::Response) -> anyhow::Result<Answer> {
        let status = response.status();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// Sends raw bytes to a path, for bad-input tests.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        Self::answer(request.send().await?).await
    }

    /// POSTs JSON.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await?;
        Self::answer(response).await
    }

    /// GETs JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        Self::answer(
            self.client
                .get(format!("{}{path}", self.base))
                .send()
                .await?,
        )
        .await
    }

    /// Configures a sale and checks it was accepted.
    pub async fn configure_sale(
        &self,
        product: &str,
        stock: i64,
        per_user_limit: i32,
    ) -> anyhow::Result<Answer> {
        let body = json!({"product_id": product, "stock": stock, "per_user_limit": per_user_limit, "price": "9.99"});
        let mut answer = self.post("/api/v1/sales", &body).await?;
        // 202: not decided within the ingress's wait, e.g. while a processor
        // that just started restores its partitions. Configuring the same
        // terms again changes nothing, so asking again is safe.
        for _ in 0..CONFIGURE_PENDING_RETRIES_MAX {
            if answer.status != StatusCode::ACCEPTED {
                break;
            }
            answer = self.post("/api/v1/sales", &body).await?;
        }
        anyhow::ensure!(
            answer.status == StatusCode::CREATED,
            "configure {product}: {answer:?}"
        );
        Ok(answer)
    }

    /// Buys: `request_id` None lets the ingress generate one.
    pub async fn purchase(
        &self,
        product: &str,
        user: &str,
        quantity: i32,
        request_id: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let mut body = json!({"user_id": user, "quantity": quantity});
        if let Some(r) = request_id {
            body["request_id"] = json!(r);
        }
        self.post(&format!("/api/v1/sales/{product}/purchases"), &body)
            .await
    }
}

/// Polls `check` every 100 ms until it returns `Ok(true)` or `timeout`
/// passes; returns whether it succeeded. Read models are projections that
/// lag the decisions by design, so tests wait for them, boundedly.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(true) = check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Times a sale command answered 202 "pending" is sent again (each waits
/// the ingress's own 2 s).
const CONFIGURE_PENDING_RETRIES_MAX: usize = 15;

/// What the read models say about one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadModel {
    /// Orders in MySQL.
    pub mysql_orders: i64,
    /// Units in those orders.
    pub mysql_units: i64,
    /// `stock.remaining` in MySQL (None: no row).
    pub mysql_remaining: Option<i64>,
    /// `remaining` of the Redis stock hash (None: no key).
    pub redis_remaining: Option<i64>,
}

/// Reads both read models for a product.
pub async fn read_model(
    pool: &MySqlPool,
    redis: &mut ConnectionManager,
    product: &str,
) -> anyhow::Result<ReadModel> {
    let (orders, units): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(quantity), 0) AS SIGNED) FROM orders WHERE product_id = ?",
    )
    .bind(product)
    .fetch_one(pool)
    .await?;
    let remaining: Option<(i64,)> =
        sqlx::query_as("SELECT remaining FROM stock WHERE product_id = ?")
            .bind(product)
            .fetch_optional(pool)
            .await?;
    let redis_remaining: Option<i64> = redis::cmd("HGET")
        .arg(flashsale_schemas::names::redis_stock_key(product))
        .arg("remaining")
        .query_async(redis)
        .await?;
    Ok(ReadModel {
        mysql_orders: orders,
        mysql_units: units,
        mysql_remaining: remaining.map(|r| r.0),
        redis_remaining,
    })
}

/// Waits up to `timeout` for the product's read models to satisfy
/// `settled` (the sinks apply outcomes asynchronously). Returns whether they
/// did, and the last read, for the assertion message.
pub async fn await_read_model(
    pool: &MySqlPool,
    redis: &ConnectionManager,
    product: &str,
    timeout: Duration,
    settled: impl Fn(&ReadModel) -> bool,
) -> (bool, anyhow::Result<ReadModel>) {
    let settled = &settled;
    let done = eventually(timeout, || {
        let (pool, mut redis) = (pool.clone(), redis.clone());
        async move { Ok(settled(&read_model(&pool, &mut redis, product).await?)) }
    })
    .await;
    (done, read_model(pool, &mut redis.clone(), product).await)
}

/// Kafka helpers for tests that bypass the ingress, as external producers do.
pub mod kafka {
    use std::time::{Duration, Instant};

    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message, OwnedMessage};
    use rdkafka::producer::FutureProducer;
    use rdkafka::{Offset, TopicPartitionList};

    use flashsale_runtime::kafka::{assign_consumer_config, producer_config};
    use flashsale_runtime::topics::partition_count;
    use flashsale_schemas::registry::Contract;

    use crate::Env;

    /// Registers (idempotently) and returns the contract, as services do.
    pub async fn contract(env: &Env) -> anyhow::Result<Contract> {
        let topics = flashsale_schemas::registry::ContractTopics {
            requests: &env.requests_topic,
            outcomes: &env.outcomes_topic,
            dead_letter: &env.dead_letter_topic,
            snapshots: &env.snapshots_topic,
        };
        Ok(Contract::register(&env.registry_url, &topics).await?)
    }

    /// An idempotent murmur2 producer, as every producer must be.
    pub fn producer(env: &Env) -> anyhow::Result<FutureProducer> {
        Ok(producer_config(&env.brokers, &crate::unique("e2e-producer")).create()?)
    }

    /// A consumer over every partition of `topic`, positioned at the current
    /// end, so it sees only what is produced from now on.
    pub fn tail(env: &Env, topic: &str) -> anyhow::Result<StreamConsumer> {
        let mut config = assign_consumer_config(&env.brokers, &crate::unique("e2e-tail"));
        config.set("enable.partition.eof", "false");
        let consumer: StreamConsumer = config.create()?;
        let partitions = partition_count(&consumer, topic, Duration::from_secs(10))?;
        anyhow::ensure!(partitions > 0, "topic {topic} not found");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            tpl.add_partition_offset(topic, p, Offset::Offset(high))?;
        }
        consumer.assign(&tpl)?;
        Ok(consumer)
    }

    /// Reads from `consumer` until `pick` accepts a record or `timeout` passes.
    pub async fn find<T>(
        consumer: &StreamConsumer,
        timeout: Duration,
        mut pick: impl FnMut(&OwnedMessage) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Ok(Ok(m)) = tokio::time::timeout(left, consumer.recv()).await {
                if let Some(found) = pick(&m.detach()) {
                    return Some(found);
                }
            }
        }
        None
    }

    /// Deletes `topics` (a test's own scratch topics, once it is done with
    /// them); a topic that is already gone counts as deleted.
    pub async fn delete_topics(env: &Env, topics: &[&str]) -> anyhow::Result<()> {
        use rdkafka::admin::{AdminClient, AdminOptions};
        use rdkafka::client::DefaultClientContext;
        use rdkafka::types::RDKafkaErrorCode;
        let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &env.brokers)
            .create()?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin.delete_topics(topics, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((topic, code)) => anyhow::bail!("deleting topic {topic}: {code}"),
            }
        }
        Ok(())
    }

    /// The value of header `key`, as text.
    pub fn header(message: &OwnedMessage, key: &str) -> Option<String> {
        let headers = message.headers()?;
        headers
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
    }

    /// Produces `payload` under `key` to the requests topic, as an external
    /// producer would: on `partition`, or where the key hashes when None.
    /// Waits up to 10 s for the delivery; returns its partition and offset.
    pub async fn produce_request(
        env: &Env,
        producer: &FutureProducer,
        key: &str,
        payload: &[u8],
        partition: Option<i32>,
    ) -> anyhow::Result<(i32, i64)> {
        let mut record = rdkafka::producer::FutureRecord::to(&env.requests_topic)
            .key(key)
            .payload(payload);
        record.partition = partition;
        let delivery = producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
        Ok((delivery.partition, delivery.offset))
    }
}

/// The partition count the stack runs with (`FLASHSALE_PARTITIONS`, as
/// `dev/env` exports it; 8 by default).
pub fn partitions() -> i32 {
    std::env::var("FLASHSALE_PARTITIONS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8)
}

impl Api {
    /// GETs `path` (every 100 ms, as [`eventually`]) until `accept` takes
    /// the answer or `timeout` passes; returns whether it did. For answers
    /// that change asynchronously: decisions, projections.
    pub async fn await_get(
        &self,
        path: &str,
        timeout: Duration,
        accept: impl Fn(&Answer) -> bool,
    ) -> bool {
        let accept = &accept;
        eventually(
            timeout,
            || async move { Ok(accept(&self.get(path).await?)) },
        )
        .await
    }
}

//! End-to-end tests of the purchase pipeline on the real local stack
//! (`dev/up`: Apache Kafka, Apicurio Registry, MariaDB, Redis, and the
//! ingress, processor and sink binaries). Every decision is read from the
//! HTTP responses themselves, then the read models are checked against them.

use std::collections::HashMap;
use std::time::Duration;

use flashsale_testkit::{
    await_read_model, partitions, product_on_partition, unique, Answer, Api, Env, ReadModel,
};
use futures::future::join_all;
use reqwest::StatusCode;

/// How long read models may lag behind the decisions in these tests.
const PROJECTION_LAG_MAX: Duration = Duration::from_secs(30);

fn api() -> Api {
    Api::new(&Env::from_env().ingress_url)
}

/// Sends `count` purchases of one unit of `product` at once, the i-th as
/// user `user(i)`, all with `request_id` (None: the ingress makes one each).
async fn buy_at_once(
    api: &Api,
    product: &str,
    count: usize,
    user: impl Fn(usize) -> String,
    request_id: Option<&str>,
) -> Vec<Answer> {
    join_all((0..count).map(|i| {
        let user = user(i);
        async move { api.purchase(product, &user, 1, request_id).await.unwrap() }
    }))
    .await
}

/// How many answers have `field` equal to `value`.
fn count(answers: &[Answer], field: &str, value: &str) -> usize {
    answers.iter().filter(|a| a.body[field] == value).count()
}

fn assert_all_ok(answers: &[Answer]) {
    assert!(
        answers.iter().all(|a| a.status == StatusCode::OK),
        "{answers:?}"
    );
}

/// Waits for one product's read models to satisfy `settled` (see
/// [`await_read_model`]), on fresh connections.
async fn await_settled(
    env: &Env,
    product: &str,
    settled: impl Fn(&ReadModel) -> bool,
) -> (bool, anyhow::Result<ReadModel>) {
    let pool = env.mysql().await.unwrap();
    let redis = env.redis().await.unwrap();
    await_read_model(&pool, &redis, product, PROJECTION_LAG_MAX, settled).await
}

/// The old design's own test, which it failed (100 of 100 "succeeded"):
/// 100 concurrent buyers (distinct users), 10 items, quantity 1. Proves
/// exactly 10 HTTP answers say accepted and 90 say rejected sold_out, then
/// that MySQL holds exactly 10 orders and both MySQL and Redis show stock 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_buyers_ten_items_exactly_ten_accepted() {
    let env = Env::from_env();
    let api = api();
    let product = unique("old-scenario");
    api.configure_sale(&product, 10, 1).await.unwrap();

    let answers = buy_at_once(&api, &product, 100, |i| format!("buyer-{i}"), None).await;

    assert_all_ok(&answers);
    let accepted = count(&answers, "status", "accepted");
    let sold_out = count(&answers, "reason", "sold_out");
    assert_eq!((accepted, sold_out), (10, 90));

    let (settled, m) = await_settled(&env, &product, |m| {
        m.mysql_orders == 10 && m.mysql_remaining == Some(0) && m.redis_remaining == Some(0)
    })
    .await;
    let m = m.unwrap();
    assert!(settled, "read models did not settle: {m:?}");
    assert_eq!(m.mysql_units, 10);
}

/// One user fires 20 concurrent requests against a per-user limit of 2 (stock
/// 100): exactly 2 are accepted, the rest are rejected limit_exceeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_user_limit_holds_under_concurrency() {
    let api = api();
    let product = unique("limit");
    api.configure_sale(&product, 100, 2).await.unwrap();
    let user = unique("greedy");
    let answers = buy_at_once(&api, &product, 20, |_| user.clone(), None).await;
    let accepted = count(&answers, "status", "accepted");
    let limited = count(&answers, "reason", "limit_exceeded");
    assert_eq!((accepted, limited), (2, 18), "{answers:?}");
}

/// One request ID sent 10 times concurrently: one decision, the same body
/// in every answer, one order in MySQL, one unit off the stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_request_id_is_decided_once() {
    let env = Env::from_env();
    let api = api();
    let product = unique("idem");
    api.configure_sale(&product, 5, 5).await.unwrap();
    let request_id = unique("req");
    let answers = buy_at_once(
        &api,
        &product,
        10,
        |_| "idem-user".to_owned(),
        Some(&request_id),
    )
    .await;
    assert_all_ok(&answers);
    assert!(
        answers.iter().all(|a| a.body == answers[0].body),
        "{answers:?}"
    );
    assert_eq!(answers[0].body["status"], "accepted");
    assert_eq!(answers[0].body["remaining"], 4);

    // A later retry with the same ID still gets the original answer.
    let late = api
        .purchase(&product, "idem-user", 1, Some(&request_id))
        .await
        .unwrap();
    assert_eq!(late.body, answers[0].body);

    let (settled, m) = await_settled(&env, &product, |m| {
        m.mysql_remaining == Some(4) && m.redis_remaining == Some(4)
    })
    .await;
    let m = m.unwrap();
    assert!(settled, "{m:?}");
    assert_eq!(m.mysql_orders, 1);
    let polled = api
        .get(&format!("/api/v1/purchases/{request_id}"))
        .await
        .unwrap();
    assert_eq!(polled.status, StatusCode::OK);
    assert_eq!(polled.body, answers[0].body);
}

/// Many products on every partition at once, demand far above stock, mixed
/// quantities: for every product the accepted units equal its stock exactly
/// (never more, and none left unsold while demand exceeded it), and both read
/// models agree with the HTTP answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_products_across_partitions_sell_exactly_their_stock() {
    let env = Env::from_env();
    let api = api();
    let partitions = partitions();
    let products: Vec<String> = (0..partitions * 2)
        .map(|i| product_on_partition("many", i % partitions, partitions))
        .collect();
    let stock = 7;
    join_all(products.iter().map(|p| api.configure_sale(p, stock, 3)))
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()
        .unwrap();

    // 40 requests of 1-2 units per product: demand about 60 units vs 7.
    let requests: Vec<(String, String, i32)> = products
        .iter()
        .flat_map(|p| (0..40).map(move |i| (p.clone(), format!("u{i}"), 1 + (i % 2))))
        .collect();
    let answers = join_all(requests.chunks(64).map(|chunk| {
        let api = api.clone();
        let chunk = chunk.to_vec();
        async move {
            let mut out = Vec::new();
            for (p, u, q) in chunk {
                out.push((p.clone(), q, api.purchase(&p, &u, q, None).await.unwrap()));
            }
            out
        }
    }))
    .await;

    let mut sold: HashMap<String, i64> = HashMap::new();
    for (product, quantity, answer) in answers.into_iter().flatten() {
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        if answer.body["status"] == "accepted" {
            *sold.entry(product).or_default() += i64::from(quantity);
        }
    }
    for p in &products {
        // Quantities of 1 and 2 against 7: the last unit always finds a buyer of 1.
        assert_eq!(sold.get(p).copied().unwrap_or(0), stock, "product {p}");
    }

    let pool = env.mysql().await.unwrap();
    let redis = env.redis().await.unwrap();
    for p in &products {
        let (settled, m) = await_read_model(&pool, &redis, p, PROJECTION_LAG_MAX, |m| {
            m.mysql_units == stock && m.mysql_remaining == Some(0) && m.redis_remaining == Some(0)
        })
        .await;
        assert!(settled, "{p}: {m:?}");
    }
}

/// The sale endpoints: a configured sale reads back with its remaining
/// stock; an unknown product is a 404 unknown_product, both for reads and
/// for purchases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_read_back_and_unknown_products_are_404() {
    let api = api();
    let product = unique("readback");
    api.configure_sale(&product, 3, 1).await.unwrap();
    let bought = api.purchase(&product, "reader", 1, None).await.unwrap();
    assert_eq!(bought.body["status"], "accepted");
    let ok = api
        .await_get(
            &format!("/api/v1/sales/{product}"),
            PROJECTION_LAG_MAX,
            |sale| {
                sale.status == StatusCode::OK
                    && sale.body["remaining"] == 2
                    && sale.body["stock"] == 3
            },
        )
        .await;
    assert!(
        ok,
        "{:?}",
        api.get(&format!("/api/v1/sales/{product}")).await.unwrap()
    );
    let missing = unique("missing");
    let read = api.get(&format!("/api/v1/sales/{missing}")).await.unwrap();
    assert_eq!(
        (read.status, read.error_code()),
        (StatusCode::NOT_FOUND, Some("unknown_product"))
    );
    let buy = api.purchase(&missing, "u", 1, None).await.unwrap();
    assert_eq!(
        (buy.status, buy.error_code()),
        (StatusCode::NOT_FOUND, Some("unknown_product"))
    );
    let orders = api.get("/api/v1/users/reader/orders").await.unwrap();
    assert_eq!(orders.status, StatusCode::OK);
}

/// The old design's paths keep working: reserve with order_id as the
/// idempotency key (twice: one decision), and GET /health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_paths_keep_working() {
    let api = api();
    let product = unique("legacy");
    api.configure_sale(&product, 2, 1).await.unwrap();
    let order_id = unique("order");
    let body = serde_json::json!({"quantity": 1, "order_id": order_id});
    let first = api
        .post(&format!("/api/v1/products/{product}/stock/reserve"), &body)
        .await
        .unwrap();
    let again = api
        .post(&format!("/api/v1/products/{product}/stock/reserve"), &body)
        .await
        .unwrap();
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert_eq!(first.body["status"], "accepted");
    assert_eq!(first.body, again.body);
    assert_eq!(first.body["remaining"], 1);
    let health = api.get("/health").await.unwrap();
    assert_eq!(health.status, StatusCode::OK);
}

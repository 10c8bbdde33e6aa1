//! The flash sale the chaos runs against: many products, demand far above
//! stock, concurrent clients that retry with the same request ID until they
//! get a decision.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng as _;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::rng::{seeded, Rng};
use flashsale_testkit::{product_on_partition, Api};

/// One product on sale.
#[derive(Debug, Clone)]
pub struct Product {
    /// Unique to the run (`chaos-<id>-<hex>`), spread evenly over partitions.
    pub id: String,
    /// Units for sale.
    pub stock: i64,
    /// Most units one user may buy.
    pub per_user_limit: i32,
    /// The sale command's idempotency key (configuration is retried too).
    pub command_id: String,
}

/// One purchase a client will make (and retry until decided).
#[derive(Debug, Clone)]
pub struct Purchase {
    /// The client's own idempotency key.
    pub request_id: String,
    /// Index into [`SalePlan::products`].
    pub product: usize,
    /// The buyer.
    pub user_id: String,
    /// Units asked for.
    pub quantity: i32,
    /// When, after the load starts, it is first sent.
    pub at: Duration,
    /// The buyer is one of the few who ask more often than the limit allows.
    pub greedy: bool,
}

/// Sizes of the sale.
#[derive(Debug, Clone)]
pub struct SalePlanSpec {
    /// How many products.
    pub products: usize,
    /// Stock of each.
    pub stock: i64,
    /// Per-user limit of each.
    pub per_user_limit: i32,
    /// Demand per product in units, as a multiple of its stock (at least).
    pub demand_factor: i64,
    /// Users per product who send more requests than the limit allows.
    pub greedy_users: usize,
    /// Requests (of one unit) each greedy user sends per product.
    pub greedy_requests: usize,
    /// How long the load lasts.
    pub load: Duration,
    /// Partitions of the requests topic (products are spread over them).
    pub partitions: i32,
}

/// Everything the clients will do.
#[derive(Debug, Clone)]
pub struct SalePlan {
    /// The products.
    pub products: Vec<Product>,
    /// The purchases, in the order of their first send.
    pub purchases: Vec<Purchase>,
}

impl SalePlan {
    /// Builds the plan: each product's demand is sent within its own window
    /// (a quarter of the load, windows staggered over the whole load), so
    /// products keep selling out while the faults happen. Unique buyers ask
    /// for 1 or 2 units; more single-unit requests from unique buyers than
    /// there is stock guarantee that a product whose accepted units fall
    /// short of its stock would be an error, not bad luck.
    pub fn new(run: &str, spec: &SalePlanSpec, rng: &mut Rng) -> Self {
        let load_ms = spec.load.as_millis() as f64;
        let mut products = Vec::with_capacity(spec.products);
        let mut purchases = Vec::new();
        for p in 0..spec.products {
            let partition = (p as i32) % spec.partitions.max(1);
            let id = product_on_partition(run, partition, spec.partitions.max(1));
            products.push(Product {
                command_id: format!("{id}-sale"),
                id,
                stock: spec.stock,
                per_user_limit: spec.per_user_limit,
            });
            let window_start = load_ms * 0.75 * p as f64 / spec.products.max(1) as f64;
            let window = load_ms * 0.25;
            let at = |rng: &mut Rng| {
                Duration::from_millis((window_start + rng.random::<f64>() * window) as u64)
            };
            let mut units = 0i64;
            let mut singles = 0i64;
            let mut n = 0usize;
            for g in 0..spec.greedy_users {
                for _ in 0..spec.greedy_requests {
                    purchases.push(Purchase {
                        request_id: format!("{run}-p{p}-r{n}"),
                        product: p,
                        user_id: format!("{run}-greedy{g}"),
                        quantity: 1,
                        at: at(rng),
                        greedy: true,
                    });
                    n += 1;
                    units += 1;
                }
            }
            while units < spec.demand_factor * spec.stock || singles <= spec.stock {
                let quantity = if rng.random_range(0..4) == 0 { 2 } else { 1 };
                purchases.push(Purchase {
                    request_id: format!("{run}-p{p}-r{n}"),
                    product: p,
                    user_id: format!("{run}-p{p}-u{n}"),
                    quantity,
                    at: at(rng),
                    greedy: false,
                });
                n += 1;
                units += i64::from(quantity);
                singles += i64::from(quantity == 1);
            }
        }
        purchases.sort_by_key(|p| p.at);
        Self {
            products,
            purchases,
        }
    }

    /// Units asked for, per product.
    pub fn demand(&self, product: usize) -> i64 {
        self.purchases
            .iter()
            .filter(|p| p.product == product)
            .map(|p| i64::from(p.quantity))
            .sum()
    }

    /// Single-unit requests from buyers without other requests, per product:
    /// each of them must be accepted while a unit is left.
    pub fn unique_singles(&self, product: usize) -> i64 {
        self.purchases
            .iter()
            .filter(|p| p.product == product && !p.greedy && p.quantity == 1)
            .count() as i64
    }
}

/// A decision as the client saw it in a 200 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `accepted` or `rejected`.
    pub status: String,
    /// The rejection reason.
    pub reason: Option<String>,
    /// The order, when accepted.
    pub order_id: Option<String>,
    /// Units asked for, as echoed.
    pub quantity: i64,
    /// Units left after the decision.
    pub remaining: i64,
    /// The user's units of the product after the decision.
    pub user_total: i64,
}

impl Decision {
    /// Reads a decision from an outcome's JSON view (the HTTP answer's body,
    /// also what Redis keeps per request).
    pub fn from_body(body: &Value) -> Option<Self> {
        let status = body["status"].as_str()?;
        if status != "accepted" && status != "rejected" {
            return None;
        }
        Some(Self {
            status: status.to_owned(),
            reason: body["reason"].as_str().map(str::to_owned),
            order_id: body["order_id"].as_str().map(str::to_owned),
            quantity: body["quantity"].as_i64()?,
            remaining: body["remaining"].as_i64()?,
            user_total: body["user_total"].as_i64()?,
        })
    }

    /// Whether the purchase was accepted.
    pub fn accepted(&self) -> bool {
        self.status == "accepted"
    }
}

/// How a purchase ended for its client.
#[derive(Debug, Clone)]
pub enum Final {
    /// A 200 with a decision.
    Decided(Decision),
    /// A 404 `unknown_product` (must never happen: every sale was configured).
    UnknownProduct(String),
    /// Another final answer (4xx other than 404): a test or service bug.
    Refused(String),
    /// No decision within the attempt bound.
    GaveUp(String),
}

/// One purchase's result.
#[derive(Debug, Clone)]
pub struct ClientOutcome {
    /// Index into [`SalePlan::purchases`].
    pub purchase: usize,
    /// How it ended.
    pub result: Final,
    /// POSTs sent (1 when the first answer was final).
    pub attempts: u32,
}

/// Retry policy of the clients.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Most POSTs per request.
    pub attempts_max: u32,
    /// First pause after a failed attempt; doubles per attempt.
    pub backoff_min: Duration,
    /// Longest pause.
    pub backoff_max: Duration,
    /// No attempt starts after this instant (bounds the whole load, not
    /// just each request).
    pub deadline: Option<Instant>,
}

/// What one POST attempt says.
enum Attempt {
    Final(Final),
    Retry(String),
}

fn classify(result: anyhow::Result<flashsale_testkit::Answer>) -> Attempt {
    let answer = match result {
        Ok(a) => a,
        Err(e) => return Attempt::Retry(format!("transport: {e:#}")),
    };
    match answer.status {
        StatusCode::OK => match Decision::from_body(&answer.body) {
            Some(d) => Attempt::Final(Final::Decided(d)),
            None => Attempt::Final(Final::Refused(format!(
                "200 without a decision: {}",
                answer.body
            ))),
        },
        StatusCode::NOT_FOUND if answer.error_code() == Some("unknown_product") => {
            Attempt::Final(Final::UnknownProduct(answer.body.to_string()))
        }
        StatusCode::ACCEPTED => Attempt::Retry("202 pending".to_owned()),
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            Attempt::Retry(format!("{s}: {}", answer.body))
        }
        s => Attempt::Final(Final::Refused(format!("{s}: {}", answer.body))),
    }
}

fn backoff(policy: &RetryPolicy, attempt: u32, rng: &mut Rng) -> Duration {
    let base = policy
        .backoff_min
        .saturating_mul(1 << attempt.min(10))
        .min(policy.backoff_max);
    base + Duration::from_millis(rng.random_range(0..=base.as_millis() as u64 / 2))
}

/// POSTs one purchase until it is decided, re-sending the same request ID
/// after any error, timeout or 202, at most `policy.attempts_max` times.
pub async fn buy(
    api: &Api,
    purchase: &Purchase,
    product: &str,
    policy: &RetryPolicy,
    rng: &mut Rng,
) -> (Final, u32) {
    let body = json!({
        "user_id": purchase.user_id,
        "quantity": purchase.quantity,
        "request_id": purchase.request_id,
    });
    let path = format!("/api/v1/sales/{product}/purchases");
    let mut last = "never sent".to_owned();
    let mut sent = 0;
    while sent < policy.attempts_max {
        if policy.deadline.is_some_and(|d| Instant::now() >= d) {
            let why = format!("load deadline passed after {sent} attempts, last: {last}");
            return (Final::GaveUp(why), sent);
        }
        if sent > 0 {
            tokio::time::sleep(backoff(policy, sent - 1, rng)).await;
        }
        sent += 1;
        match classify(api.post(&path, &body).await) {
            Attempt::Final(f) => return (f, sent),
            Attempt::Retry(why) => last = why,
        }
    }
    let why = format!("{sent} attempts, last: {last}");
    (Final::GaveUp(why), sent)
}

/// Configures every product's sale, retrying each with its command ID
/// until it is answered 201.
pub async fn configure(api: &Api, plan: &SalePlan, policy: &RetryPolicy) -> anyhow::Result<()> {
    let tasks = plan.products.iter().enumerate().map(|(i, p)| {
        let api = api.clone();
        let p = p.clone();
        let policy = *policy;
        async move {
            let mut rng = seeded(i as u64 + 1);
            let body = json!({
                "product_id": p.id,
                "stock": p.stock,
                "per_user_limit": p.per_user_limit,
                "price": "9.99",
                "command_id": p.command_id,
            });
            let mut last = String::new();
            for attempt in 0..policy.attempts_max {
                match api.post("/api/v1/sales", &body).await {
                    Ok(a) if a.status == StatusCode::CREATED => return Ok(()),
                    Ok(a) if a.status == StatusCode::ACCEPTED || a.status.is_server_error() => {
                        last = format!("{}: {}", a.status, a.body);
                    }
                    Ok(a) => anyhow::bail!("configuring {}: {} {}", p.id, a.status, a.body),
                    Err(e) => last = format!("{e:#}"),
                }
                tokio::time::sleep(backoff(&policy, attempt, &mut rng)).await;
            }
            anyhow::bail!(
                "configuring {}: no 201 after {} attempts, last: {last}",
                p.id,
                policy.attempts_max
            )
        }
    });
    futures::future::try_join_all(tasks).await?;
    Ok(())
}

/// Runs the purchases with `clients` concurrent clients, each taking the
/// next purchase due and sending it no earlier than `start + at`.
pub async fn run(
    api: Api,
    plan: Arc<SalePlan>,
    clients: usize,
    policy: RetryPolicy,
    start: Instant,
    seed: u64,
    retries: Arc<AtomicU64>,
) -> Vec<ClientOutcome> {
    let queue: Arc<Mutex<VecDeque<usize>>> =
        Arc::new(Mutex::new((0..plan.purchases.len()).collect()));
    let workers = (0..clients).map(|c| {
        let (api, plan, queue, retries) =
            (api.clone(), plan.clone(), queue.clone(), retries.clone());
        tokio::spawn(async move {
            let mut rng = seeded(seed ^ (c as u64 + 1).wrapping_mul(0x9E37_79B9));
            let mut done = Vec::new();
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(i) = next else { break };
                let purchase = &plan.purchases[i];
                tokio::time::sleep_until((start + purchase.at).into()).await;
                let product = &plan.products[purchase.product].id;
                let (result, attempts) = buy(&api, purchase, product, &policy, &mut rng).await;
                retries.fetch_add(u64::from(attempts.saturating_sub(1)), Ordering::Relaxed);
                done.push(ClientOutcome {
                    purchase: i,
                    result,
                    attempts,
                });
            }
            done
        })
    });
    let mut all = Vec::with_capacity(plan.purchases.len());
    for worker in futures::future::join_all(workers).await {
        match worker {
            Ok(done) => all.extend(done),
            Err(e) => panic!("a client task failed: {e}"),
        }
    }
    all.sort_by_key(|o| o.purchase);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;

    fn spec() -> SalePlanSpec {
        SalePlanSpec {
            products: 4,
            stock: 20,
            per_user_limit: 2,
            demand_factor: 5,
            greedy_users: 5,
            greedy_requests: 3,
            load: Duration::from_secs(90),
            partitions: 8,
        }
    }

    /// What a plan's purchases are: request, product, buyer, units, send time.
    fn shape(plan: &SalePlan) -> Vec<(String, usize, String, i32, Duration)> {
        plan.purchases
            .iter()
            .map(|p| {
                let (id, user) = (p.request_id.clone(), p.user_id.clone());
                (id, p.product, user, p.quantity, p.at)
            })
            .collect()
    }

    /// Proves the plan is a function of the seed (what `FLASHSALE_CHAOS_SEED`
    /// replays): the same seed gives the same purchases, another seed other
    /// send times; and every product gets more single-unit buyers than stock
    /// and at least `demand_factor` times its stock in demand.
    #[test]
    fn plan_is_a_function_of_the_seed() {
        let plan = |seed| SalePlan::new("chaos-t", &spec(), &mut seeded(seed));
        assert_eq!(shape(&plan(7)), shape(&plan(7)));
        assert_ne!(shape(&plan(7)), shape(&plan(8)));
        let p = plan(7);
        for i in 0..p.products.len() {
            assert!(p.unique_singles(i) > 20, "product {i}");
            assert!(p.demand(i) >= 100, "product {i}");
        }
    }
}

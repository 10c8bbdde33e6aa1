//! HTTP unit tests of `flashsale_ingress::app`, driven with
//! `tower::ServiceExt::oneshot`. Kafka and the read model are replaced by
//! in-memory fakes: a toy "processor" behind the `Publisher` trait (so the
//! real `WaitingSubmitter` and waiter registry are exercised) and a map-based
//! `ReadModel`. These tests prove routing, validation, answer shapes and
//! error mapping; they claim nothing end to end (see the e2e crate).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request as HttpRequest, StatusCode};
use http_body_util::BodyExt;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tower::ServiceExt;

use flashsale_ingress::extract::Limits;
use flashsale_ingress::metrics::IngressMetrics;
use flashsale_ingress::outcomes::Waiters;
use flashsale_ingress::read_model::{OrderView, ReadError, ReadModel, SaleView};
use flashsale_ingress::submit::{PublishError, Publisher, WaitingSubmitter};
use flashsale_ingress::{app, AppState};
use flashsale_schemas::view::OutcomeView;
use flashsale_schemas::{
    Outcome, OutcomeKind, ProductId, RejectReason, Request, RequestId, Status, UserId,
};

/// What the fake Kafka does with a published request.
#[derive(Clone)]
enum Mode {
    /// Decide it like a (very) small processor and deliver the outcome.
    Decide,
    /// Acknowledge it but never deliver an outcome (the wait times out).
    Silent,
    /// Refuse it.
    Fail(PublishError),
    /// Deliver this outcome, whatever was asked (for odd cases).
    Answer(Box<Outcome>),
}

/// A toy processor: remembers sales and their remaining stock, decides
/// purchases without limits or windows, and hands outcomes to the waiters
/// the way the outcome listener would.
struct FakeKafka {
    /// Registry to deliver outcomes into.
    waiters: Arc<Waiters>,
    /// Behaviour for the next requests.
    mode: Mutex<Mode>,
    /// Every request published, in order.
    published: Mutex<Vec<Request>>,
    /// Remaining stock per configured product.
    remaining: Mutex<HashMap<ProductId, i64>>,
}

impl FakeKafka {
    fn decide(&self, request: &Request) -> Outcome {
        let mut remaining = self.remaining.lock().expect("lock");
        let mut o = base_outcome(request.request_id(), request.product_id());
        match request {
            Request::ConfigureSale(c) => {
                o.kind = OutcomeKind::SaleConfigured;
                remaining.insert(c.product_id.clone(), c.terms.stock);
                o.remaining = c.terms.stock;
                o.stock = c.terms.stock;
                o.sale = Some(c.terms.clone());
            }
            Request::Purchase(p) => {
                o.user_id = Some(p.user_id.clone());
                o.quantity = p.quantity;
                match remaining.get_mut(&p.product_id) {
                    None => reject(&mut o, RejectReason::UnknownProduct),
                    Some(0) => reject(&mut o, RejectReason::SoldOut),
                    Some(left) if *left < i64::from(p.quantity) => {
                        reject(&mut o, RejectReason::InsufficientStock)
                    }
                    Some(left) => {
                        *left -= i64::from(p.quantity);
                        o.remaining = *left;
                        o.unit_price = Some(Decimal::new(999, 2));
                        o.order_id = Some(flashsale_schemas::OrderId::for_input(0, 1));
                    }
                }
            }
        }
        o
    }
}

fn reject(o: &mut Outcome, reason: RejectReason) {
    o.status = Status::Rejected;
    o.reason = Some(reason);
}

fn base_outcome(request_id: &RequestId, product_id: &ProductId) -> Outcome {
    Outcome {
        request_id: request_id.clone(),
        product_id: product_id.clone(),
        kind: OutcomeKind::Purchase,
        status: Status::Accepted,
        reason: None,
        user_id: None,
        quantity: 0,
        order_id: None,
        unit_price: None,
        remaining: 0,
        stock: 0,
        user_total: 0,
        sale: None,
        source_partition: 0,
        source_offset: 1,
        decided_at_ms: 0,
    }
}

#[async_trait]
impl Publisher for FakeKafka {
    async fn publish(&self, request: &Request) -> Result<(), PublishError> {
        let mode = self.mode.lock().expect("lock").clone();
        match mode {
            Mode::Fail(e) => return Err(e),
            Mode::Silent => {}
            Mode::Decide => {
                let outcome = self.decide(request);
                self.waiters.deliver(outcome);
            }
            Mode::Answer(outcome) => {
                self.waiters.deliver(*outcome);
            }
        }
        self.published.lock().expect("lock").push(request.clone());
        Ok(())
    }
}

/// A map-based read model; `down` makes every read fail.
#[derive(Default)]
struct FakeReads {
    /// Sales by product.
    sales: HashMap<String, SaleView>,
    /// Outcome views by request.
    outcomes: HashMap<String, OutcomeView>,
    /// Orders by user.
    orders: HashMap<String, Vec<OrderView>>,
    /// Simulates Redis and MySQL both unreachable.
    down: bool,
}

#[async_trait]
impl ReadModel for FakeReads {
    async fn sale(&self, product_id: &ProductId) -> Result<Option<SaleView>, ReadError> {
        self.check()?;
        Ok(self.sales.get(product_id.as_str()).cloned())
    }
    async fn outcome(&self, request_id: &RequestId) -> Result<Option<OutcomeView>, ReadError> {
        self.check()?;
        Ok(self.outcomes.get(request_id.as_str()).cloned())
    }
    async fn orders(&self, user_id: &UserId, limit: u32) -> Result<Vec<OrderView>, ReadError> {
        self.check()?;
        let mut orders = self
            .orders
            .get(user_id.as_str())
            .cloned()
            .unwrap_or_default();
        orders.truncate(limit as usize);
        Ok(orders)
    }
}

impl FakeReads {
    fn check(&self) -> Result<(), ReadError> {
        if self.down {
            Err(ReadError("tables missing".into()))
        } else {
            Ok(())
        }
    }
}

/// The app under test plus handles on its fakes.
struct Harness {
    /// The router.
    app: axum::Router,
    /// The fake write side.
    kafka: Arc<FakeKafka>,
    /// The real waiter registry the fake delivers into.
    waiters: Arc<Waiters>,
    /// The metrics the app records into.
    metrics: IngressMetrics,
}

const BODY_LIMIT: usize = 512;

fn harness_with(reads: FakeReads, pending_max: usize) -> Harness {
    let metrics = IngressMetrics::new().expect("metrics");
    let waiters = Waiters::new(pending_max, metrics.pending_waiters.clone());
    let kafka = Arc::new(FakeKafka {
        waiters: waiters.clone(),
        mode: Mutex::new(Mode::Decide),
        published: Mutex::new(Vec::new()),
        remaining: Mutex::new(HashMap::new()),
    });
    let submitter =
        WaitingSubmitter::new(waiters.clone(), kafka.clone(), Duration::from_millis(30));
    let state = AppState {
        submitter: Arc::new(submitter),
        read_model: Arc::new(reads),
        metrics: metrics.clone(),
        limits: Limits {
            body_bytes_max: BODY_LIMIT,
            quantity_max: 100,
        },
    };
    Harness {
        app: app(state),
        kafka,
        waiters,
        metrics,
    }
}

fn harness() -> Harness {
    harness_with(FakeReads::default(), 100)
}

/// An answer, decoded.
struct Answer {
    /// HTTP status.
    status: StatusCode,
    /// Headers.
    headers: HeaderMap,
    /// Body as JSON (Null when not JSON).
    json: Value,
    /// Body as text.
    text: String,
}

impl Harness {
    fn set_mode(&self, mode: Mode) {
        *self.kafka.mode.lock().expect("lock") = mode;
    }

    fn published(&self) -> Vec<Request> {
        self.kafka.published.lock().expect("lock").clone()
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> Answer {
        let mut builder = HttpRequest::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let request = builder.body(Body::from(body.to_owned())).expect("request");
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        let answer = Answer {
            status,
            headers,
            json,
            text,
        };
        if status.is_client_error() || status.is_server_error() {
            assert_error_shape(&answer);
        }
        answer
    }

    async fn post(&self, uri: &str, body: Value) -> Answer {
        self.call(
            Method::POST,
            uri,
            Some("application/json"),
            &body.to_string(),
        )
        .await
    }

    async fn get(&self, uri: &str) -> Answer {
        self.call(Method::GET, uri, None, "").await
    }

    async fn configure(&self, product: &str, stock: i64) {
        let body =
            json!({"product_id": product, "stock": stock, "per_user_limit": 5, "price": "9.99"});
        let answer = self.post("/api/v1/sales", body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    }
}

/// Every error answer must be exactly `{"error":{"code","message"}}` as JSON.
fn assert_error_shape(answer: &Answer) {
    assert_eq!(
        answer
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(&b"application/json"[..]),
        "error without JSON content type: {}",
        answer.text
    );
    let error = answer.json.get("error").and_then(Value::as_object);
    let error = error.unwrap_or_else(|| panic!("not an error body: {}", answer.text));
    assert!(
        error.get("code").is_some_and(Value::is_string),
        "{}",
        answer.text
    );
    assert!(
        error.get("message").is_some_and(Value::is_string),
        "{}",
        answer.text
    );
    assert_eq!(
        answer.json.as_object().map(|o| o.len()),
        Some(1),
        "{}",
        answer.text
    );
    assert_eq!(error.len(), 2, "{}", answer.text);
}

fn code(answer: &Answer) -> &str {
    answer.json["error"]["code"].as_str().unwrap_or("")
}

/// Proves /health answers 200 {"status":"ok"} (a plain GET, JSON compared).
#[tokio::test]
async fn health_is_ok() {
    let h = harness();
    let answer = h.get("/health").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json, json!({"status": "ok"}));
}

/// Proves an accepted purchase answers 200 with the OutcomeView and that the
/// produced record carries the path product, body user/quantity, a fresh
/// UUID v4 request ID and a current received_at_ms (inspected on the fake).
#[tokio::test]
async fn purchase_accepted() {
    let h = harness();
    h.configure("p1", 10).await;
    let before = chrono::Utc::now().timestamp_millis();
    let answer = h
        .post(
            "/api/v1/sales/p1/purchases",
            json!({"user_id": "u1", "quantity": 2}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["status"], "accepted");
    assert_eq!(answer.json["kind"], "purchase");
    assert_eq!(answer.json["remaining"], 8);
    assert_eq!(answer.json["unit_price"], "9.99");
    assert!(answer.json["order_id"].is_string());
    let Some(Request::Purchase(p)) = h.published().pop() else {
        panic!("no purchase produced");
    };
    assert_eq!(
        (p.product_id.as_str(), p.user_id.as_str(), p.quantity),
        ("p1", "u1", 2)
    );
    assert_eq!(answer.json["request_id"], p.request_id.as_str());
    assert!(uuid::Uuid::parse_str(p.request_id.as_str()).is_ok_and(|u| u.get_version_num() == 4));
    assert!(
        p.received_at_ms >= before && p.received_at_ms <= chrono::Utc::now().timestamp_millis()
    );
    assert_eq!(h.waiters.pending(), 0);
}

/// Proves a rejection other than unknown_product is a 200 with the
/// rejection in the body (sold out after the stock is gone).
#[tokio::test]
async fn purchase_rejected_is_200() {
    let h = harness();
    h.configure("p1", 1).await;
    let first = h
        .post(
            "/api/v1/sales/p1/purchases",
            json!({"user_id": "u1", "quantity": 1, "request_id": "r1"}),
        )
        .await;
    assert_eq!(first.json["status"], "accepted");
    let second = h
        .post(
            "/api/v1/sales/p1/purchases",
            json!({"user_id": "u2", "quantity": 1, "request_id": "r2"}),
        )
        .await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.json["status"], "rejected");
    assert_eq!(second.json["reason"], "sold_out");
    assert_eq!(second.json["request_id"], "r2");
}

/// Proves a purchase of a product without a sale answers 404
/// unknown_product (the toy processor rejects it with that reason).
#[tokio::test]
async fn purchase_unknown_product_is_404() {
    let h = harness();
    let answer = h
        .post(
            "/api/v1/sales/nope/purchases",
            json!({"user_id": "u1", "quantity": 1}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(code(&answer), "unknown_product");
}

/// Proves a missing outcome gives 202 with Location and a pending body,
/// and leaves no waiter registered (fake acknowledges, never decides).
#[tokio::test]
async fn purchase_timeout_is_202() {
    let h = harness();
    h.set_mode(Mode::Silent);
    let answer = h
        .post(
            "/api/v1/sales/p1/purchases",
            json!({"user_id": "u1", "quantity": 1, "request_id": "r-9"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(
        answer.json,
        json!({"request_id": "r-9", "status": "pending"})
    );
    assert_eq!(
        answer.headers.get(header::LOCATION).map(|v| v.as_bytes()),
        Some(&b"/api/v1/purchases/r-9"[..])
    );
    assert_eq!(h.waiters.pending(), 0);
}

/// Proves produce failures are 503: broker failure is `unavailable`, a full
/// producer queue is `overloaded` (fake publisher returns each error).
#[tokio::test]
async fn produce_failures_are_503() {
    let h = harness();
    let body = json!({"user_id": "u1", "quantity": 1});
    h.set_mode(Mode::Fail(PublishError::Unavailable("broker down".into())));
    let answer = h.post("/api/v1/sales/p1/purchases", body.clone()).await;
    assert_eq!(
        (answer.status, code(&answer)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    h.set_mode(Mode::Fail(PublishError::QueueFull));
    let answer = h.post("/api/v1/sales/p1/purchases", body).await;
    assert_eq!(
        (answer.status, code(&answer)),
        (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
    );
    assert_eq!(h.waiters.pending(), 0);
}

/// Proves the pending-waiter bound: with pending_max = 1 and one waiter
/// already registered, a purchase is 503 overloaded with Retry-After, and
/// nothing is produced.
#[tokio::test]
async fn pending_limit_is_503() {
    let h = harness_with(FakeReads::default(), 1);
    let id = RequestId::parse("held").expect("id");
    let product = ProductId::parse("p1").expect("id");
    let _held = h.waiters.register(&id, &product).expect("room");
    let answer = h
        .post(
            "/api/v1/sales/p1/purchases",
            json!({"user_id": "u1", "quantity": 1}),
        )
        .await;
    assert_eq!(
        (answer.status, code(&answer)),
        (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
    );
    assert!(answer.headers.contains_key(header::RETRY_AFTER));
    assert!(h.published().is_empty());
}

/// Proves each body failure maps to its code: bad syntax 400 invalid_json;
/// wrong type, missing or unknown field 422 invalid_body; missing or wrong
/// content type 415; oversized body 413. Nothing is produced for any.
#[tokio::test]
async fn body_failures() {
    let h = harness();
    let uri = "/api/v1/sales/p1/purchases";
    let json_ct = Some("application/json");
    let cases: [(Option<&str>, String, StatusCode, &str); 8] = [
        (
            json_ct,
            "{\"user_id\":".into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            json_ct,
            r#"{"user_id":"u1","quantity":1} x"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            json_ct,
            r#"{"user_id":"u1","quantity":"1"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json_ct,
            r#"{"user_id":"u1"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json_ct,
            r#"{"user_id":"u1","quantity":1,"x":1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            None,
            r#"{"user_id":"u1","quantity":1}"#.into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Some("text/plain"),
            r#"{"user_id":"u1","quantity":1}"#.into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            json_ct,
            format!(r#"{{"user_id":"{}","quantity":1}}"#, "u".repeat(BODY_LIMIT)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (content_type, body, status, expected) in cases {
        let answer = h.call(Method::POST, uri, content_type, &body).await;
        assert_eq!(
            (answer.status, code(&answer)),
            (status, expected),
            "body {body:.60}"
        );
    }
    assert!(h.published().is_empty());
}

/// Proves quantity bounds (0, negative, above --quantity-max, beyond i32)
/// are 422 invalid_quantity, and 100 (the max) is accepted.
#[tokio::test]
async fn quantity_limits() {
    let h = harness();
    h.configure("p1", 1000).await;
    for quantity in [json!(0), json!(-1), json!(101), json!(5_000_000_000_i64)] {
        let body = json!({"user_id": "u1", "quantity": quantity});
        let answer = h.post("/api/v1/sales/p1/purchases", body).await;
        assert_eq!(
            (answer.status, code(&answer)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_quantity")
        );
    }
    let ok = h
        .post(
            "/api/v1/sales/p1/purchases",
            json!({"user_id": "u1", "quantity": 100}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

/// Proves IDs are validated wherever they come from: body user_id and
/// request_id, path product_id (bad characters, too long, undecodable
/// percent-encoding) and the read routes' path IDs; all 422 invalid_id.
#[tokio::test]
async fn invalid_ids() {
    let h = harness();
    let bad_bodies = [
        json!({"user_id": "", "quantity": 1}),
        json!({"user_id": "u 1", "quantity": 1}),
        json!({"user_id": "u1", "quantity": 1, "request_id": "a/b"}),
    ];
    for body in bad_bodies {
        let answer = h.post("/api/v1/sales/p1/purchases", body).await;
        assert_eq!(
            (answer.status, code(&answer)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_id")
        );
    }
    let long = "p".repeat(65);
    let bad_paths = [
        format!("/api/v1/sales/{long}/purchases"),
        "/api/v1/sales/p%20x/purchases".to_owned(),
        "/api/v1/sales/%FF/purchases".to_owned(),
    ];
    for uri in bad_paths {
        let answer = h.post(&uri, json!({"user_id": "u1", "quantity": 1})).await;
        assert_eq!(
            (answer.status, code(&answer)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_id"),
            "{uri}"
        );
    }
    for uri in [
        "/api/v1/sales/a%2Fb",
        "/api/v1/purchases/a%20b",
        "/api/v1/users/%FF/orders",
    ] {
        let answer = h.get(uri).await;
        assert_eq!(
            (answer.status, code(&answer)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_id"),
            "{uri}"
        );
    }
    assert!(h.published().is_empty());
}

/// Proves unknown routes are 404 not_found and known routes with the wrong
/// method are 405 method_not_allowed, both as JSON errors.
#[tokio::test]
async fn routing_errors() {
    let h = harness();
    let answer = h.get("/api/v2/nothing").await;
    assert_eq!(
        (answer.status, code(&answer)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let answer = h.call(Method::DELETE, "/api/v1/sales/p1", None, "").await;
    assert_eq!(
        (answer.status, code(&answer)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let answer = h.get("/api/v1/sales/p1/purchases").await;
    assert_eq!(
        (answer.status, code(&answer)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

/// Proves an accepted sale command answers 201 with the terms in force
/// (price normalised to two places, instants echoed as RFC 3339 and ms),
/// remaining and a generated command_id equal to the produced record's.
#[tokio::test]
async fn create_sale_accepted() {
    let h = harness();
    let body = json!({
        "product_id": "p1", "stock": 10, "per_user_limit": 2, "price": "5",
        "starts_at": "2030-01-01T00:00:00Z", "ends_at": 1_893_459_600_000_i64
    });
    let answer = h.post("/api/v1/sales", body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let Some(Request::ConfigureSale(c)) = h.published().pop() else {
        panic!("no command produced");
    };
    assert_eq!(c.terms.starts_at_ms, Some(1_893_456_000_000));
    let expected = json!({
        "product_id": "p1", "stock": 10, "per_user_limit": 2, "price": "5.00",
        "starts_at": "2030-01-01T00:00:00.000Z", "starts_at_ms": 1_893_456_000_000_i64,
        "ends_at": "2030-01-01T01:00:00.000Z", "ends_at_ms": 1_893_459_600_000_i64,
        "remaining": 10, "command_id": c.command_id.as_str()
    });
    assert_eq!(answer.json, expected);
    assert!(c.issued_at_ms > 0);
}

/// Proves invalid terms are refused before producing with 422 invalid_sale
/// (stock, limit, price, window), and a price given as a JSON number is a
/// type error (422 invalid_body).
#[tokio::test]
async fn create_sale_validation() {
    let h = harness();
    let valid = json!({"product_id": "p1", "stock": 1, "per_user_limit": 1, "price": "1.00"});
    let tweaks = [
        ("stock", json!(-1)),
        ("per_user_limit", json!(0)),
        ("price", json!("-1")),
        ("price", json!("1.001")),
        ("price", json!("abc")),
        ("starts_at", json!("not a time")),
        ("ends_at", json!(-5)),
    ];
    for (field, value) in tweaks {
        let mut body = valid.clone();
        body[field] = value;
        let answer = h.post("/api/v1/sales", body).await;
        assert_eq!(
            (answer.status, code(&answer)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_sale"),
            "{field}"
        );
    }
    let mut window = valid.clone();
    window["starts_at"] = json!(2000);
    window["ends_at"] = json!(1000);
    let answer = h.post("/api/v1/sales", window).await;
    assert_eq!(code(&answer), "invalid_sale");
    let mut numeric = valid.clone();
    numeric["price"] = json!(1.5);
    let answer = h.post("/api/v1/sales", numeric).await;
    assert_eq!(code(&answer), "invalid_body");
    let mut bad_id = valid;
    bad_id["product_id"] = json!("no spaces");
    assert_eq!(code(&h.post("/api/v1/sales", bad_id).await), "invalid_id");
    assert!(h.published().is_empty());
}

/// Proves a sale command the processor rejects answers 409 invalid_sale
/// (fake answers a rejected sale_configured outcome).
#[tokio::test]
async fn create_sale_rejected_is_409() {
    let h = harness();
    let mut rejected = base_outcome(
        &RequestId::parse("c1").expect("id"),
        &ProductId::parse("p1").expect("id"),
    );
    rejected.kind = OutcomeKind::SaleConfigured;
    reject(&mut rejected, RejectReason::InvalidSale);
    h.set_mode(Mode::Answer(Box::new(rejected)));
    let body = json!({"product_id": "p1", "stock": 0, "per_user_limit": 1, "price": "1", "command_id": "c1"});
    let answer = h.post("/api/v1/sales", body).await;
    assert_eq!(
        (answer.status, code(&answer)),
        (StatusCode::CONFLICT, "invalid_sale")
    );
}

/// Proves a sale command whose outcome does not arrive in time answers 202
/// with a Location under /api/v1/purchases/{command_id}.
#[tokio::test]
async fn create_sale_timeout_is_202() {
    let h = harness();
    h.set_mode(Mode::Silent);
    let body = json!({"product_id": "p1", "stock": 1, "per_user_limit": 1, "price": "1", "command_id": "c-7"});
    let answer = h.post("/api/v1/sales", body).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(answer.json["status"], "pending");
    assert_eq!(
        answer.headers.get(header::LOCATION).map(|v| v.as_bytes()),
        Some(&b"/api/v1/purchases/c-7"[..])
    );
}

/// Proves a request ID already used for the other kind of request is a
/// 409 id_conflict rather than a misleading answer (the processor replays
/// the original outcome; the fake answers a sale_configured outcome to a
/// purchase).
#[tokio::test]
async fn id_reused_across_kinds_is_409() {
    let h = harness();
    let mut other = base_outcome(
        &RequestId::parse("x1").expect("id"),
        &ProductId::parse("p1").expect("id"),
    );
    other.kind = OutcomeKind::SaleConfigured;
    h.set_mode(Mode::Answer(Box::new(other)));
    let body = json!({"user_id": "u1", "quantity": 1, "request_id": "x1"});
    let answer = h.post("/api/v1/sales/p1/purchases", body).await;
    assert_eq!(
        (answer.status, code(&answer)),
        (StatusCode::CONFLICT, "id_conflict")
    );
}

/// Proves the old reserve route produces a purchase whose request ID is the
/// order ID and whose user is the order ID when no user is given, or the
/// given user otherwise; and answers like a purchase.
#[tokio::test]
async fn reserve_maps_to_purchase() {
    let h = harness();
    h.configure("p1", 10).await;
    let answer = h
        .post(
            "/api/v1/products/p1/stock/reserve",
            json!({"quantity": 1, "order_id": "ord-1"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["request_id"], "ord-1");
    assert_eq!(answer.json["user_id"], "ord-1");
    let body = json!({"quantity": 1, "order_id": "ord-2", "user_id": "alice"});
    let answer = h.post("/api/v1/products/p1/stock/reserve", body).await;
    assert_eq!(answer.json["user_id"], "alice");
    let Some(Request::Purchase(p)) = h.published().pop() else {
        panic!("no purchase produced");
    };
    assert_eq!(
        (p.request_id.as_str(), p.user_id.as_str()),
        ("ord-2", "alice")
    );
    let bad = h
        .post(
            "/api/v1/products/p1/stock/reserve",
            json!({"quantity": 0, "order_id": "ord-3"}),
        )
        .await;
    assert_eq!(code(&bad), "invalid_quantity");
}

fn sample_reads() -> FakeReads {
    let mut reads = FakeReads::default();
    let sale = SaleView {
        stock: 10,
        per_user_limit: 2,
        price: "9.99".into(),
        starts_at_ms: Some(1_893_456_000_000),
        ends_at_ms: None,
        remaining: 0,
    };
    reads.sales.insert("p1".into(), sale);
    let view = OutcomeView::from(&base_outcome(
        &RequestId::parse("r1").expect("id"),
        &ProductId::parse("p1").expect("id"),
    ));
    reads.outcomes.insert("r1".into(), view);
    let order = OrderView {
        order_id: "o-0-1".into(),
        request_id: "r1".into(),
        product_id: "p1".into(),
        quantity: 1,
        unit_price: "9.99".into(),
        decided_at_ms: 5,
    };
    reads.orders.insert("u1".into(), vec![order]);
    reads
}

/// Proves GET sale answers the read model's terms with sold_out derived from
/// remaining, and 404 unknown_product for a product without a sale.
#[tokio::test]
async fn get_sale() {
    let h = harness_with(sample_reads(), 10);
    let answer = h.get("/api/v1/sales/p1").await;
    assert_eq!(answer.status, StatusCode::OK);
    let expected = json!({
        "product_id": "p1", "stock": 10, "per_user_limit": 2, "price": "9.99",
        "starts_at": "2030-01-01T00:00:00.000Z", "starts_at_ms": 1_893_456_000_000_i64,
        "remaining": 0, "sold_out": true
    });
    assert_eq!(answer.json, expected);
    let answer = h.get("/api/v1/sales/p2").await;
    assert_eq!(
        (answer.status, code(&answer)),
        (StatusCode::NOT_FOUND, "unknown_product")
    );
}

/// Proves GET purchase answers the stored OutcomeView and 404 not_found for
/// an unknown request.
#[tokio::test]
async fn get_purchase() {
    let h = harness_with(sample_reads(), 10);
    let answer = h.get("/api/v1/purchases/r1").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json["request_id"], "r1");
    assert_eq!(answer.json["status"], "accepted");
    let answer = h.get("/api/v1/purchases/r2").await;
    assert_eq!(
        (answer.status, code(&answer)),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

/// Proves the orders listing shape, and that a user without orders gets an
/// empty list rather than a 404.
#[tokio::test]
async fn user_orders() {
    let h = harness_with(sample_reads(), 10);
    let answer = h.get("/api/v1/users/u1/orders").await;
    assert_eq!(answer.status, StatusCode::OK);
    let expected = json!({"user_id": "u1", "orders": [{
        "order_id": "o-0-1", "request_id": "r1", "product_id": "p1",
        "quantity": 1, "unit_price": "9.99", "decided_at_ms": 5
    }]});
    assert_eq!(answer.json, expected);
    let answer = h.get("/api/v1/users/u2/orders").await;
    assert_eq!(answer.json, json!({"user_id": "u2", "orders": []}));
}

/// Proves every read route answers 503 read_model_unavailable when the read
/// model fails (fake with `down` set).
#[tokio::test]
async fn read_model_down_is_503() {
    let reads = FakeReads {
        down: true,
        ..FakeReads::default()
    };
    let h = harness_with(reads, 10);
    for uri in [
        "/api/v1/sales/p1",
        "/api/v1/purchases/r1",
        "/api/v1/users/u1/orders",
    ] {
        let answer = h.get(uri).await;
        assert_eq!(
            (answer.status, code(&answer)),
            (StatusCode::SERVICE_UNAVAILABLE, "read_model_unavailable"),
            "{uri}"
        );
    }
}

/// Proves /metrics renders Prometheus text with the request counter
/// labelled by route template (not the raw path) and status, the latency
/// histogram, the outcome counter and the pending-waiters gauge.
#[tokio::test]
async fn metrics_exposed() {
    let h = harness();
    h.configure("p1", 1).await;
    let _ = h.get("/nowhere").await;
    let answer = h.get("/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    let text = &answer.text;
    assert!(
        text.contains(r#"flashsale_http_requests_total{route="/api/v1/sales",status="201"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"flashsale_http_requests_total{route="unmatched",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("flashsale_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"flashsale_ingress_outcomes_total{reason="",status="accepted"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("flashsale_ingress_pending_waiters 0"),
        "{text}"
    );
    assert!(h
        .metrics
        .render()
        .contains("flashsale_ingress_outcomes_total"));
}

/// Proves the gauge wiring: the pending-waiters gauge follows registrations
/// made through the registry the app uses.
#[tokio::test]
async fn pending_gauge_tracks_waiters() {
    let h = harness();
    let id = RequestId::parse("g1").expect("id");
    let product = ProductId::parse("p1").expect("id");
    let waiter = h.waiters.register(&id, &product).expect("room");
    assert_eq!(h.metrics.pending_waiters.get(), 1);
    drop(waiter);
    assert_eq!(h.metrics.pending_waiters.get(), 0);
}

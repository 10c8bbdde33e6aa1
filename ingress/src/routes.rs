//! The HTTP API: state, router and handlers.
//!
//! | Route | Answer |
//! |---|---|
//! | `POST /api/v1/sales` | 201 sale, 409 `invalid_sale`, 202 pending |
//! | `GET /api/v1/sales/{product_id}` | 200 sale, 404 `unknown_product` |
//! | `POST /api/v1/sales/{product_id}/purchases` | 200 outcome, 404 `unknown_product`, 202 pending |
//! | `GET /api/v1/purchases/{request_id}` | 200 outcome, 404 `not_found` |
//! | `GET /api/v1/users/{user_id}/orders` | 200 orders (newest first, at most 1000) |
//! | `POST /api/v1/products/{product_id}/stock/reserve` | as a purchase (old API) |
//! | `GET /health`, `GET /metrics` | liveness, Prometheus text |

use std::str::FromStr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, State};
use axum::http::{header, HeaderValue, Method, Request as HttpRequest, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tower_http::trace::TraceLayer;

use flashsale_schemas::records::{QUANTITY_MAX, STOCK_MAX};
use flashsale_schemas::view::OutcomeView;
use flashsale_schemas::{
    ConfigureSale, Outcome, OutcomeKind, ProductId, PurchaseRequest, RejectReason, Request,
    RequestId, SaleTerms, Status, UserId,
};

use crate::error::ApiError;
use crate::extract::{ApiJson, Limits, PathId};
use crate::metrics::{track, IngressMetrics, UNMATCHED_ROUTE};
use crate::read_model::{ReadModel, SaleView};
use crate::submit::{Submitted, Submitter};

/// Most orders listed per user.
pub const ORDERS_LIST_MAX: u32 = 1000;
/// Most integer digits of a price (DECIMAL(18,2) columns).
const PRICE_INTEGER_DIGITS_MAX: usize = 16;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Produces requests and waits for their outcomes.
    pub submitter: Arc<dyn Submitter>,
    /// Answers the GET endpoints from Redis/MySQL.
    pub read_model: Arc<dyn ReadModel>,
    /// Metrics, rendered at `/metrics`.
    pub metrics: IngressMetrics,
    /// Body and quantity limits.
    pub limits: Limits,
}

impl FromRef<AppState> for Limits {
    fn from_ref(state: &AppState) -> Self {
        state.limits
    }
}

/// The whole HTTP API, with body limit, metrics and tracing layers.
pub fn app(state: AppState) -> Router {
    let body_limit = DefaultBodyLimit::max(state.limits.body_bytes_max);
    let metrics = state.metrics.clone();
    Router::new()
        .route("/api/v1/sales", post(create_sale))
        .route("/api/v1/sales/{product_id}", get(get_sale))
        .route("/api/v1/sales/{product_id}/purchases", post(purchase))
        .route("/api/v1/purchases/{request_id}", get(get_purchase))
        .route("/api/v1/users/{user_id}/orders", get(user_orders))
        .route("/api/v1/products/{product_id}/stock/reserve", post(reserve))
        .route("/health", get(health))
        .route("/metrics", get(render_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(body_limit)
        .layer(middleware::from_fn_with_state(metrics, track))
        .layer(TraceLayer::new_for_http().make_span_with(http_span))
        .with_state(state)
}

fn http_span(request: &HttpRequest<Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    tracing::info_span!(
        "http",
        method = %request.method(),
        route,
        path = %request.uri().path(),
    )
}

/// Body of `POST /api/v1/sales/{product_id}/purchases`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchaseBody {
    /// The buyer.
    user_id: String,
    /// Units wanted; i64 so out-of-range values are `invalid_quantity`, not
    /// a type error.
    quantity: i64,
    /// Idempotency key; generated (UUID v4) when absent.
    #[serde(default)]
    request_id: Option<String>,
}

/// Body of the old API's `POST /api/v1/products/{id}/stock/reserve`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveBody {
    /// Units wanted.
    quantity: i64,
    /// The caller's order ID: becomes the request ID (idempotency key).
    order_id: String,
    /// The buyer, if the caller knows one.
    #[serde(default)]
    user_id: Option<String>,
}

/// An instant given as RFC 3339 text or as epoch milliseconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeInput {
    /// Milliseconds since the Unix epoch, UTC.
    Millis(i64),
    /// RFC 3339, e.g. `2030-01-01T10:00:00Z`.
    Text(String),
}

/// Body of `POST /api/v1/sales`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaleBody {
    /// The product on sale.
    product_id: String,
    /// Total units, 0..=STOCK_MAX; i64 so bad values are `invalid_sale`.
    stock: i64,
    /// Most units per user, 1..=QUANTITY_MAX.
    per_user_limit: i64,
    /// Unit price as a decimal string (`"9.99"`): never a float.
    price: String,
    /// Opening instant; open at once when absent.
    #[serde(default)]
    starts_at: Option<TimeInput>,
    /// Closing instant (exclusive); no end when absent.
    #[serde(default)]
    ends_at: Option<TimeInput>,
    /// Idempotency key of the command; generated (UUID v4) when absent.
    #[serde(default)]
    command_id: Option<String>,
}

/// A sale as answered by `POST /api/v1/sales` (201) and `GET .../sales/{id}`.
#[derive(Debug, Serialize)]
struct SaleAnswer {
    /// The product.
    product_id: String,
    /// Total units.
    stock: i64,
    /// Most units per user.
    per_user_limit: i32,
    /// Unit price, two decimals.
    price: String,
    /// Opening instant, RFC 3339 UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    starts_at: Option<String>,
    /// Opening instant, epoch ms (same instant as `starts_at`).
    #[serde(skip_serializing_if = "Option::is_none")]
    starts_at_ms: Option<i64>,
    /// Closing instant, RFC 3339 UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
    /// Closing instant, epoch ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    ends_at_ms: Option<i64>,
    /// Units left.
    remaining: i64,
    /// Whether nothing is left (GET only).
    #[serde(skip_serializing_if = "Option::is_none")]
    sold_out: Option<bool>,
    /// The command that configured it (POST only).
    #[serde(skip_serializing_if = "Option::is_none")]
    command_id: Option<String>,
}

/// Body of a 202 answer.
#[derive(Debug, Serialize)]
struct PendingAnswer<'a> {
    /// The request to poll for.
    request_id: &'a str,
    /// Always `pending`.
    status: &'static str,
}

/// Body of `GET /api/v1/users/{user_id}/orders`.
#[derive(Debug, Serialize)]
struct OrdersAnswer {
    /// The user asked about.
    user_id: String,
    /// Newest first.
    orders: Vec<crate::read_model::OrderView>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn check_quantity(quantity: i64, max: i32) -> Result<i32, ApiError> {
    match i32::try_from(quantity) {
        Ok(q) if (1..=max).contains(&q) => Ok(q),
        _ => Err(ApiError::InvalidQuantity { got: quantity, max }),
    }
}

/// The given request ID, validated, or a fresh UUID v4.
fn request_id_or_new(given: Option<&str>) -> Result<RequestId, ApiError> {
    match given {
        Some(id) => Ok(RequestId::parse(id)?),
        None => Ok(RequestId::parse(&uuid::Uuid::new_v4().to_string())?),
    }
}

fn parse_price(text: &str) -> Result<Decimal, ApiError> {
    let bad = || ApiError::InvalidSale(format!("price {text:?} is not a decimal like \"9.99\""));
    let (integer, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let well_formed = !integer.is_empty()
        && integer.len() <= PRICE_INTEGER_DIGITS_MAX
        && digits(integer)
        && digits(fraction)
        && fraction.len() <= 2
        && !text.ends_with('.');
    if !well_formed {
        return Err(bad());
    }
    let mut price = Decimal::from_str(text).map_err(|_| bad())?;
    price.rescale(2);
    Ok(price)
}

fn parse_time(field: &str, input: TimeInput) -> Result<i64, ApiError> {
    let ms = match input {
        TimeInput::Millis(ms) => ms,
        TimeInput::Text(text) => DateTime::parse_from_rfc3339(&text)
            .map_err(|e| ApiError::InvalidSale(format!("{field} {text:?}: {e}")))?
            .timestamp_millis(),
    };
    if ms < 0 {
        return Err(ApiError::InvalidSale(format!("{field} is before 1970")));
    }
    Ok(ms)
}

fn sale_command(body: SaleBody) -> Result<ConfigureSale, ApiError> {
    let product_id = ProductId::parse(&body.product_id)?;
    let command_id = request_id_or_new(body.command_id.as_deref())?;
    if !(0..=STOCK_MAX).contains(&body.stock) {
        let msg = format!("stock {} outside 0..={STOCK_MAX}", body.stock);
        return Err(ApiError::InvalidSale(msg));
    }
    let per_user_limit = i32::try_from(body.per_user_limit)
        .ok()
        .filter(|l| (1..=QUANTITY_MAX).contains(l))
        .ok_or_else(|| {
            let msg = format!(
                "per_user_limit {} outside 1..={QUANTITY_MAX}",
                body.per_user_limit
            );
            ApiError::InvalidSale(msg)
        })?;
    let terms = SaleTerms {
        stock: body.stock,
        per_user_limit,
        price: parse_price(&body.price)?,
        starts_at_ms: body
            .starts_at
            .map(|t| parse_time("starts_at", t))
            .transpose()?,
        ends_at_ms: body.ends_at.map(|t| parse_time("ends_at", t)).transpose()?,
    };
    terms.validate().map_err(ApiError::InvalidSale)?;
    Ok(ConfigureSale {
        command_id,
        product_id,
        terms,
        issued_at_ms: now_ms(),
    })
}

fn rfc3339(ms: Option<i64>) -> Option<String> {
    ms.and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn pending_answer(request_id: &RequestId) -> Response {
    let location = format!("/api/v1/purchases/{request_id}");
    let body = PendingAnswer {
        request_id: request_id.as_str(),
        status: "pending",
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    // Request IDs are [A-Za-z0-9._:@-] only, always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

async fn create_sale(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SaleBody>,
) -> Result<Response, ApiError> {
    let command = sale_command(body)?;
    let command_id = command.command_id.clone();
    let submitted_terms = command.terms.clone();
    match state
        .submitter
        .submit(Request::ConfigureSale(command))
        .await?
    {
        Submitted::Pending => {
            state.metrics.count_pending();
            Ok(pending_answer(&command_id))
        }
        Submitted::Decided(outcome) => {
            state.metrics.count_outcome(&outcome);
            sale_configured_answer(&outcome, &submitted_terms)
        }
    }
}

fn sale_configured_answer(outcome: &Outcome, submitted: &SaleTerms) -> Result<Response, ApiError> {
    if outcome.kind != OutcomeKind::SaleConfigured {
        return Err(ApiError::IdConflict(format!(
            "command_id {} was already used by a purchase",
            outcome.request_id
        )));
    }
    if outcome.status == Status::Rejected {
        let reason = outcome.reason.map_or("rejected", RejectReason::code);
        return Err(ApiError::SaleRejected(format!(
            "the sale terms were refused ({reason}): stock may not go below units already sold"
        )));
    }
    let terms = outcome.sale.as_ref().unwrap_or(submitted);
    let mut price = terms.price;
    price.rescale(2);
    let answer = SaleAnswer {
        product_id: outcome.product_id.to_string(),
        stock: terms.stock,
        per_user_limit: terms.per_user_limit,
        price: price.to_string(),
        starts_at: rfc3339(terms.starts_at_ms),
        starts_at_ms: terms.starts_at_ms,
        ends_at: rfc3339(terms.ends_at_ms),
        ends_at_ms: terms.ends_at_ms,
        remaining: outcome.remaining,
        sold_out: None,
        command_id: Some(outcome.request_id.to_string()),
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

async fn get_sale(
    State(state): State<AppState>,
    PathId(product_id): PathId<ProductId>,
) -> Result<Json<SaleAnswer>, ApiError> {
    let Some(sale) = state.read_model.sale(&product_id).await? else {
        return Err(ApiError::UnknownProduct(product_id.to_string()));
    };
    Ok(Json(sale_answer(&product_id, sale)))
}

fn sale_answer(product_id: &ProductId, sale: SaleView) -> SaleAnswer {
    SaleAnswer {
        product_id: product_id.to_string(),
        stock: sale.stock,
        per_user_limit: sale.per_user_limit,
        price: sale.price,
        starts_at: rfc3339(sale.starts_at_ms),
        starts_at_ms: sale.starts_at_ms,
        ends_at: rfc3339(sale.ends_at_ms),
        ends_at_ms: sale.ends_at_ms,
        remaining: sale.remaining,
        sold_out: Some(sale.remaining <= 0),
        command_id: None,
    }
}

async fn purchase(
    State(state): State<AppState>,
    PathId(product_id): PathId<ProductId>,
    ApiJson(body): ApiJson<PurchaseBody>,
) -> Result<Response, ApiError> {
    let quantity = check_quantity(body.quantity, state.limits.quantity_max)?;
    let purchase = PurchaseRequest {
        request_id: request_id_or_new(body.request_id.as_deref())?,
        user_id: UserId::parse(&body.user_id)?,
        product_id,
        quantity,
        received_at_ms: now_ms(),
    };
    submit_purchase(&state, purchase).await
}

/// The old design's reservation, kept for its clients. That API had no user
/// concept: a reservation named only its order. So the order ID becomes the
/// request ID (a retried reservation is the same purchase), and when no
/// user_id is given the order ID also stands in for the user, which makes
/// the per-user limit apply per order, the old API's behaviour.
async fn reserve(
    State(state): State<AppState>,
    PathId(product_id): PathId<ProductId>,
    ApiJson(body): ApiJson<ReserveBody>,
) -> Result<Response, ApiError> {
    let quantity = check_quantity(body.quantity, state.limits.quantity_max)?;
    let user = body.user_id.as_deref().unwrap_or(&body.order_id);
    let purchase = PurchaseRequest {
        request_id: RequestId::parse(&body.order_id)?,
        user_id: UserId::parse(user)?,
        product_id,
        quantity,
        received_at_ms: now_ms(),
    };
    submit_purchase(&state, purchase).await
}

async fn submit_purchase(
    state: &AppState,
    purchase: PurchaseRequest,
) -> Result<Response, ApiError> {
    let request_id = purchase.request_id.clone();
    match state.submitter.submit(Request::Purchase(purchase)).await? {
        Submitted::Pending => {
            state.metrics.count_pending();
            Ok(pending_answer(&request_id))
        }
        Submitted::Decided(outcome) => {
            state.metrics.count_outcome(&outcome);
            purchase_answer(&outcome)
        }
    }
}

fn purchase_answer(outcome: &Outcome) -> Result<Response, ApiError> {
    if outcome.kind != OutcomeKind::Purchase {
        return Err(ApiError::IdConflict(format!(
            "request_id {} was already used by a sale command",
            outcome.request_id
        )));
    }
    if outcome.reason == Some(RejectReason::UnknownProduct) {
        return Err(ApiError::UnknownProduct(outcome.product_id.to_string()));
    }
    Ok((StatusCode::OK, Json(OutcomeView::from(outcome))).into_response())
}

async fn get_purchase(
    State(state): State<AppState>,
    PathId(request_id): PathId<RequestId>,
) -> Result<Json<OutcomeView>, ApiError> {
    match state.read_model.outcome(&request_id).await? {
        Some(view) => Ok(Json(view)),
        None => Err(ApiError::NotFound(format!(
            "no outcome for request {request_id} (unknown, or not decided yet)"
        ))),
    }
}

async fn user_orders(
    State(state): State<AppState>,
    PathId(user_id): PathId<UserId>,
) -> Result<Json<OrdersAnswer>, ApiError> {
    let orders = state.read_model.orders(&user_id, ORDERS_LIST_MAX).await?;
    Ok(Json(OrdersAnswer {
        user_id: user_id.to_string(),
        orders,
    }))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the price grammar: plain decimals with at most two places and
    /// 16 integer digits pass (normalised to two places); signs, exponents,
    /// separators, blanks and extra places fail as invalid_sale.
    #[test]
    fn price_grammar() {
        assert_eq!(
            parse_price("9.99").map(|p| p.to_string()),
            Ok("9.99".into())
        );
        assert_eq!(parse_price("10").map(|p| p.to_string()), Ok("10.00".into()));
        assert_eq!(parse_price("0.5").map(|p| p.to_string()), Ok("0.50".into()));
        for bad in [
            "", ".5", "5.", "-1", "+1", "1e3", "1_000", " 1", "9.999", "1.2.3",
        ] {
            assert_eq!(
                parse_price(bad).map_err(|e| e.code()),
                Err("invalid_sale"),
                "{bad:?}"
            );
        }
        assert!(parse_price(&"9".repeat(17)).is_err());
    }

    /// Proves quantity bounds: 1..=max pass, 0, negatives, above max and
    /// beyond i32 are invalid_quantity.
    #[test]
    fn quantity_bounds() {
        assert_eq!(check_quantity(1, 100), Ok(1));
        assert_eq!(check_quantity(100, 100), Ok(100));
        for bad in [0, -1, 101, i64::from(i32::MAX) + 1] {
            assert_eq!(
                check_quantity(bad, 100).map_err(|e| e.code()),
                Err("invalid_quantity")
            );
        }
    }

    /// Proves both time notations name the same instant and pre-1970 or
    /// malformed instants are invalid_sale.
    #[test]
    fn time_inputs() {
        let text = TimeInput::Text("2030-01-01T00:00:00Z".into());
        assert_eq!(parse_time("t", text), Ok(1_893_456_000_000));
        assert_eq!(
            parse_time("t", TimeInput::Millis(1_893_456_000_000)),
            Ok(1_893_456_000_000)
        );
        assert!(parse_time("t", TimeInput::Millis(-1)).is_err());
        assert!(parse_time("t", TimeInput::Text("tomorrow".into())).is_err());
        assert_eq!(
            rfc3339(Some(1_893_456_000_000)).as_deref(),
            Some("2030-01-01T00:00:00.000Z")
        );
    }
}

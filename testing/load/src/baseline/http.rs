//! The baselines' HTTP API: the pipeline's request and answer shapes, so the
//! same load generator drives both.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use flashsale_schemas::records::STOCK_MAX;
use flashsale_schemas::{ProductId, RequestId, UserId};

use super::store::{self, Lock, NewSale, StoredOrders};
use super::{decide, redis_lua, Decision, PurchaseInput, Shared};

/// Most units one purchase may ask for (the ingress's default limit).
pub const QUANTITY_MAX: i64 = 100;

/// A JSON error answer, shaped like the ingress's.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    status: StatusCode,
    /// Stable code.
    code: &'static str,
    /// For humans.
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    fn unknown_product(product: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_product",
            format!("no sale for {product}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

/// A store failure is the server's problem, not the client's: 503.
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{e:#}"),
        )
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self::new(e.status(), "invalid_body", e.body_text())
    }
}

/// The routes, over one strategy's shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/sales", post(create_sale))
        .route("/api/v1/sales/{product}", get(get_sale))
        .route("/api/v1/sales/{product}/purchases", post(purchase))
        .route("/api/v1/baseline/stats", get(stats))
        .route("/api/v1/baseline/orders", get(orders))
        .route("/health", get(health))
        .with_state(shared)
}

/// `POST /api/v1/sales` body.
#[derive(Debug, Deserialize)]
struct SaleBody {
    /// The product.
    product_id: String,
    /// Units on sale.
    stock: i64,
    /// Most units per user.
    per_user_limit: i64,
    /// Decimal string (or a JSON number).
    price: Value,
}

async fn create_sale(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<SaleBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let product = ProductId::parse(&body.product_id)
        .map_err(|e| ApiError::invalid("invalid_id", e.to_string()))?;
    if !(0..=STOCK_MAX).contains(&body.stock) || !(1..=QUANTITY_MAX).contains(&body.per_user_limit)
    {
        return Err(ApiError::invalid(
            "invalid_sale",
            "stock or per_user_limit out of range",
        ));
    }
    let price = parse_price(&body.price)?;
    let sale = NewSale {
        product_id: product.as_str(),
        stock: body.stock,
        per_user_limit: body.per_user_limit as i32,
        price: &price,
    };
    if !store::insert_sale(&shared.pool, shared.strategy, &sale).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "sale_exists",
            "baseline sales are configured once; use a fresh product ID",
        ));
    }
    if shared.strategy.uses_lua() {
        redis_lua::configure(&shared, product.as_str(), body.stock, sale.per_user_limit).await?;
        // redis-lua-flag: a (re)configured sale is the only thing that
        // clears this process's sold-out flag.
        shared.sold_out.reset(product.as_str());
    }
    let view = json!({"product_id": product, "stock": body.stock, "remaining": body.stock,
        "per_user_limit": sale.per_user_limit, "price": price, "strategy": shared.strategy.name()});
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

fn parse_price(value: &Value) -> Result<String, ApiError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(ApiError::invalid("invalid_sale", "price must be a decimal")),
    };
    match Decimal::from_str(&text) {
        Ok(d) if !d.is_sign_negative() && d.scale() <= 2 && d < Decimal::from(10_i64.pow(16)) => {
            Ok(d.to_string())
        }
        _ => Err(ApiError::invalid(
            "invalid_sale",
            "price must be >= 0 with at most 2 decimals",
        )),
    }
}

async fn get_sale(
    State(shared): State<Arc<Shared>>,
    Path(product): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut conn = shared.pool.acquire().await.map_err(anyhow::Error::from)?;
    let Some(mut sale) = store::sale(&mut conn, &product, Lock::None).await? else {
        return Err(ApiError::unknown_product(&product));
    };
    // redis-lua(-flag) decides in Redis; MySQL catches up when the worker
    // writes.
    if shared.strategy.uses_lua() {
        if let Some(remaining) = redis_lua::remaining(&shared, &product).await? {
            sale.remaining = remaining;
        }
    }
    let mut view = serde_json::to_value(&sale).map_err(anyhow::Error::from)?;
    view["strategy"] = json!(shared.strategy.name());
    Ok(Json(view))
}

/// `POST /api/v1/sales/{product}/purchases` body.
#[derive(Debug, Deserialize)]
struct PurchaseBody {
    /// The buyer.
    user_id: String,
    /// Units wanted.
    quantity: i64,
    /// Idempotency key; generated when absent.
    request_id: Option<String>,
}

fn validate(product: &str, body: PurchaseBody) -> Result<PurchaseInput, ApiError> {
    let invalid = |e: flashsale_schemas::IdError| ApiError::invalid("invalid_id", e.to_string());
    let product = ProductId::parse(product).map_err(invalid)?;
    let user = UserId::parse(&body.user_id).map_err(invalid)?;
    let request_id = match body.request_id {
        Some(r) => RequestId::parse(&r).map_err(invalid)?.as_str().to_owned(),
        None => uuid::Uuid::now_v7().to_string(),
    };
    if !(1..=QUANTITY_MAX).contains(&body.quantity) {
        return Err(ApiError::invalid(
            "invalid_quantity",
            format!("quantity must be 1..={QUANTITY_MAX}"),
        ));
    }
    Ok(PurchaseInput {
        product: product.as_str().to_owned(),
        user: user.as_str().to_owned(),
        quantity: body.quantity as i32,
        request_id,
    })
}

async fn purchase(
    State(shared): State<Arc<Shared>>,
    Path(product): Path<String>,
    body: Result<Json<PurchaseBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let input = validate(&product, body)?;
    let decision = decide(&shared, &input).await?;
    let mut view = json!({"request_id": input.request_id, "product_id": input.product,
        "user_id": input.user, "quantity": input.quantity, "strategy": shared.strategy.name()});
    match decision {
        Decision::Accepted {
            order_id,
            remaining,
            repeat,
        } => {
            view["status"] = json!("accepted");
            view["order_id"] = json!(order_id);
            view["remaining"] = json!(remaining);
            view["repeat"] = json!(repeat);
        }
        Decision::Rejected { reason, remaining } => {
            view["status"] = json!("rejected");
            view["reason"] = json!(reason);
            view["remaining"] = json!(remaining);
        }
        Decision::UnknownProduct => return Err(ApiError::unknown_product(&input.product)),
    }
    Ok(Json(view))
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<super::StatsView> {
    Json(shared.stats.view(shared.strategy))
}

/// `GET /api/v1/baseline/orders` query.
#[derive(Debug, Deserialize)]
struct OrdersQuery {
    /// Products whose ID starts with this.
    product_prefix: String,
}

async fn orders(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<OrdersQuery>,
) -> Result<Json<BTreeMap<String, StoredOrders>>, ApiError> {
    if q.product_prefix.is_empty() {
        return Err(ApiError::invalid(
            "invalid_query",
            "product_prefix must not be empty",
        ));
    }
    let stored =
        store::orders_by_prefix(&shared.pool, "baseline_orders", &q.product_prefix).await?;
    Ok(Json(stored))
}

async fn health(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"status": "ok", "strategy": shared.strategy.name()}))
}

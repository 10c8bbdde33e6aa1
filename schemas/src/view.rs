//! The JSON view of an outcome: what the HTTP API answers and what the Redis
//! read model stores per request ID, so both always agree byte for byte.

use serde::{Deserialize, Serialize};

use crate::records::Outcome;

/// A decision as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeView {
    /// The request (or command) this answers.
    pub request_id: String,
    /// The product.
    pub product_id: String,
    /// `purchase` or `sale_configured`.
    pub kind: String,
    /// `accepted` or `rejected`.
    pub status: String,
    /// Stable rejection code, when rejected.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// The buyer, for purchases.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_id: Option<String>,
    /// Units requested.
    pub quantity: i32,
    /// The order, when accepted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub order_id: Option<String>,
    /// Unit price as a decimal string, when accepted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unit_price: Option<String>,
    /// Units left after the decision.
    pub remaining: i64,
    /// The user's units of this product after the decision.
    pub user_total: i32,
    /// The input's time, UTC ms.
    pub decided_at_ms: i64,
}

impl From<&Outcome> for OutcomeView {
    fn from(o: &Outcome) -> Self {
        Self {
            request_id: o.request_id.to_string(),
            product_id: o.product_id.to_string(),
            kind: o.kind.code().to_owned(),
            status: o.status.code().to_owned(),
            reason: o.reason.map(|r| r.code().to_owned()),
            user_id: o.user_id.as_ref().map(ToString::to_string),
            quantity: o.quantity,
            order_id: o.order_id.as_ref().map(ToString::to_string),
            unit_price: o.unit_price.map(|p| p.to_string()),
            remaining: o.remaining,
            user_total: o.user_total,
            decided_at_ms: o.decided_at_ms,
        }
    }
}

//! The HTTP shape every benchmarked system answers: configure a sale, buy.
//!
//! `POST {base}/api/v1/sales` `{product_id, stock, per_user_limit, price}`
//! answers 201; `POST {base}/api/v1/sales/{product}/purchases`
//! `{user_id, quantity, request_id}` answers 200
//! `{"status": "accepted" | "rejected", "reason"?}`. Both the pipeline's
//! ingress and every baseline speak it, so one load generator drives all.

use std::time::Duration;

use anyhow::Context;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::workload::Plan;

/// How one attempt (or one logical request) ended, from the client's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 200 `status: accepted`.
    Accepted,
    /// 200 `status: rejected` with its reason (`"unknown"` when absent).
    Rejected(String),
    /// 202: the system took the request but has not decided it yet.
    Pending,
    /// Any other HTTP status.
    Http(u16),
    /// No answer within the client's timeout.
    Timeout,
    /// Connection refused, reset, unreadable body...
    Transport,
}

impl Verdict {
    /// Whether the system gave a decision (accepted or rejected). The other
    /// verdicts leave the client not knowing, so a careful client retries.
    pub fn is_decided(&self) -> bool {
        matches!(self, Verdict::Accepted | Verdict::Rejected(_))
    }

    /// A stable label for reports: `accepted`, the reason, or the error kind.
    pub fn label(&self) -> String {
        match self {
            Verdict::Accepted => "accepted".to_owned(),
            Verdict::Rejected(reason) => reason.clone(),
            Verdict::Pending => "pending_202".to_owned(),
            Verdict::Http(code) => format!("http_{code}"),
            Verdict::Timeout => "timeout".to_owned(),
            Verdict::Transport => "transport".to_owned(),
        }
    }
}

/// The part of a purchase answer the load generator reads. Parsing only
/// these two fields keeps the client cheap at high request rates.
#[derive(Debug, Deserialize)]
struct PurchaseAnswer {
    /// `accepted` or `rejected`.
    status: String,
    /// Why, when rejected.
    reason: Option<String>,
}

/// A system under load, reached over HTTP.
#[derive(Debug, Clone)]
pub struct Target {
    /// Shared connection pool; cloning a `Target` shares it.
    client: reqwest::Client,
    /// Base URL without a trailing slash.
    pub base: String,
}

impl Target {
    /// A client of `base` whose every attempt gives up after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// Configures a sale; errors unless the system answers 201.
    pub async fn configure(
        &self,
        product: &str,
        stock: i64,
        per_user_limit: i32,
    ) -> anyhow::Result<()> {
        let body = json!({"product_id": product, "stock": stock,
            "per_user_limit": per_user_limit, "price": "9.99"});
        let response = self
            .client
            .post(format!("{}/api/v1/sales", self.base))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("configuring {product} at {}", self.base))?;
        let status = response.status();
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "configuring {product} at {}: HTTP {status}: {}",
            self.base,
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Sends one purchase attempt for `plan` of `product`.
    pub async fn purchase(&self, product: &str, plan: &Plan) -> Verdict {
        let body = json!({"user_id": plan.user_id, "quantity": plan.quantity,
            "request_id": plan.request_id});
        let sent = self
            .client
            .post(format!("{}/api/v1/sales/{product}/purchases", self.base))
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Verdict::Timeout,
            Err(_) => return Verdict::Transport,
        };
        match response.status() {
            StatusCode::OK => {}
            StatusCode::ACCEPTED => return Verdict::Pending,
            other => return Verdict::Http(other.as_u16()),
        }
        match response.json::<PurchaseAnswer>().await {
            Ok(a) if a.status == "accepted" => Verdict::Accepted,
            Ok(a) => Verdict::Rejected(a.reason.unwrap_or_else(|| "unknown".to_owned())),
            Err(e) if e.is_timeout() => Verdict::Timeout,
            Err(_) => Verdict::Transport,
        }
    }

    /// Whether `GET {base}/health` answers 200.
    pub async fn healthy(&self) -> bool {
        match self
            .client
            .get(format!("{}/health", self.base))
            .send()
            .await
        {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }
}

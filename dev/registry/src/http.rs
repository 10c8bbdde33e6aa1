//! HTTP plumbing shared by the handlers: the Confluent content type, a
//! query-parameter bag that never rejects, and body reading that ignores the
//! request's content type.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::RegistryError;

/// Content type of every response, as a Confluent registry sends it.
pub const CONTENT_TYPE_V1: &str = "application/vnd.schemaregistry.v1+json";

/// Largest request body read. A 1 MiB schema escaped inside a JSON string can
/// grow past 2 MiB, so the body limit sits well above the schema limit and the
/// schema limit is what clients meet.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A 200 response with a JSON body in the Confluent content type.
pub struct Reply<T>(pub T);

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(json) => raw_json(json),
            Err(e) => RegistryError::Store(format!("cannot encode response: {e}")).into_response(),
        }
    }
}

/// A 200 response whose body is already JSON text (a stored schema).
pub fn raw_json(body: impl Into<Body>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE_V1)],
        body.into(),
    )
        .into_response()
}

/// Query parameters. Clients send many we do not act on (`normalize`,
/// `format`, `fetchMaxId`, ...); they are accepted and ignored, and a query
/// that does not even decode is treated as empty rather than refused.
#[derive(Debug, Default)]
pub struct Params {
    /// The decoded pairs, in order.
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let pairs = match Query::<Vec<(String, String)>>::try_from_uri(&parts.uri) {
            Ok(Query(pairs)) => pairs,
            Err(e) => {
                tracing::debug!(error = %e, "ignoring undecodable query string");
                Vec::new()
            }
        };
        Ok(Self { pairs })
    }
}

impl Params {
    /// The last value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean flag; Python clients send `True`/`False`, so case is ignored.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// Applies `offset` and `limit` (a limit of zero or below means all),
    /// which confluent-kafka sends on every listing call.
    pub fn page<T>(&self, items: Vec<T>) -> Vec<T> {
        let number = |name| self.get(name).and_then(|v| v.parse::<i64>().ok());
        let offset = number("offset")
            .and_then(|o| usize::try_from(o).ok())
            .unwrap_or(0);
        let limit = number("limit")
            .filter(|l| *l > 0)
            .and_then(|l| usize::try_from(l).ok())
            .unwrap_or(usize::MAX);
        items.into_iter().skip(offset).take(limit).collect()
    }
}

/// Reads the body as JSON whatever its content type says: kcat and curl
/// users send `application/octet-stream` or nothing at all.
pub async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, RegistryError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            RegistryError::LimitExceeded(format!(
            "request body could not be read ({e}); bodies are limited to {MAX_BODY_BYTES} bytes"
        ))
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RegistryError::BadRequest(format!("body is not the expected JSON: {e}")))
}

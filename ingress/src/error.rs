//! The one error type of the HTTP API. Every failure, from a malformed body
//! to a broker outage, ends as an [`ApiError`], and every [`ApiError`]
//! becomes the same JSON shape:
//!
//! ```json
//! {"error": {"code": "<stable_code>", "message": "<for humans>"}}
//! ```
//!
//! Codes are stable API: clients branch on them, never on messages.

use axum::extract::rejection::{BytesRejection, FailedToBufferBody, JsonRejection, PathRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flashsale_schemas::IdError;
use serde::Serialize;

/// Why a request failed, with everything needed to answer it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body is not syntactically valid JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// The body could not be read at all (e.g. the client aborted it).
    #[error("{0}")]
    BadRequest(String),
    /// Valid JSON of the wrong shape: wrong types, missing or unknown fields.
    #[error("{0}")]
    InvalidBody(String),
    /// The body is not declared as `application/json`.
    #[error("expected a request with Content-Type: application/json")]
    UnsupportedMediaType,
    /// The body is larger than the configured limit.
    #[error("request body is larger than {limit_bytes} bytes")]
    PayloadTooLarge {
        /// The limit, so the client knows what to send instead.
        limit_bytes: usize,
    },
    /// A quantity outside `1..=max`.
    #[error("quantity {got} outside 1..={max}")]
    InvalidQuantity {
        /// What the client sent.
        got: i64,
        /// The configured maximum.
        max: i32,
    },
    /// An identifier (in the body or the path) that is not a valid ID.
    #[error("{0}")]
    InvalidId(String),
    /// Sale terms that cannot be valid (price, stock, limit, time window).
    #[error("{0}")]
    InvalidSale(String),
    /// Well-formed sale terms the processor refused (e.g. stock below units
    /// already sold).
    #[error("{0}")]
    SaleRejected(String),
    /// An idempotency key already used for a different kind of request.
    #[error("{0}")]
    IdConflict(String),
    /// No sale is configured for the product.
    #[error("no sale is configured for product {0}")]
    UnknownProduct(String),
    /// No such route or no such resource.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not with this method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// Too many requests are waiting for outcomes (or the producer queue is
    /// full): retry later.
    #[error("{0}")]
    Overloaded(String),
    /// The request could not be written to Kafka.
    #[error("{0}")]
    Unavailable(String),
    /// The read model (Redis/MySQL) cannot answer right now.
    #[error("{0}")]
    ReadModelUnavailable(String),
    /// A bug on our side (e.g. our own record failed to encode).
    #[error("{0}")]
    Internal(String),
}

/// The JSON body of an error answer.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    /// The only member, so error bodies never collide with success bodies.
    error: ErrorDetail<'a>,
}

/// The content of an error answer.
#[derive(Debug, Serialize)]
struct ErrorDetail<'a> {
    /// Stable machine-readable code.
    code: &'a str,
    /// Human-readable explanation; may change between versions.
    message: String,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidBody(_)
            | ApiError::InvalidQuantity { .. }
            | ApiError::InvalidId(_)
            | ApiError::InvalidSale(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::SaleRejected(_) | ApiError::IdConflict(_) => StatusCode::CONFLICT,
            ApiError::UnknownProduct(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Overloaded(_)
            | ApiError::Unavailable(_)
            | ApiError::ReadModelUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::InvalidQuantity { .. } => "invalid_quantity",
            ApiError::InvalidId(_) => "invalid_id",
            ApiError::InvalidSale(_) | ApiError::SaleRejected(_) => "invalid_sale",
            ApiError::IdConflict(_) => "id_conflict",
            ApiError::UnknownProduct(_) => "unknown_product",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::ReadModelUnavailable(_) => "read_model_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// Maps a JSON extraction failure, given the body limit in force (axum's
    /// rejection does not carry it).
    pub fn from_json_rejection(rejection: JsonRejection, limit_bytes: usize) -> Self {
        match rejection {
            JsonRejection::JsonSyntaxError(e) => ApiError::InvalidJson(e.body_text()),
            JsonRejection::JsonDataError(e) => ApiError::InvalidBody(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::BytesRejection(BytesRejection::FailedToBufferBody(
                FailedToBufferBody::LengthLimitError(_),
            )) => ApiError::PayloadTooLarge { limit_bytes },
            // Unreadable bodies and any variant a later axum adds.
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<IdError> for ApiError {
    fn from(e: IdError) -> Self {
        ApiError::InvalidId(e.to_string())
    }
}

impl From<PathRejection> for ApiError {
    /// The only path parameters are IDs, so a path that cannot be decoded
    /// (e.g. percent-encoded invalid UTF-8) is an invalid ID.
    fn from(rejection: PathRejection) -> Self {
        ApiError::InvalidId(rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        if status.is_server_error() {
            tracing::warn!(code, error = %self, "request failed on our side");
        } else {
            tracing::debug!(code, error = %self, "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, ApiError::Overloaded(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the status/code table: every variant has the status and code
    /// the API documents, checked variant by variant.
    #[test]
    fn status_and_code_table() {
        let cases = [
            (ApiError::InvalidJson(String::new()), 400, "invalid_json"),
            (ApiError::BadRequest(String::new()), 400, "bad_request"),
            (ApiError::InvalidBody(String::new()), 422, "invalid_body"),
            (
                ApiError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::PayloadTooLarge { limit_bytes: 1 },
                413,
                "payload_too_large",
            ),
            (
                ApiError::InvalidQuantity { got: 0, max: 1 },
                422,
                "invalid_quantity",
            ),
            (ApiError::InvalidId(String::new()), 422, "invalid_id"),
            (ApiError::InvalidSale(String::new()), 422, "invalid_sale"),
            (ApiError::SaleRejected(String::new()), 409, "invalid_sale"),
            (ApiError::IdConflict(String::new()), 409, "id_conflict"),
            (
                ApiError::UnknownProduct(String::new()),
                404,
                "unknown_product",
            ),
            (ApiError::NotFound(String::new()), 404, "not_found"),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed"),
            (ApiError::Overloaded(String::new()), 503, "overloaded"),
            (ApiError::Unavailable(String::new()), 503, "unavailable"),
            (
                ApiError::ReadModelUnavailable(String::new()),
                503,
                "read_model_unavailable",
            ),
            (ApiError::Internal(String::new()), 500, "internal"),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.code(), code, "{error:?}");
        }
    }

    /// Proves overload answers tell clients when to retry, by rendering one
    /// and reading its Retry-After header.
    #[test]
    fn overloaded_has_retry_after() {
        let response = ApiError::Overloaded("busy".into()).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("1"))
        );
    }
}

//! The one error type of the stand-in, rendered the way a Confluent Schema
//! Registry renders errors: `{"error_code": N, "message": "..."}` with the
//! matching HTTP status.
//!
//! Clients branch on `error_code` (confluent-kafka raises `SchemaRegistryError`
//! carrying it, schema_registry_converter retries only on 5xx), so every
//! variant keeps the code a real registry would send for the same situation.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::CONTENT_TYPE_V1;

/// Everything a request can fail with, one variant per Confluent error code.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 40401: no live version under the subject (or no subject at all).
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    /// 40402: the subject exists but not that version.
    #[error("Version {version} not found under subject '{subject}'.")]
    VersionNotFound {
        /// Subject the lookup was made in.
        subject: String,
        /// The version as the client wrote it (a number or `latest`).
        version: String,
    },
    /// 40403: no schema with that id, or the schema is not under the subject.
    #[error("{0}")]
    SchemaNotFound(String),
    /// 40404: soft-deleting a subject that is already soft-deleted.
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    /// 40405: permanent delete of a subject that still has live versions.
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    /// 40406: soft-deleting a version that is already soft-deleted.
    #[error("Version {version} of subject '{subject}' was soft deleted. Set permanent=true to delete permanently")]
    VersionSoftDeleted {
        /// Subject of the version.
        subject: String,
        /// The version number.
        version: u32,
    },
    /// 40407: permanent delete of a version that is still live.
    #[error("Version {version} of subject '{subject}' was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted {
        /// Subject of the version.
        subject: String,
        /// The version number.
        version: u32,
    },
    /// 40408: `GET /config/{subject}` when only the global level applies.
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectConfigNotFound(String),
    /// 409: the schema breaks the subject's compatibility rule.
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", problems.join("; "))]
    Incompatible {
        /// Subject whose rule was broken.
        subject: String,
        /// Why, one entry per problem found, so the developer can fix all at once.
        problems: Vec<String>,
    },
    /// 42201: not a parseable Avro schema, an unsupported type or feature, or too big.
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    /// 42202: a version path segment that is neither a positive number nor `latest`.
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    /// 42203: a compatibility level we do not know.
    #[error("Invalid compatibility level '{0}'. Valid values are NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL and FULL_TRANSITIVE")]
    InvalidCompatibilityLevel(String),
    /// 42205: the stand-in's size bounds would be exceeded.
    #[error("{0}")]
    LimitExceeded(String),
    /// 400: the request body is not the JSON the endpoint expects.
    #[error("Bad request: {0}")]
    BadRequest(String),
    /// 404: no such endpoint.
    #[error("HTTP 404 Not Found")]
    NoRoute,
    /// 405: the endpoint exists but not with that method.
    #[error("HTTP 405 Method Not Allowed")]
    MethodNotAllowed,
    /// 50001: the state file could not be written or a stored schema is unreadable.
    #[error("Error in the backend data store: {0}")]
    Store(String),
}

impl RegistryError {
    /// The HTTP status and Confluent `error_code` of this error.
    pub fn codes(&self) -> (StatusCode, u32) {
        use RegistryError as E;
        match self {
            E::SubjectNotFound(_) => (StatusCode::NOT_FOUND, 40401),
            E::VersionNotFound { .. } => (StatusCode::NOT_FOUND, 40402),
            E::SchemaNotFound(_) => (StatusCode::NOT_FOUND, 40403),
            E::SubjectSoftDeleted(_) => (StatusCode::NOT_FOUND, 40404),
            E::SubjectNotSoftDeleted(_) => (StatusCode::NOT_FOUND, 40405),
            E::VersionSoftDeleted { .. } => (StatusCode::NOT_FOUND, 40406),
            E::VersionNotSoftDeleted { .. } => (StatusCode::NOT_FOUND, 40407),
            E::SubjectConfigNotFound(_) => (StatusCode::NOT_FOUND, 40408),
            E::Incompatible { .. } => (StatusCode::CONFLICT, 409),
            E::InvalidSchema(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42201),
            E::InvalidVersion(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42202),
            E::InvalidCompatibilityLevel(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42203),
            E::LimitExceeded(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42205),
            E::BadRequest(_) => (StatusCode::BAD_REQUEST, 400),
            E::NoRoute => (StatusCode::NOT_FOUND, 404),
            E::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, 405),
            E::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, 50001),
        }
    }
}

/// The JSON body of every error response.
#[derive(Serialize)]
struct ErrorBody {
    /// Confluent's numeric code; clients match on it rather than on the text.
    error_code: u32,
    /// Human-readable explanation for whoever reads the client's exception.
    message: String,
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (status, error_code) = self.codes();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        let body = ErrorBody {
            error_code,
            message: self.to_string(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        (
            status,
            [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE_V1)],
            json,
        )
            .into_response()
    }
}

//! Request extractors whose every failure is an [`ApiError`], so no axum
//! plain-text rejection ever reaches a client.

use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::Json;
use flashsale_schemas::{IdError, ProductId, RequestId, UserId};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Limits the extractors and handlers enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted body, in bytes (also installed as axum's
    /// `DefaultBodyLimit`; kept here to name it in the 413 answer).
    pub body_bytes_max: usize,
    /// Largest quantity one purchase may ask for, in units.
    pub quantity_max: i32,
}

/// A JSON body: axum's [`Json`] with its rejections mapped to
/// `invalid_json` (400), `invalid_body` (422), `unsupported_media_type` (415)
/// and `payload_too_large` (413).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
    Limits: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limits = Limits::from_ref(state);
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::from_json_rejection(
                rejection,
                limits.body_bytes_max,
            )),
        }
    }
}

/// An identifier type that can come from a path segment.
pub trait PathIdType: Sized {
    /// Validates a decoded path segment.
    fn parse_segment(s: &str) -> Result<Self, IdError>;
}

impl PathIdType for ProductId {
    fn parse_segment(s: &str) -> Result<Self, IdError> {
        ProductId::parse(s)
    }
}

impl PathIdType for RequestId {
    fn parse_segment(s: &str) -> Result<Self, IdError> {
        RequestId::parse(s)
    }
}

impl PathIdType for UserId {
    fn parse_segment(s: &str) -> Result<Self, IdError> {
        UserId::parse(s)
    }
}

/// The single path parameter of a route, validated as an ID; any failure is
/// `invalid_id` (422).
#[derive(Debug)]
pub struct PathId<T>(pub T);

impl<S, T> FromRequestParts<S> for PathId<T>
where
    S: Send + Sync,
    T: PathIdType,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(Self(T::parse_segment(&raw)?))
    }
}

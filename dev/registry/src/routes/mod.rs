//! The router: which path and method reach which handler.

mod config;
mod schemas;
mod subjects;

use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use crate::error::RegistryError;
use crate::http::Reply;
use crate::AppState;

/// Builds the router over `state`. Every route answers in the Confluent
/// content type; unknown paths and methods get Confluent-style JSON errors.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Reply(json!({})) }))
        .route("/health", get(health))
        .route(
            "/schemas/types",
            get(|| async { Reply([crate::avro::AVRO]) }),
        )
        .route("/schemas/ids/{id}", get(schemas::by_id))
        .route("/schemas/ids/{id}/schema", get(schemas::raw_by_id))
        .route("/schemas/ids/{id}/versions", get(schemas::versions_of_id))
        .route("/schemas/ids/{id}/subjects", get(schemas::subjects_of_id))
        .route("/subjects", get(subjects::list))
        .route(
            "/subjects/{subject}",
            post(subjects::lookup).delete(subjects::delete),
        )
        .route(
            "/subjects/{subject}/versions",
            get(subjects::versions).post(subjects::register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(subjects::version).delete(subjects::delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(subjects::raw_version),
        )
        .route(
            "/config",
            get(config::get_global)
                .put(config::put_global)
                .delete(config::delete_global),
        )
        .route(
            "/config/{subject}",
            get(config::get_subject)
                .put(config::put_subject)
                .delete(config::delete_subject),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(config::test_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(config::test_version),
        )
        .fallback(|| async { RegistryError::NoRoute })
        .method_not_allowed_fallback(|| async { RegistryError::MethodNotAllowed })
        .with_state(state)
}

/// Liveness for our scripts; also says plainly what this server is.
async fn health() -> Reply<serde_json::Value> {
    Reply(json!({
        "status": "UP",
        "server": "flashsale-dev-registry (development stand-in, not for production)",
    }))
}

//! `/subjects/...`: registering, looking up, listing and deleting versions.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;

use crate::avro::SchemaRequest;
use crate::error::RegistryError;
use crate::http::{raw_json, read_json, Params, Reply};
use crate::store::{Registered, VersionSel};
use crate::AppState;

/// `GET /subjects` (`deleted`, `subjectPrefix`, `offset`, `limit` honoured).
pub async fn list(State(state): State<AppState>, params: Params) -> Reply<Vec<String>> {
    let store = state.store.lock().await;
    let prefix = params.get("subjectPrefix").unwrap_or("");
    let subjects = store
        .subjects(params.flag("deleted"))
        .into_iter()
        .filter(|s| s.starts_with(prefix))
        .collect();
    Reply(params.page(subjects))
}

/// `POST /subjects/{subject}/versions`: register, or return the existing
/// version when the same schema is already live under the subject.
///
/// The answer carries `id` (all clients need), plus `subject`, `version` and
/// `schema`, which confluent-kafka's `register_schema_full_response` reads
/// into its `RegisteredSchema` and caches.
pub async fn register(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    body: Body,
) -> Result<Reply<Registered>, RegistryError> {
    // Parsing (up to 1 MiB of schema) happens before taking the lock.
    let cand = read_json::<SchemaRequest>(body).await?.into_candidate()?;
    let mut store = state.store.lock().await;
    let (registered, changed) = store.register(&subject, &cand)?;
    if changed {
        store.save().await?;
        tracing::info!(
            subject = %registered.subject,
            version = registered.version,
            id = registered.id,
            "registered schema"
        );
    }
    Ok(Reply(registered))
}

/// `POST /subjects/{subject}`: which version of the subject holds this
/// schema (`deleted=true` also searches soft-deleted versions).
pub async fn lookup(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    params: Params,
    body: Body,
) -> Result<Reply<Registered>, RegistryError> {
    let cand = read_json::<SchemaRequest>(body).await?.into_candidate()?;
    let store = state.store.lock().await;
    Ok(Reply(store.lookup(
        &subject,
        &cand,
        params.flag("deleted"),
    )?))
}

/// `DELETE /subjects/{subject}` (`permanent=true` after a soft delete).
pub async fn delete(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    params: Params,
) -> Result<Reply<Vec<u32>>, RegistryError> {
    let permanent = params.flag("permanent");
    let mut store = state.store.lock().await;
    let deleted = store.delete_subject(&subject, permanent)?;
    store.save().await?;
    tracing::info!(%subject, ?deleted, permanent, "deleted subject");
    Ok(Reply(deleted))
}

/// `GET /subjects/{subject}/versions` (`deleted`, `offset`, `limit` honoured).
pub async fn versions(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    params: Params,
) -> Result<Reply<Vec<u32>>, RegistryError> {
    let store = state.store.lock().await;
    let numbers = store.version_numbers(&subject, params.flag("deleted"))?;
    Ok(Reply(params.page(numbers)))
}

/// `GET /subjects/{subject}/versions/{version|latest|-1}`.
pub async fn version(
    State(state): State<AppState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
) -> Result<Reply<Registered>, RegistryError> {
    let sel = VersionSel::parse(&version)?;
    let store = state.store.lock().await;
    Ok(Reply(store.version(
        &subject,
        sel,
        params.flag("deleted"),
    )?))
}

/// `GET /subjects/{subject}/versions/{version}/schema`: the schema document.
pub async fn raw_version(
    State(state): State<AppState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
) -> Result<Response, RegistryError> {
    let sel = VersionSel::parse(&version)?;
    let store = state.store.lock().await;
    let found = store.version(&subject, sel, params.flag("deleted"))?;
    Ok(raw_json(found.schema))
}

/// `DELETE /subjects/{subject}/versions/{version}` (`permanent=true` after a
/// soft delete). Answers the deleted version number.
pub async fn delete_version(
    State(state): State<AppState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
) -> Result<Reply<u32>, RegistryError> {
    let sel = VersionSel::parse(&version)?;
    let permanent = params.flag("permanent");
    let mut store = state.store.lock().await;
    let deleted = store.delete_version(&subject, sel, permanent)?;
    store.save().await?;
    tracing::info!(%subject, version = deleted, permanent, "deleted version");
    Ok(Reply(deleted))
}

//! `/schemas/ids/...`: schemas by global id, which is what a consumer holds
//! after reading the wire-format prefix of a record.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Serialize;

use crate::error::RegistryError;
use crate::http::{raw_json, Params, Reply};
use crate::AppState;

/// Body of `GET /schemas/ids/{id}`.
#[derive(Serialize)]
pub struct SchemaString {
    /// The schema text. `schemaType` is left out for Avro, as Confluent does;
    /// both clients default it to AVRO.
    schema: String,
}

/// One entry of `GET /schemas/ids/{id}/versions`.
#[derive(Serialize)]
pub struct SubjectVersion {
    /// A subject using the schema.
    subject: String,
    /// The version under that subject.
    version: u32,
}

/// Parses the id segment; a non-number cannot name a schema, hence 40403.
fn parse_id(text: &str) -> Result<u32, RegistryError> {
    text.parse()
        .map_err(|_| RegistryError::SchemaNotFound(format!("Schema {text} not found")))
}

/// `GET /schemas/ids/{id}`. `subject`, `format` and `deleted` are ignored:
/// ids are never removed, so every id ever issued resolves.
pub async fn by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Reply<SchemaString>, RegistryError> {
    let id = parse_id(&id)?;
    let store = state.store.lock().await;
    let schema = store.schema_by_id(id)?.to_owned();
    Ok(Reply(SchemaString { schema }))
}

/// `GET /schemas/ids/{id}/schema`: the schema document itself.
pub async fn raw_by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, RegistryError> {
    let id = parse_id(&id)?;
    let store = state.store.lock().await;
    Ok(raw_json(store.schema_by_id(id)?.to_owned()))
}

/// `GET /schemas/ids/{id}/versions` (`deleted`, `offset`, `limit` honoured).
pub async fn versions_of_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Reply<Vec<SubjectVersion>>, RegistryError> {
    let id = parse_id(&id)?;
    let store = state.store.lock().await;
    let found = store
        .usages(id, params.flag("deleted"))?
        .into_iter()
        .map(|(subject, version)| SubjectVersion { subject, version })
        .collect();
    Ok(Reply(params.page(found)))
}

/// `GET /schemas/ids/{id}/subjects` (`deleted`, `offset`, `limit` honoured).
pub async fn subjects_of_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Reply<Vec<String>>, RegistryError> {
    let id = parse_id(&id)?;
    let store = state.store.lock().await;
    let mut subjects: Vec<String> = store
        .usages(id, params.flag("deleted"))?
        .into_iter()
        .map(|(subject, _)| subject)
        .collect();
    subjects.dedup();
    Ok(Reply(params.page(subjects)))
}

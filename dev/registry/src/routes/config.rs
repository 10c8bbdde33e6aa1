//! `/config/...` and `/compatibility/...`: compatibility levels and dry-run checks.

use axum::body::Body;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use crate::avro::SchemaRequest;
use crate::compatibility::Level;
use crate::error::RegistryError;
use crate::http::{read_json, Params, Reply};
use crate::store::VersionSel;
use crate::AppState;

/// Body of `PUT /config[/{subject}]`.
#[derive(Deserialize)]
pub struct ConfigRequest {
    /// The level, as `set_compatibility` and curl users send it.
    compatibility: Option<String>,
    /// The level under the name `ServerConfig.to_dict` may use instead.
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

/// Answer of the `GET`/`DELETE` config calls.
#[derive(Serialize)]
pub struct LevelReply {
    /// The level in force (GET) or the one removed (DELETE).
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: &'static str,
}

/// Answer of the `PUT` config calls, which Confluent words differently.
#[derive(Serialize)]
pub struct UpdateReply {
    /// The level now set.
    compatibility: &'static str,
}

/// Answer of the compatibility test calls.
#[derive(Serialize)]
pub struct CompatibilityReply {
    /// Whether registering would pass the check.
    is_compatible: bool,
    /// The reasons, only with `verbose=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<String>>,
}

/// Reads the level from a config body, 42203 if missing or unknown.
async fn read_level(body: Body) -> Result<Level, RegistryError> {
    let req: ConfigRequest = read_json(body).await?;
    let text = req
        .compatibility
        .or(req.compatibility_level)
        .unwrap_or_default();
    Level::parse(&text).ok_or(RegistryError::InvalidCompatibilityLevel(text))
}

/// `GET /config`.
pub async fn get_global(State(state): State<AppState>) -> Reply<LevelReply> {
    let level = state.store.lock().await.global_level();
    Reply(LevelReply {
        compatibility_level: level.as_str(),
    })
}

/// `PUT /config`.
pub async fn put_global(
    State(state): State<AppState>,
    body: Body,
) -> Result<Reply<UpdateReply>, RegistryError> {
    let level = read_level(body).await?;
    let mut store = state.store.lock().await;
    if store.set_global_level(level) {
        store.save().await?;
        tracing::info!(level = level.as_str(), "global compatibility set");
    }
    Ok(Reply(UpdateReply {
        compatibility: level.as_str(),
    }))
}

/// `DELETE /config`: back to the default (BACKWARD); answers the old level.
pub async fn delete_global(
    State(state): State<AppState>,
) -> Result<Reply<LevelReply>, RegistryError> {
    let mut store = state.store.lock().await;
    let old = store.global_level();
    if store.set_global_level(Level::default()) {
        store.save().await?;
    }
    Ok(Reply(LevelReply {
        compatibility_level: old.as_str(),
    }))
}

/// `GET /config/{subject}`: 40408 when the subject has no level of its own,
/// unless `defaultToGlobal=true`.
pub async fn get_subject(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    params: Params,
) -> Result<Reply<LevelReply>, RegistryError> {
    let store = state.store.lock().await;
    let level = match store.subject_level(&subject) {
        Some(level) => level,
        None if params.flag("defaultToGlobal") => store.global_level(),
        None => return Err(RegistryError::SubjectConfigNotFound(subject)),
    };
    Ok(Reply(LevelReply {
        compatibility_level: level.as_str(),
    }))
}

/// `PUT /config/{subject}` (the subject need not exist yet).
pub async fn put_subject(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    body: Body,
) -> Result<Reply<UpdateReply>, RegistryError> {
    let level = read_level(body).await?;
    let mut store = state.store.lock().await;
    if store.set_subject_level(&subject, level) {
        store.save().await?;
        tracing::info!(%subject, level = level.as_str(), "subject compatibility set");
    }
    Ok(Reply(UpdateReply {
        compatibility: level.as_str(),
    }))
}

/// `DELETE /config/{subject}`: the global level applies again; answers the old one.
pub async fn delete_subject(
    State(state): State<AppState>,
    Path(subject): Path<String>,
) -> Result<Reply<LevelReply>, RegistryError> {
    let mut store = state.store.lock().await;
    let old = store.delete_subject_level(&subject)?;
    store.save().await?;
    Ok(Reply(LevelReply {
        compatibility_level: old.as_str(),
    }))
}

/// Shapes a list of problems into the compatibility answer.
fn verdict(problems: Vec<String>, params: &Params) -> Reply<CompatibilityReply> {
    Reply(CompatibilityReply {
        is_compatible: problems.is_empty(),
        messages: params.flag("verbose").then_some(problems),
    })
}

/// `POST /compatibility/subjects/{subject}/versions/{version|latest}`: would
/// the schema pass the subject's level against that one version?
pub async fn test_version(
    State(state): State<AppState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
    body: Body,
) -> Result<Reply<CompatibilityReply>, RegistryError> {
    let sel = VersionSel::parse(&version)?;
    let cand = read_json::<SchemaRequest>(body).await?.into_candidate()?;
    let store = state.store.lock().await;
    let problems = store.problems_against(&subject, sel, &cand.parsed)?;
    Ok(verdict(problems, &params))
}

/// `POST /compatibility/subjects/{subject}/versions`: would registering pass?
pub async fn test_all(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    params: Params,
    body: Body,
) -> Result<Reply<CompatibilityReply>, RegistryError> {
    let cand = read_json::<SchemaRequest>(body).await?.into_candidate()?;
    let store = state.store.lock().await;
    let problems = store.problems_against_all(&subject, &cand.parsed)?;
    Ok(verdict(problems, &params))
}

//! # flashsale-dev-registry — a DEVELOPMENT STAND-IN for the Confluent Schema Registry
//!
//! **Not for production.** Production points every service at a real
//! Confluent Schema Registry. This crate exists so that a laptop, the e2e
//! tests and CI can run the flash-sale pipeline without a JVM: it speaks the
//! subset of the Schema Registry REST API that our clients use
//! (schema_registry_converter in Rust, confluent-kafka's
//! `SchemaRegistryClient`/`AvroSerializer`/`AvroDeserializer` in Python,
//! kcat), keeps its state in one JSON file, supports Avro only, and has no
//! authentication, clustering, schema references, modes, contexts or rules.
//!
//! ## Layout
//!
//! * [`app`] (here) builds the axum [`Router`] over an [`AppState`], so tests
//!   drive it with `tower::ServiceExt::oneshot` and `main.rs` serves it.
//! * `routes/` — one handler per endpoint (`subjects.rs`, `schemas.rs`,
//!   `config.rs` for config and compatibility tests).
//! * [`store`] — subjects → versions → global schema ids, id sharing across
//!   subjects, soft/permanent deletes, levels, and the atomically written
//!   state file with its bounds ([`store::MAX_SCHEMAS`]).
//! * [`compatibility`] — levels and the Avro reader/writer check, built on
//!   apache-avro's checker with the union and reference handling it lacks.
//! * [`avro`] — parsing a submitted schema, its size bound and identity key.
//! * [`error`] — [`RegistryError`], rendered as Confluent's
//!   `{"error_code": N, "message": "..."}` with the matching HTTP status.
//! * `http.rs` — content type, lenient query parameters and body reading.
//! * `main.rs` — flags, logging, signal handling and graceful shutdown.
//! * `tests/api.rs` drives every endpoint through `oneshot`;
//!   `tests/converter_interop.rs` runs schema_registry_converter against the
//!   router over real HTTP. The Python client is covered by
//!   `e2e/python/test_registry_standin.py`.

pub mod avro;
pub mod compatibility;
pub mod error;
mod http;
mod routes;
pub mod store;

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use tokio::sync::Mutex;

pub use error::RegistryError;
pub use http::CONTENT_TYPE_V1;
use store::Store;

/// Printed at start so nobody mistakes this server for the real thing.
pub const BANNER: &str = "\
*******************************************************************************
* flashsale-dev-registry: DEVELOPMENT STAND-IN for a Confluent Schema Registry *
* NOT FOR PRODUCTION. Production points at a real Confluent Schema Registry.  *
*******************************************************************************";

/// Shared state of the server: the store behind one async lock, so requests
/// see changes in order and each change is on disk before it is answered.
#[derive(Clone)]
pub struct AppState {
    /// The registry contents; held across the file write of a change.
    store: Arc<Mutex<Store>>,
}

impl AppState {
    /// Opens (or creates) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        Ok(Self::from_store(Store::open(data_dir)?))
    }

    /// Wraps an already opened store.
    pub fn from_store(store: Store) -> Self {
        Self {
            store: Arc::new(Mutex::new(store)),
        }
    }
}

/// The HTTP application: every endpoint of the stand-in.
pub fn app(state: AppState) -> Router {
    routes::router(state)
}

//! # flashsale-schemas: the contract every flashsale crate shares
//!
//! The stream is the API. This crate holds everything that two parties must
//! agree on byte for byte, and nothing else (no Kafka client, no HTTP
//! server, no store): a producer in another language needs exactly this.
//!
//! * [`ids`]: validated newtype identifiers (product, user, request, order).
//! * [`records`]: the Rust types of every record on every topic.
//! * [`avro`]: the Avro schemas (`schemas/avro/*.avsc`, the source of truth)
//!   and the conversions between them and [`records`], resolved by field name
//!   so that readers survive compatible schema evolution.
//! * [`wire`]: the Confluent wire format (magic byte, 4-byte schema ID, body).
//! * `registry` (feature `registry`, on by default): schema registration
//!   (TopicNameStrategy, BACKWARD) and the encode/decode entry points,
//!   through `schema_registry_converter`.
//! * [`partition`]: Java-compatible murmur2, the only partitioner allowed on
//!   the requests topic (rule: one writer per partition).
//! * [`names`]: the names other systems see: default topic names, MySQL
//!   table names and Redis key names, each spelled once.
//! * [`view`]: the JSON view of an outcome (HTTP answers, Redis read model).
//!
//! May depend on: serialisation crates and the registry client only. The
//! services' plumbing lives in `flashsale-runtime`, the decisions in
//! `flashsale-core`.
#![forbid(unsafe_code)]

pub mod avro;
pub mod ids;
pub mod names;
pub mod partition;
pub mod records;
#[cfg(feature = "registry")]
pub mod registry;
pub mod view;
pub mod wire;

pub use ids::{IdError, OrderId, ProductId, RequestId, UserId};
pub use records::{
    ConfigureSale, DeadLetter, Outcome, OutcomeKind, PurchaseRequest, RejectReason, Request,
    SaleTerms, SnapshotChunk, Status,
};

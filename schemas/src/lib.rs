//! # flashsale-schemas: the contract every flashsale crate shares
//!
//! The stream is the API. This crate holds everything that two parties must
//! agree on byte for byte, plus the small amount of plumbing every service
//! needs to honour it:
//!
//! * [`ids`]: validated newtype identifiers (product, user, request, order).
//! * [`records`]: the Rust types of every record on every topic.
//! * [`avro`]: the Avro schemas (`schemas/avro/*.avsc`, the source of truth)
//!   and the conversions between them and [`records`], resolved by field name
//!   so that readers survive compatible schema evolution.
//! * [`wire`]: the Confluent wire format (magic byte, 4-byte schema ID, body).
//! * [`registry`]: schema registration (TopicNameStrategy, BACKWARD) and the
//!   encode/decode entry points, through `schema_registry_converter`.
//! * [`partition`]: Java-compatible murmur2, the only partitioner allowed on
//!   the requests topic (rule: one writer per partition).
//! * [`config`]: command-line / environment settings shared by all services.
//! * [`kafka`]: librdkafka client settings, each one chosen and explained.
//! * [`runtime`]: tracing, the shutdown tree and the ops HTTP endpoint.
//! * [`view`]: the JSON view of an outcome (HTTP answers, Redis read model).
#![forbid(unsafe_code)]

pub mod avro;
pub mod config;
pub mod ids;
pub mod kafka;
pub mod partition;
pub mod records;
pub mod registry;
pub mod runtime;
pub mod view;
pub mod wire;

pub use ids::{IdError, OrderId, ProductId, RequestId, UserId};
pub use records::{
    ConfigureSale, DeadLetter, Outcome, OutcomeKind, PurchaseRequest, RejectReason, Request,
    SaleTerms, SnapshotChunk, Status,
};

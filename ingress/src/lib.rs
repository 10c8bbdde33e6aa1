//! # flashsale-ingress: the HTTP front of the pipeline
//!
//! A thin, stateless service. A purchase (or an admin sale command) is
//! validated, written to the requests topic (key = product ID, value =
//! Confluent-framed Avro), and then the ingress **waits for that record's
//! outcome** on the outcomes topic and answers with the decision. When the
//! outcome takes longer than the wait budget, the answer is 202 with a
//! `Location` to poll, served from the read model the sinks maintain.
//!
//! Any number of instances can run side by side: each one reads every
//! partition of the outcomes topic, so it sees the outcomes of the requests
//! it produced whichever processor decided them.
//!
//! Layout:
//! * [`config`]: flags and environment (`--help` lists them).
//! * [`error`]: [`error::ApiError`], the one error type, and its JSON answer.
//! * [`extract`]: body and path extractors that fail only with `ApiError`.
//! * [`routes`]: [`routes::AppState`], [`routes::app`] and the handlers.
//! * [`submit`]: encode, produce, wait ([`submit::Submitter`]).
//! * [`outcomes`]: the waiter registry and the outcome listener.
//! * [`read_model`]: Redis and MySQL reads ([`read_model::ReadModel`]).
//! * [`metrics`]: Prometheus metrics and the per-request middleware.
//!
//! The write side ([`submit::Submitter`]) and the read side
//! ([`read_model::ReadModel`]) are traits, so [`routes::app`] is tested
//! with in-memory fakes (`tests/api.rs`); those tests prove routing,
//! validation and error mapping only, nothing end to end.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod outcomes;
pub mod read_model;
pub mod routes;
pub mod submit;

pub use error::ApiError;
pub use routes::{app, AppState};

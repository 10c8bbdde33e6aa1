//! # flashsale-sinks: idempotent projections of the outcomes topic
//!
//! Sink workers consume the outcomes topic in their own consumer group per
//! store and keep read models for people and the HTTP API:
//!
//! * [`mysql`]: sales, orders, every outcome, per-user totals and a stock
//!   projection, one transaction per polled batch.
//! * [`redis_store`]: remaining stock and a sold-out flag per product, the
//!   outcome per request ID (with a TTL), one pipeline per batch.
//! * [`fold`]: reduces a batch to the newest value per key, by input offset,
//!   so each store does one write per product instead of one per outcome.
//! * [`runner`]: the consume → write → commit loop, retrying store outages
//!   with bounded backoff and never skipping an outcome.
//!
//! Outcomes may arrive twice (processor replays, zombies): every write is an
//! upsert by request ID, or a monotonic update guarded by the input offset,
//! so a repeat changes nothing.
#![forbid(unsafe_code)]

pub mod config;
pub mod fold;
pub mod metrics;
pub mod mysql;
pub mod redis_store;
pub mod runner;

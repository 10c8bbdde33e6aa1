//! # flashsale-runtime: what every flashsale service runs on
//!
//! The contract (`flashsale-schemas`) says what the bytes mean; this crate
//! is the plumbing the services share to move them, so that each rule is
//! written once:
//!
//! * [`config`]: flags and `FLASHSALE_*` variables every service takes
//!   (brokers, topics, registry, stores, logging).
//! * [`kafka`]: librdkafka client settings, each option chosen and
//!   explained; [`kafka::collect_batch`], the one batch-polling loop.
//! * [`group`]: consumer-group helpers: the logging context and the stall
//!   watch that repairs a group left with unowned partitions.
//! * [`topics`]: partition IDs and counts of a topic.
//! * [`retry`]: the one bounded-backoff retry loop; it honours shutdown.
//! * [`ops`]: tracing set-up, the shutdown tree and the ops HTTP endpoint
//!   (`/health`, `/metrics`).
//!
//! May depend on: the contract, the Kafka client, tokio, axum (ops only),
//! prometheus and tracing. Never on a store client or a service crate.
#![forbid(unsafe_code)]

pub mod config;
pub mod group;
pub mod kafka;
pub mod ops;
pub mod retry;
pub mod topics;

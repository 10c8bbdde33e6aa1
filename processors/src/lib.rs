//! # flashsale-processors: single-writer stream processors
//!
//! Each partition of the requests topic has exactly one owner in the consumer
//! group; the owner keeps that partition's state in memory and is the only
//! writer of the stock of every product whose key hashes to it. No locks: the
//! partition *is* the lock, and the log order *is* the serialisation order.
//!
//! The decisions themselves are `flashsale-core`'s pure function; this
//! crate feeds it records and carries its outcomes to the broker. Layout:
//!
//! * [`classify`]: turns a raw record into "decide this request" or "dead
//!   letter it, because...", classified by whose fault it is.
//! * [`replay`]: reads a range of a partition's log outside the group, to
//!   rebuild state on assignment and to fill gaps.
//! * [`runner`]: the consumer-group loop: poll a batch, decide, produce the
//!   outcomes, await the broker's acks, then commit; restore partitions on
//!   assignment and snapshot them when due.
//! * [`rebalance`]: the consumer context that records partition assignments
//!   and revocations for the loop to act on between batches.
//! * [`apply`]: applies one record (or a replayed range) to a partition's
//!   state, emitting when live and silently when restoring.
//! * [`emitter`]: produces outcomes and dead letters and tracks their
//!   acknowledgements, handing out commit lists in log order only.
//! * [`error`]: why the loop stops, and the bounded, shutdown-aware retry of
//!   blocking broker calls.
//! * [`snapshot_store`]: writes snapshots to, and finds them on, the snapshots topic.
//! * [`config`]: flags and environment.
//! * [`metrics`]: Prometheus counters.
#![forbid(unsafe_code)]

pub mod apply;
pub mod classify;
pub mod config;
pub mod emitter;
pub mod error;
pub mod metrics;
pub mod rebalance;
pub mod replay;
pub mod runner;
pub mod snapshot_store;

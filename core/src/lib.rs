//! # flashsale-core: the decision, and nothing else
//!
//! Every stock change in flashsale is made here, by a pure function
//! `(state, input record) -> (state', outcome)`: no clock, no randomness, no
//! I/O. The processors call it; this crate knows nothing of Kafka, HTTP or
//! stores, so its tests and benchmark build in seconds.
//!
//! * [`decide`]: [`PartitionState`] (sales, stock, per-user totals, the
//!   bounded dedupe memory of request IDs) and [`PartitionState::decide`].
//! * [`snapshot`]: the deterministic binary encoding of a [`PartitionState`]
//!   (equal states encode to equal bytes), read back on restore.
//!
//! Tests: `tests/decisions.rs` (property tests: no oversell, per-user
//! limits, decide-once, identical replay, snapshot restore). Benchmark:
//! `benches/decide.rs` (decisions per second on the flash-sale mix).
//!
//! May depend on: `flashsale-schemas` (the contract) and pure crates.
#![forbid(unsafe_code)]

pub mod decide;
pub mod snapshot;

pub use decide::{Decision, DedupeLimits, IdMap, PartitionState, Position, RequestKey, Sale};

//! # The load generator and the side-by-side benchmark
//!
//! * [`workload`]: the flash-sale demand: many users, Zipf-skewed products,
//!   demand far above stock, some clients retrying with the same request ID;
//! * [`target`]: the HTTP shape every benchmarked system answers;
//! * [`driver`]: open loop at a fixed rate (latency from the intended send
//!   time) or closed loop over N connections;
//! * [`tally`]: counts, HdrHistogram latencies and the [`tally::Report`];
//! * [`bench`]: one scenario against one system, then the stores' own
//!   account of what was sold (oversold units, persisted orders);
//! * [`chart`]: the SVG chart of a benchmark.
//!
//! `flashsale-loadgen` drives one system; `flashsale-bench` runs the same
//! workloads against every baseline of `crate::baseline` and the pipeline.

pub mod bench;
pub mod chart;
pub mod driver;
pub mod tally;
pub mod target;
pub mod workload;

pub use driver::{run, DriverConfig, Mode, Sample};
pub use tally::{Report, Tally};
pub use target::{Target, Verdict};
pub use workload::{Plan, Workload, WorkloadSpec};

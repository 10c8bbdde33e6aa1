//! # flashsale-load: load, baselines and benchmarks
//!
//! * [`workload`]: the flash-sale demand: many users, Zipf-skewed products,
//!   demand far above stock, some clients retrying with the same request ID;
//! * [`target`]: the HTTP shape every benchmarked system answers;
//! * [`client`]: how clients pace and retry, and the sample each request
//!   yields;
//! * [`driver`]: open loop at a fixed rate (latency from the intended send
//!   time) or closed loop over N connections;
//! * [`tally`]: counts, HdrHistogram latencies and the [`tally::Report`];
//! * [`scenario`]: one scenario against one system, then the stores' own
//!   account of what was sold (oversold units, persisted orders);
//! * [`cost`]: CPU seconds per 1 000 requests and peak RSS of each process
//!   a scenario involved, from `/proc`;
//! * [`sweep`]: the open-loop sweep: one system at a rising offered rate
//!   until p99, an error or the client gives out, then a step at half the
//!   highest sustainable rate;
//! * [`chart`]: the SVG charts of a benchmark and of its sweep;
//! * [`baseline`]: the old design's four strategies and `redis-lua-flag`, as
//!   HTTP servers (in-process, or as `flashsale-baseline` child processes).
//!
//! Binaries: `flashsale-loadgen` drives one system; `flashsale-baseline`
//! serves one baseline; `flashsale-bench` runs the same workloads against
//! every baseline and the pipeline, then sweeps the open-loop rate of a few
//! of them (`dev/bench`); `flashsale-restore-bench` measures a processor's
//! restore; `flashsale-demo` is `dev/demo`'s sale.
//! Test: `tests/bench_correctness.rs` (every system sells exactly its stock).
//!
//! May depend on: the contract, the runtime's client settings, the test kit
//! and `flashsale-admin` (topics are made only there).

pub mod baseline;
pub mod ceiling;
pub mod chart;
pub mod client;
pub mod cost;
pub mod driver;
pub mod scenario;
pub mod sweep;
pub mod tally;
pub mod target;
pub mod workload;

pub use client::{DriverConfig, Mode, Sample};
pub use driver::run;
pub use tally::{Report, Tally};
pub use target::{Target, Verdict};
pub use workload::{Plan, Workload, WorkloadSpec};

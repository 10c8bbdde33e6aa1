//! # flashsale-admin: operator commands
//!
//! The `flashsale-admin` binary (`src/main.rs`) and the library behind it:
//!
//! * [`topics`]: `create-topics`, the only code that creates the pipeline's
//!   topics. It fixes each topic's partition count, which the single-writer
//!   rule depends on, and refuses an existing topic with another count.
//! * [`reconcile`]: `reconcile`, the drift between the outcomes log, MySQL
//!   and Redis, and `rebuild-redis`, Redis rebuilt from MySQL.
//!
//! Tests and benchmarks that need topics run this binary or call
//! [`topics::create_topics`]; they never create topics by hand.
//!
//! May depend on: the contract, the runtime, and the sinks' store code (so
//! a rebuild writes Redis exactly as the sink does).
#![forbid(unsafe_code)]

pub mod reconcile;
pub mod topics;

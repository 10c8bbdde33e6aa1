//! # flashsale-e2e: the pipeline seen from outside
//!
//! End-to-end tests, run by `dev/test` against the stack `dev/up` starts
//! (a real Kafka broker, schema registry, MariaDB and Redis; nothing is
//! mocked). This library is empty on purpose; the tests are:
//!
//! * `tests/pipeline.rs`: the flash sale's promises (never oversell,
//!   per-user limits, one decision per request ID, every partition);
//! * `tests/bad_input.rs`: every malformed HTTP request gets its 4xx JSON code;
//! * `tests/dead_letters.rs`: hostile topic records are dead-lettered with a
//!   reason and the partition keeps flowing;
//! * `tests/schema_evolution.rs`: compatible schema versions are decided,
//!   incompatible ones refused by the registry;
//! * `python/`: interop with independent clients (confluent-kafka, kcat,
//!   Kafka's own tools) and the compose file.
//!
//! Shared helpers live in `flashsale-testkit`.
#![forbid(unsafe_code)]

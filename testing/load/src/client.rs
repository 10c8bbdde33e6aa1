//! How the load's clients behave ([`Mode`], [`DriverConfig`]) and what each
//! logical request yields ([`Sample`]): shared by the [`crate::driver`] that
//! sends the load and the [`crate::tally`] that counts it.

use std::time::{Duration, Instant};

use crate::target::Verdict;

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// A new request every `1 / rate` seconds, regardless of answers.
    Open {
        /// Requests per second.
        rate: f64,
    },
    /// `connections` clients, each sending as soon as it has its answer.
    Closed {
        /// Concurrent clients.
        connections: usize,
    },
}

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Pacing.
    pub mode: Mode,
    /// Extra attempts a retrying client makes after an undecided answer.
    pub retry_attempts: u32,
    /// Wait before the n-th retry: `n * retry_backoff`.
    pub retry_backoff: Duration,
    /// Open loop only: most requests outstanding at once. Past it the
    /// scheduler waits, and the wait shows in latency (measured from the
    /// intended send time), so the cap bounds memory, not honesty.
    pub max_in_flight: usize,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
}

/// What happened to one logical request.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Index into the workload's products.
    pub product: usize,
    /// Units asked for.
    pub quantity: i32,
    /// From the intended send time to the final answer, retries included.
    pub latency: Duration,
    /// When the first attempt started: the instants of a run's first and
    /// last requests give the rate the client really sent at.
    pub sent_at: Instant,
    /// From the intended send time to `sent_at`: the client's own lateness
    /// (a starved scheduler or runtime, or a full in-flight cap). Part of
    /// `latency`, which is what a buyer would have waited.
    pub send_lag: Duration,
    /// The final verdict of the request (after retries).
    pub verdict: Verdict,
    /// HTTP attempts made, retries included, duplicate excluded.
    pub attempts: u32,
    /// The answer to the duplicate send, when the plan had one.
    pub duplicate: Option<Verdict>,
}

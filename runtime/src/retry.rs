//! The one retry loop: bounded attempts, exponential backoff with a cap,
//! and an early exit when shutdown is requested.
//!
//! Every start-up step (schema registration, store connections, topic
//! lookups) and every broker call that may meet a restarting broker goes
//! through [`retry`], so limits are stated where the call is made and no
//! loop can outlive a shutdown.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often, and how patiently, to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first included (at least 1).
    pub attempts_max: u32,
    /// Wait after the first failure.
    pub first: Duration,
    /// Longest wait between two attempts (the doubling stops here).
    pub max: Duration,
}

impl Backoff {
    /// `attempts_max` attempts a fixed `every` apart.
    pub const fn fixed(attempts_max: u32, every: Duration) -> Self {
        Self {
            attempts_max,
            first: every,
            max: every,
        }
    }

    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// Why [`retry`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    /// Every attempt failed; `last` is the final error.
    #[error("{what}: gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// What was being tried.
        what: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        last: E,
    },
    /// Shutdown was requested while waiting to try again.
    #[error("{what}: shutdown requested while retrying")]
    Cancelled {
        /// What was being tried.
        what: &'static str,
    },
}

/// Runs `step` until it succeeds, `policy.attempts_max` times at most,
/// waiting `policy.delay(n)` after failure `n`; stops waiting as soon as
/// `shutdown` is cancelled. Every failure is logged with its attempt number.
pub async fn retry<T, E, F, Fut>(
    what: &'static str,
    policy: Backoff,
    shutdown: &CancellationToken,
    mut step: F,
) -> Result<T, RetryError<E>>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    assert!(policy.attempts_max >= 1, "a retry policy needs an attempt");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = match step().await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        if attempt >= policy.attempts_max {
            return Err(RetryError::Exhausted {
                what,
                attempts: attempt,
                last,
            });
        }
        tracing::warn!(attempt, attempts_max = policy.attempts_max, step = what, error = %last, "failed; retrying");
        tokio::select! {
            _ = shutdown.cancelled() => return Err(RetryError::Cancelled { what }),
            _ = tokio::time::sleep(policy.delay(attempt)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Proves the backoff doubles from `first` and stops at `max`.
    #[test]
    fn delay_doubles_up_to_the_cap() {
        let b = Backoff {
            attempts_max: 10,
            first: Duration::from_millis(50),
            max: Duration::from_millis(300),
        };
        let delays: Vec<u128> = (1..=5).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, vec![50, 100, 200, 300, 300]);
        assert_eq!(
            Backoff::fixed(3, Duration::from_secs(1)).delay(7),
            Duration::from_secs(1)
        );
    }

    /// Proves the attempt bound: a step that always fails is tried exactly
    /// `attempts_max` times and the last error is returned.
    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_last_attempt() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(
            "step",
            Backoff::fixed(3, Duration::from_secs(1)),
            &CancellationToken::new(),
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                Err(format!("failure {n}"))
            },
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        match result {
            Err(RetryError::Exhausted { attempts, last, .. }) => {
                assert_eq!((attempts, last.as_str()), (3, "failure 3"));
            }
            other => panic!("expected Exhausted, got {other:?}"),
        }
    }

    /// Proves shutdown wins over waiting: a cancelled token ends the loop
    /// after the first failure instead of sleeping through the rest.
    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_the_wait() {
        let token = CancellationToken::new();
        token.cancel();
        let result: Result<(), RetryError<&str>> = retry(
            "step",
            Backoff::fixed(100, Duration::from_secs(3600)),
            &token,
            || async { Err("down") },
        )
        .await;
        assert!(matches!(
            result,
            Err(RetryError::Cancelled { what: "step" })
        ));
    }

    /// Proves a step that succeeds on a later attempt returns its value.
    #[tokio::test(start_paused = true)]
    async fn later_success_is_returned() {
        let calls = AtomicU32::new(0);
        let value = retry(
            "step",
            Backoff::fixed(5, Duration::from_millis(10)),
            &CancellationToken::new(),
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err("not yet"),
                    n => Ok(n),
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(value, 2);
    }
}

//! Why the processor loop stops ([`RunError`]), and how it makes the
//! blocking broker calls that may meet a restarting broker (`broker_call`).
//!
//! They live apart from the loop because every part of it (the emitter, the
//! replay glue, the loop itself) fails with the same error: there is one
//! answer to a failure, a restart that rebuilds state from the log.

use std::time::Duration;

use rdkafka::error::KafkaError;
use tokio_util::sync::CancellationToken;

use flashsale_runtime::retry::{retry, Backoff, RetryError};
use flashsale_schemas::avro::ContractError;

use crate::classify::ClassifyError;
use crate::replay::ReplayError;
use crate::snapshot_store::SnapshotStoreError;

/// Broker calls (metadata, offsets) while the broker is away: 60 attempts 1 s apart.
const BROKER_CALL_BACKOFF: Backoff = Backoff::fixed(60, Duration::from_secs(1));

/// Why the loop stopped. Every variant but [`RunError::Cancelled`] is fatal
/// for this process: the in-memory state may be ahead of what was
/// acknowledged, so the only safe continuation is a restart that rebuilds
/// state from the log (crash-only). `Cancelled` is a requested shutdown met
/// while waiting for the broker; the loop turns it into a clean stop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// A replay read failed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The registry stayed down.
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    /// An outcome could not be encoded (a bug: our own records).
    #[error("encoding: {0}")]
    Encode(#[from] ContractError),
    /// The broker refused or lost a produced record.
    #[error("delivery failed: {0}")]
    Delivery(String),
    /// The requests topic does not exist.
    #[error("topic {0} not found")]
    NoTopic(String),
    /// A snapshot could not be read or written.
    #[error(transparent)]
    Snapshot(#[from] SnapshotStoreError),
    /// Shutdown was requested while retrying this broker call.
    #[error("{0}: shutdown requested while retrying")]
    Cancelled(&'static str),
}

/// Runs a blocking broker call on this worker thread (`block_in_place`),
/// retrying while the broker is unreachable (a restart), a bounded number of
/// times, and giving up as soon as `shutdown` fires.
impl RunError {
    /// The step that was being retried when shutdown stopped it, if that is
    /// why the loop ended (directly, or inside a replay or snapshot read).
    pub fn cancelled_step(&self) -> Option<&'static str> {
        match self {
            RunError::Cancelled(step)
            | RunError::Replay(ReplayError::Cancelled(step))
            | RunError::Snapshot(SnapshotStoreError::Replay(ReplayError::Cancelled(step))) => {
                Some(step)
            }
            _ => None,
        }
    }
}

pub(crate) async fn broker_call<T>(
    what: &'static str,
    shutdown: &CancellationToken,
    mut call: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, RunError> {
    let attempt = || std::future::ready(tokio::task::block_in_place(&mut call));
    retry(what, BROKER_CALL_BACKOFF, shutdown, attempt)
        .await
        .map_err(|e| match e {
            RetryError::Exhausted { last, .. } => RunError::Kafka(last),
            RetryError::Cancelled { what } => RunError::Cancelled(what),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::RDKafkaErrorCode;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn down() -> KafkaError {
        KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure)
    }

    /// Proves a broker call that fails and then succeeds returns its value:
    /// the call runs again after the backoff (time is real, 1 s apart).
    #[tokio::test(flavor = "multi_thread")]
    async fn retries_until_the_broker_answers() {
        let calls = AtomicU32::new(0);
        let value = broker_call("metadata", &CancellationToken::new(), || {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(down()),
                n => Ok(n),
            }
        })
        .await;
        assert!(matches!(value, Ok(1)), "{value:?}");
    }

    /// Proves shutdown wins over the retry wait: with the token cancelled,
    /// a failing call is tried once and reported as `Cancelled`, not slept on
    /// for a minute.
    #[tokio::test(flavor = "multi_thread")]
    async fn shutdown_stops_the_retries() {
        let calls = AtomicU32::new(0);
        let token = CancellationToken::new();
        token.cancel();
        let result: Result<(), RunError> = broker_call("watermarks", &token, || {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(down())
        })
        .await;
        assert!(
            matches!(result, Err(RunError::Cancelled("watermarks"))),
            "{result:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
